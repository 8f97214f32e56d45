"""Workflow task: run a streaming route's generation (the legacy chat call over SSE, up to
15 minutes), recording progress; its MP4 link goes to the store task next.

Charged per call and not resumable: a job found already in progress is failed, never rerun.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.context import get_context
from videogen.observability import logger, metrics, tracer
from videogen.tasks import run_generate_function


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_generate_function(get_context(), event, remaining_seconds=context.get_remaining_time_in_millis() / 1000)
