"""The HTTP API on loopback: template.yaml's HttpApi routes served by the real handlers.

Each request becomes an API Gateway HTTP API (payload format 2.0) event for the function
whose ``HttpApi`` event matches the method and path, and the handler's answer becomes the
HTTP response, as API Gateway does it: ``statusCode``/``headers``/``cookies``/``body``
(base64-decoded when ``isBase64Encoded``), a bare dict as a 200 JSON body, a function error
as ``500 {"message": "Internal Server Error"}``, a timeout as 503, no route as 404.
``requestContext.domainName`` is the gateway's own ``host:port``.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.lambdas import FunctionConfig, InvocationError, Runtime

MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's request payload limit
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "application/javascript")


@dataclass
class Route:
    method: str  # GET, POST, ... or ANY
    path: str  # /videos/{id}
    function: str  # logical id
    pattern: re.Pattern[str]

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[int, int, int]:
        # API Gateway prefers exact paths, then fewer parameters, then longer paths.
        params = self.path.count("{")
        greedy = int("+}" in self.path)
        return (greedy, params, -len(self.path))


def compile_route(method: str, path: str, function: str) -> Route:
    regex = ""
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{") and piece.endswith("+}"):
            regex += f"(?P<{piece[1:-2]}>.+)"
        elif piece.startswith("{"):
            regex += f"(?P<{piece[1:-1]}>[^/]+)"
        else:
            regex += re.escape(piece)
    return Route(method=method.upper(), path=path, function=function, pattern=re.compile(regex))


def routes_of(configs: list[FunctionConfig]) -> list[Route]:
    found = [compile_route(m, p, c.logical_id) for c in configs for m, p in c.http_routes]
    return sorted(found, key=lambda r: r.specificity)


def http_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route,
    params: dict[str, str],
    domain: str,
    source_ip: str,
) -> dict[str, Any]:
    """The API Gateway v2 event for one request."""
    parts = urlsplit(target)
    folded: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        folded[key] = f"{folded[key]},{value}" if key in folded else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = datetime.now(UTC)
    content_type = folded.get("content-type", "")
    is_text = not body or content_type.startswith(TEXT_TYPES)
    text_body: str | None = None
    if body and is_text:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            is_text = False
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": folded,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": folded.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = {k: unquote(v) for k, v in params.items()}
    if body:
        event["body"] = text_body if is_text else base64.b64encode(body).decode()
    return event


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a handler's answer to (status, headers, body) the way API Gateway's v2 format does."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers: list[tuple[str, str]] = []
        for name, value in (result.get("headers") or {}).items():
            values = value if isinstance(value, list) else [value]
            headers.extend((name, str(v)) for v in values)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((name, str(v)) for v in values)
        headers.extend(("Set-Cookie", c) for c in result.get("cookies") or [])
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return status, headers, body
    text = result if isinstance(result, str) else json.dumps(result)
    return 200, [("Content-Type", "application/json")], text.encode()


class GatewayHandler(BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access lines are written by handle_any, without query strings (tokens travel there)

    def handle_any(self) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        status = self.serve(path)
        if self.server.access_log:
            print(
                f"gateway {self.command} {path} -> {status} ({(time.monotonic() - started) * 1000:.0f} ms)",
                file=sys.stderr,
                flush=True,
            )

    def serve(self, path: str) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self.answer(411, {"message": "Length Required"}, close=True)
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            return self.answer(400, {"message": "Bad Request"}, close=True)
        if int(length) > MAX_PAYLOAD:
            return self.answer(413, {"message": "Request Entity Too Large"}, close=True)
        body = self.rfile.read(int(length)) if int(length) else b""
        for route in self.server.routes:
            match = route.pattern.fullmatch(path)
            if match and route.method in (self.command, "ANY"):
                break
        else:
            return self.answer(404, {"message": "Not Found"})
        event = http_event(
            self.command,
            self.path,
            list(self.headers.items()),
            body,
            route,
            match.groupdict(),
            self.server.domain,
            self.client_address[0],
        )
        pool = self.server.runtime.pools[route.function]
        try:
            result = pool.invoke(event)
        except InvocationError as exc:
            error_type = exc.payload.get("errorType", "")
            print(
                f"gateway: {route.function} failed: {error_type}: {exc.payload.get('errorMessage')}", file=sys.stderr, flush=True
            )
            if error_type == "Sandbox.Timedout":
                return self.answer(503, {"message": "Service Unavailable"})
            return self.answer(500, {"message": "Internal Server Error"})
        try:
            status, headers, raw = http_response(result)
        except (TypeError, ValueError):
            return self.answer(500, {"message": "Internal Server Error"})
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("apigw-requestid", event["requestContext"]["requestId"])
        self.end_headers()
        self.wfile.write(raw)
        return status

    def answer(self, status: int, body: dict[str, Any], close: bool = False) -> int:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(raw)
        return status

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, access_log: bool = True) -> None:
        super().__init__((host, port), GatewayHandler)
        self.domain = f"{host}:{self.server_address[1]}"
        self.url = f"http://{self.domain}"
        self.routes: list[Route] = []
        self.runtime: Runtime
        self.access_log = access_log

    def attach(self, runtime: Runtime, configs: list[FunctionConfig]) -> None:
        """Serve ``configs``' HttpApi routes with ``runtime``'s workers."""
        self.runtime = runtime
        self.routes = routes_of(configs)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="http-api-gateway", daemon=True).start()
