"""Workflow task: look at a job and its provider (``action: poll``) or fail it (``action: fail``).

Invoked by the job state machine, not by HTTP. The answer is the small JSON object the
state machine's Choice states branch on; errors propagate so the ASL ``Retry``/``Catch``
see them by name.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.observability import logger, metrics, tracer
from videogen.service import get_pipeline
from videogen.workflow import handle_poll_task


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_poll_task(get_pipeline(), event)
