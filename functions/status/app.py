"""GET /videos/{id} and GET /videos: a job (with a presigned video URL) or a page of jobs; GET /models: the catalog."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api import caller_of, install_error_handlers, json_response
from videogen.catalog import public_catalog
from videogen.context import get_context
from videogen.observability import logger, metrics, tracer
from videogen.operations.jobs import get_job, list_jobs

app = APIGatewayHttpResolver(enable_validation=True)
install_error_handlers(app)


@app.get("/videos/<job_id>")
@tracer.capture_method
def get_video(job_id: str):
    logger.set_correlation_id(job_id)
    return json_response(200, get_job(get_context(), job_id, owner=caller_of(app.current_event.raw_event)))


@app.get("/videos")
@tracer.capture_method
def list_videos(
    status: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
):
    return json_response(
        200,
        list_jobs(get_context(), owner=caller_of(app.current_event.raw_event), status=status, limit=limit, next_token=next_token),
    )


@app.get("/models")
@tracer.capture_method
def list_models():
    """The catalog a request is checked against (built-in plus CatalogJson), with this deployment's defaults."""
    return json_response(200, public_catalog(get_context().settings))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
