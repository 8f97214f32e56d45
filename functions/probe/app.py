"""S3 Object Created (EventBridge rule, videos/) -> the MP4's figures and poster frame on the job."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.observability import logger, metrics, tracer
from videogen.probe import probe_object
from videogen.repository import JobRepository
from videogen.settings import get_settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    notice = parse(event=event, model=S3EventNotificationEventBridgeModel)
    settings = get_settings()
    bucket, key = notice.detail.bucket.name, notice.detail.object.key
    result = probe_object(settings, JobRepository(settings.jobs_table, settings.job_ttl_days), bucket, key)
    if result is None:
        return {"key": key, "result": "ignored"}
    logger.info(
        "video probed",
        extra={"job_id": result.job_id, "ranged_gets": result.requests, "bytes_read": result.bytes_read},
    )
    return {"key": key, "job_id": result.job_id, "probe": result.probe.model_dump(mode="json"), "ranged_gets": result.requests}
