"""Workflow task: look at a job and its provider (``action: poll``), or, as the workflow's
catch-all, fail it with a code chosen from the caught error (``action: fail``).

Invoked by the job state machine, not by HTTP. The answer is the small JSON object the
state machine's Choice states branch on; errors propagate so the ASL ``Retry``/``Catch``
see them by name.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.context import get_context
from videogen.observability import logger, metrics, tracer
from videogen.tasks import run_poll_function


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_poll_function(get_context(), event, remaining_seconds=context.get_remaining_time_in_millis() / 1000)
