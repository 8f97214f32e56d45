"""HTTP glue shared by the API handlers: domain errors -> JSON 4xx/5xx, in one place."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from .errors import VideogenError
from .observability import logger


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers or {})


def _field(loc: tuple[Any, ...]) -> str:
    # Powertools prefixes locations with "body"/"query"; the client knows its field names.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "request")]
    return ".".join(parts) or "body"


def validation_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A contract error body from pydantic/Powertools validation errors."""
    details = []
    for error in errors:
        entry: dict[str, Any] = {"field": _field(tuple(error.get("loc", ()))), "message": str(error.get("msg", "invalid"))}
        expected = (error.get("ctx") or {}).get("expected")
        if expected:
            entry["allowed"] = expected
        details.append(entry)
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    if first["field"] == "body" and any(e.get("type") == "json_invalid" for e in errors):
        first = {"field": "body", "message": "request body is not valid JSON"}
    body: dict[str, Any] = {
        "code": "invalid_request",
        "message": f"{first['field']}: {first['message']}",
        "field": first["field"],
    }
    if "allowed" in first:
        body["allowed"] = first["allowed"]
    body["errors"] = details
    return {"error": body}


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Map domain errors and validation errors to the contract's ``{"error": {...}}`` bodies."""

    @app.exception_handler(VideogenError)  # type: ignore[untyped-decorator]
    def _domain_error(exc: VideogenError) -> Response[Any]:
        if exc.status >= 500:
            logger.warning("request failed", extra={"code": exc.code})
        return json_response(exc.status, exc.to_body())

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _validation_error(exc: RequestValidationError) -> Response[Any]:
        return json_response(400, validation_body(list(exc.errors())))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[Any]:
        # Never leak internals; the job row (if any) already says what happened.
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return json_response(500, {"error": {"code": "internal_error", "message": "internal error; the request can be retried"}})

    @app.not_found
    def _not_found(_exc: Exception) -> Response[Any]:
        return json_response(404, {"error": {"code": "not_found", "message": "no such route"}})
