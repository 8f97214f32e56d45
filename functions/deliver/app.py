"""The webhook delivery queue -> signed POSTs to the jobs' webhook URLs (partial batch failures).

A failed attempt makes its message invisible until the next delay of the retry schedule and
is reported as a batch item failure, so the queue, not the function, does the waiting.
"""

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.observability import logger, metrics, tracer
from videogen.repository import JobRepository
from videogen.settings import get_settings
from videogen.webhooks import Deliverer

processor = BatchProcessor(event_type=EventType.SQS)
_deliverer: Deliverer | None = None


class DeliveryNotDone(Exception):
    """The attempt failed; the message comes back when the next attempt is due."""


def deliverer() -> Deliverer:
    global _deliverer
    if _deliverer is None:
        settings = get_settings()
        _deliverer = Deliverer(settings, JobRepository(settings.jobs_table, settings.job_ttl_days))
    return _deliverer


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    attempt = int(record.attributes.approximate_receive_count)
    result = deliverer().deliver(json.loads(record.body), attempt)
    if result.outcome == "retry":
        deliverer().retry_later(record.receipt_handle, result.retry_in or 0)
        raise DeliveryNotDone(f"attempt {attempt}: {result.status or result.error}; next in {result.retry_in} s")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
