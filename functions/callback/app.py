"""POST /callbacks/{id}?token=…: the task API's callback (the token authenticates it)."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api import decode_json_body, install_error_handlers, json_response
from videogen.context import get_context
from videogen.observability import logger, metrics, tracer
from videogen.operations.callback import CallbackResult, receive_callback

app = APIGatewayHttpResolver()
install_error_handlers(app)

RETRY_MESSAGES = {"not_ready": "job not bound to a task yet", "not_final": "provider status is not final yet"}


@app.post("/callbacks/<job_id>")
@tracer.capture_method
def callback(job_id: str) -> Response[Any]:
    logger.set_correlation_id(job_id)
    event = app.current_event
    ctx = get_context()
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 if app.lambda_context else 30.0
    result = receive_callback(
        ctx,
        job_id,
        event.get_query_string_value("token"),
        # Decoded only after the token check: a hostile encoding is a 4xx, never a crash.
        lambda: decode_json_body(
            event.body,
            base64_encoded=event.is_base64_encoded,
            max_bytes=ctx.settings.callback_max_body_bytes,
            what="callback body",
        ),
        remaining_seconds=remaining,
    )
    return answer(result)


def answer(result: CallbackResult) -> Response[Any]:
    """2xx for anything the provider must not resend; 503 + Retry-After when it should."""
    if result.retry_after_seconds is not None:
        body = {"error": {"code": result.result, "message": RETRY_MESSAGES.get(result.result, "retry later")}}
        return json_response(503, body, {"Retry-After": str(result.retry_after_seconds)})
    if result.result == "ignored" and result.status in ("succeeded", "failed"):
        return json_response(200, {"job_id": result.job_id, "status": result.status, "result": "ignored: job already finished"})
    return json_response(200, {"job_id": result.job_id, "result": result.result})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
