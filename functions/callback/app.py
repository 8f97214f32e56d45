"""POST /callbacks/{id}?token=...: the task API's completion callback.

No gateway authorizer: the per-job token is checked first, before anything is read or
written. The body and the token are never logged.
"""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api import install_error_handlers, json_response
from videogen.observability import logger, metrics, tracer
from videogen.service import get_pipeline

app = APIGatewayHttpResolver()
install_error_handlers(app)


@app.post("/callbacks/<job_id>")
@tracer.capture_method
def callback(job_id: str):
    logger.set_correlation_id(job_id)
    event = app.current_event
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 if app.lambda_context else 30.0
    # The body is decoded by the pipeline after the token check (a hostile encoding is a 4xx).
    result = get_pipeline().handle_callback(
        job_id,
        event.get_query_string_value("token"),
        event.body,
        remaining_seconds=remaining,
        base64_encoded=event.is_base64_encoded,
    )
    return json_response(result.status, result.body, result.headers)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
