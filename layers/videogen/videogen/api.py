"""HTTP glue shared by the API handlers: domain errors -> JSON 4xx/5xx, in one place."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from .errors import InvalidRequest, PayloadTooLarge, VideogenError
from .observability import logger


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers or {})


# Deeper JSON than this is refused: no client of ours nests that deep, and a parser that
# recurses must never be handed an unbounded depth.
MAX_JSON_DEPTH = 32


def decode_json_body(raw: str | bytes | None, *, base64_encoded: bool, max_bytes: int, what: str = "body") -> Any:
    """The JSON of a request body as API Gateway hands it over, or a 4xx naming the problem.

    Checks, in order: size (413), base64 (when flagged), UTF-8, JSON syntax, depth and
    number size (400). Never raises anything else, whatever the bytes.
    """
    data = raw or b""
    # surrogatepass: a lone surrogate in the event's body is a 400 below, not a crash here.
    encoded = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(encoded) > max_bytes:
        raise PayloadTooLarge(f"{what} exceeds {max_bytes} bytes", field="body")
    if base64_encoded:
        try:
            encoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"{what} is not valid base64", field="body") from exc
    try:
        text = encoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{what} is not valid UTF-8 (byte {exc.start})", field="body") from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise InvalidRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels", field="body") from exc
    except ValueError as exc:
        # Also Python's cap on integer digits ("Exceeds the limit ... for integer string conversion").
        reason = "has a number too large to read" if "integer" in str(exc) else "is not valid JSON"
        raise InvalidRequest(f"{what} {reason}", field="body") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels", field="body")
    return value


def json_depth(value: Any) -> int:
    """How deep containers nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            stack.extend((child, depth) for child in item)
    return deepest


def caller_of(event: dict[str, Any]) -> str:
    """Who signed the request (IAM auth), so two callers' idempotency keys never collide."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    return str(iam.get("userArn") or iam.get("callerId") or "anonymous")


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
