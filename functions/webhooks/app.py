"""GET /webhooks/secret: the active webhook signing key, so a receiver can be configured."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api import install_error_handlers, json_response
from videogen.observability import logger, metrics, tracer
from videogen.settings import get_settings
from videogen.webhooks import public_key

app = APIGatewayHttpResolver(enable_validation=True)
install_error_handlers(app)


@app.get("/webhooks/secret")
@tracer.capture_method
def webhook_secret():
    # Never logged: the key only travels in this answer.
    return json_response(200, public_key(get_settings()), {"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
