"""GET /videos/{id} and GET /videos: a job (with a presigned video URL) or a page of jobs; GET /models: the catalog."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api import install_error_handlers, json_response
from videogen.catalog import load_catalog
from videogen.observability import logger, metrics, tracer
from videogen.service import get_pipeline
from videogen.settings import get_settings

app = APIGatewayHttpResolver(enable_validation=True)
install_error_handlers(app)


@app.get("/videos/<job_id>")
@tracer.capture_method
def get_video(job_id: str):
    logger.set_correlation_id(job_id)
    return json_response(200, get_pipeline().get(job_id))


@app.get("/videos")
@tracer.capture_method
def list_videos(
    status: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
):
    return json_response(200, get_pipeline().list(status=status, limit=limit, next_token=next_token))


# The provider's own model names are routing details, not part of what a client may ask for.
_INTERNAL_MODEL_FIELDS = {"routes": {"__all__": {"models": {"__all__": {"provider_models"}}}}}


@app.get("/models")
@tracer.capture_method
def list_models():
    """The catalog a request is checked against (built-in plus CatalogJson), with this deployment's defaults."""
    settings = get_settings()
    catalog = load_catalog(settings).model_dump(mode="json", exclude=_INTERNAL_MODEL_FIELDS)
    defaults = {
        "task": settings.default_task_model,
        "official": settings.default_official_model,
        "legacy": settings.default_legacy_model,
    }
    for route, spec in catalog["routes"].items():
        spec["default_model"] = defaults.get(route) or spec["default_model"]
    return json_response(200, {"default_route": settings.default_route, **catalog})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
