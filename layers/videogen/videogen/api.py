"""HTTP glue shared by the API handlers: domain errors -> JSON 4xx/5xx, in one place."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError

from .errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType, VideogenError
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


JSON_MEDIA_TYPES = ("application/json",)
# API Gateway caps a synchronous Lambda payload at 6 MB, so a larger body never arrives in
# AWS; this backstop (the request model's own image cap, base64-encoded) keeps tests and the
# local stack honest without hiding the model's field-level messages.
MAX_REQUEST_BYTES = 24 * 1024 * 1024


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/…+json``, any case, any parameters; a missing
    header counts as JSON (clients such as ``curl --json`` and SDKs send it, some do not)."""
    if content_type is None or not content_type.strip():
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_MEDIA_TYPES or (media.startswith("application/") and media.endswith("+json"))


def error_result(error: VideogenError) -> dict[str, Any]:
    """A Lambda proxy result carrying the contract's error body (for checks made before routing)."""
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error.to_body()),
        "isBase64Encoded": False,
    }


def precheck_json_request(event: dict[str, Any], *, max_bytes: int = MAX_REQUEST_BYTES) -> dict[str, Any] | None:
    """Refuse a body the resolver must never see: wrong media type (415), or bytes that are not
    readable JSON (413/400, see :func:`decode_json_body`). ``None`` when the body is fine."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    if not is_json_media_type(headers.get("content-type")):
        media = str(headers.get("content-type")).split(";", 1)[0].strip()[:100]
        return error_result(
            UnsupportedMediaType(f"content-type {media!r} is not supported; send application/json", allowed=["application/json"])
        )
    # Media types are case-insensitive; the resolver's parser only knows the lower-case name.
    headers["content-type"] = "application/json"
    event["headers"] = headers
    try:
        decode_json_body(event.get("body"), base64_encoded=bool(event.get("isBase64Encoded")), max_bytes=max_bytes)
    except VideogenError as exc:
        return error_result(exc)
    return None


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


ASSUMED_ROLE = re.compile(r"^(arn:[\w-]+:sts::\d+:assumed-role/[^/]+)/.+$")


def caller_of(event: dict[str, Any]) -> str:
    """Who signed the request (IAM auth): the owner of the jobs it creates and reads.

    An assumed-role session counts as its role (every Lambda, container or SSO session of
    one role sees the same jobs); without client auth every caller is one shared owner.
    """
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam") if isinstance(authorizer, dict) else None
    if not isinstance(iam, dict):
        return "anonymous"
    arn = str(iam.get("userArn") or "")
    session = ASSUMED_ROLE.match(arn)
    if session:
        return session.group(1)
    return arn or str(iam.get("callerId") or "anonymous")


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

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
    def _unsupported_type(exc: RequestUnsupportedContentType) -> Response[Any]:
        return json_response(415, UnsupportedMediaType("send application/json", allowed=["application/json"]).to_body())

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _validation_error(exc: RequestValidationError) -> Response[Any]:
        return json_response(400, validation_body(list(exc.errors())))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[Any]:
        # Never leak internals; the job row (if any) already says what happened.
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        event = app.current_event
        request_id = event.request_context.request_id or "unknown"
        message = f"internal error (request id {request_id})"
        if event.http_method.upper() == "GET":
            message += "; the request can be retried"  # reads change nothing: a retry can only help
        return json_response(500, {"error": {"code": "internal_error", "message": message, "request_id": request_id}})

    @app.not_found
    def _not_found(_exc: Exception) -> Response[Any]:
        return json_response(404, {"error": {"code": "not_found", "message": "no such route"}})
