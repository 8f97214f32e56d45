"""Network fakes for the download tests: real servers on 127.0.0.1 (plain HTTP or TLS with the
local stack's CA, ``local.tls``), an injected resolver, and backends that record what would be dialled.

Tests reach them through the safe downloader with an injected resolver and a network backend
that dials the server whatever address it is asked for (recording that address), so no real
DNS and no address outside loopback is ever used.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore

# A response: status, headers, and body pieces (each piece may be preceded by a pause).
Reply = tuple[int, dict[str, str], Iterable[bytes]]
Route = Callable[["Seen"], Reply]


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    sni: str | None


@dataclass
class LoopbackServer:
    """A threaded HTTP(S) server; ``routes`` maps a path to a function making the reply."""

    routes: dict[str, Route]
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)
    port: int = 0

    @contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(
                    "GET", self.path, {k.lower(): v for k, v in self.headers.items()}, getattr(self.connection, "sni", None)
                )
                server.seen.append(seen)
                route = server.routes.get(self.path.split("?", 1)[0])
                status, headers, body = route(seen) if route else (404, {"Content-Length": "0"}, [])
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for piece in body:
                        self.wfile.write(piece)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                if headers.get("Connection") == "close":
                    self.close_connection = True

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.tls is not None:
            context = self.tls

            def remember(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
                server.sni_names.append(name)
                sock.sni = name  # type: ignore[attr-defined]

            context.sni_callback = remember
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)


def drip(pieces: Iterable[bytes], pause: float) -> Iterator[bytes]:
    """Body pieces with a pause before each one (a slow provider)."""
    for piece in pieces:
        time.sleep(pause)
        yield piece


class Resolver:
    """A resolver from a table; records each lookup. A name not in the table fails like DNS."""

    def __init__(self, table: dict[str, list[str]] | None = None, *answers: list[str]) -> None:
        self.table = table or {}
        self.answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if self.answers:
            return self.answers.pop(0)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


class NoNetwork:
    """Resolver and backend that fail the test if anything tries to resolve or connect."""

    def __call__(self, host: str, port: int) -> list[str]:
        raise AssertionError(f"resolved {host!r}: the URL should have been refused before")

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("connected: the URL should have been refused before")


class DialLoopback(httpcore.NetworkBackend):
    """An inner network backend: records the address it was asked to dial, dials the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dialled: list[tuple[str, int]] = []
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        self.dialled.append((host, port))
        return self.inner.connect_tcp("127.0.0.1", self.port, timeout=timeout, socket_options=socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        raise AssertionError("no unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
