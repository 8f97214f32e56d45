"""Workflow task: stream a finished job's video into S3 (up to 15 minutes), or (``action:
legacy``) run the legacy route's streaming chat call, whose MP4 link the next state stores.

Invoked by the job state machine after a poll found the video ready, or when the callback
handed a large transfer over. Goes through the one store path (``Pipeline.store``, no
hand-off), so a failure raises and the ASL retries, then fails the job.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.observability import logger, metrics, tracer
from videogen.service import get_pipeline
from videogen.workflow import handle_store_task


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000
    return handle_store_task(get_pipeline(), event, remaining_seconds=remaining)
