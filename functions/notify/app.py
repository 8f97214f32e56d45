"""The jobs table's stream -> EventBridge events and queued webhook deliveries (the outbox)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.events import JobChange, Outbox, job_from_image
from videogen.observability import logger, metrics, tracer
from videogen.repository import JobRepository
from videogen.settings import get_settings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
_outbox: Outbox | None = None


def outbox() -> Outbox:
    global _outbox
    if _outbox is None:
        settings = get_settings()
        _outbox = Outbox(settings, JobRepository(settings.jobs_table, settings.job_ttl_days))
    return _outbox


@tracer.capture_method
def record_handler(record: DynamoDBRecord) -> None:
    stream = record.dynamodb
    assert stream is not None
    # Unix seconds: the same for a replayed record, so progress event ids repeat too.
    created = float(stream.raw_event.get("ApproximateCreationDateTime") or 0)
    change = JobChange(
        old=job_from_image(stream.old_image),
        new=job_from_image(stream.new_image),
        at=created,
        sequence=stream.sequence_number or "",
    )
    sent = outbox().handle(change)
    if sent:
        logger.info("job events sent", extra={"job_id": change.new.id if change.new else None, "sent": sent})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
