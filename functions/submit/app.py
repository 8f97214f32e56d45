"""POST /videos: validate the request, record the job, start it at the provider; 202."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import idempotency
from videogen.api import install_error_handlers, json_response
from videogen.models import CreateVideoRequest
from videogen.observability import logger, metrics, tracer
from videogen.service import get_pipeline

app = APIGatewayHttpResolver(enable_validation=True)
install_error_handlers(app)


@app.post("/videos")
@tracer.capture_method
def create_video(request: Annotated[CreateVideoRequest, Body()]):
    event = app.current_event
    answer = idempotency.submit(
        get_pipeline(),
        request,
        request_base_url=f"https://{event.request_context.domain_name}",
        idempotency_key=event.get_header_value(idempotency.HEADER),
        caller=idempotency.caller_of(event.raw_event),
        lambda_context=app.lambda_context,
    )
    return json_response(answer.status, answer.body, answer.headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
