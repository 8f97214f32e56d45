"""POST /videos: validate the request, record the job, start it at the provider; 202."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api import caller_of, install_error_handlers, json_response, precheck_json_request
from videogen.context import get_context
from videogen.models import CreateVideoRequest
from videogen.observability import logger, metrics, tracer
from videogen.operations.submit import submit_video

app = APIGatewayHttpResolver(enable_validation=True)
install_error_handlers(app)


@app.post("/videos")
@tracer.capture_method
def create_video(request: Annotated[CreateVideoRequest, Body()]) -> Response[Any]:
    event = app.current_event
    answer = submit_video(
        get_context(),
        request,
        request_base_url=f"https://{event.request_context.domain_name}",
        idempotency_key=event.get_header_value("Idempotency-Key"),
        caller=caller_of(event.raw_event),
        lambda_context=app.lambda_context,
    )
    return json_response(answer["status"], answer["body"], answer["headers"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Bytes the resolver's JSON parser must not see (wrong media type, bad encoding, too deep).
    return precheck_json_request(event) or app.resolve(event, context)
