"""Workflow task: stream a finished job's video into S3 (up to 15 minutes).

Invoked by the job state machine after a poll (or the generate task) found the video ready,
or when the callback handed a large transfer over. Goes through the one store path (no
hand-off), so a failure raises and the ASL retries, then fails the job.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.context import get_context
from videogen.observability import logger, metrics, tracer
from videogen.tasks import run_store_function


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_store_function(get_context(), event, remaining_seconds=context.get_remaining_time_in_millis() / 1000)
