"""A local https webhook receiver that verifies every delivery as a client would.

It speaks TLS with a certificate from a throwaway ``trustme`` CA (the sender must trust
``ca_file``), verifies each request with the ``standardwebhooks`` package and records it.
Each path can be given a script of answers (``[500, 500, 200]``: two failures, then success),
so tests and the demo exercise retries, ``410 Gone`` and a receiver that is down.

    receiver = WebhookReceiver().start()
    receiver.key = "whsec_..."             # from GET /webhooks/secret
    receiver.script("/hooks/flaky", [500, 500, 200])
    url = receiver.url("/hooks/flaky")
"""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024


@dataclass
class Delivery:
    """One request the receiver got, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None
    answered: int
    payload: dict[str, Any] | None = None

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def type(self) -> str | None:
        return (self.payload or {}).get("type")

    @property
    def job_id(self) -> str | None:
        return ((self.payload or {}).get("data") or {}).get("id")


@dataclass
class _State:
    key: str | None = None
    scripts: dict[str, list[int]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebhookReceiver:
    """An https server on 127.0.0.1 recording and verifying webhook deliveries."""

    def __init__(
        self,
        key: str | None = None,
        *,
        port: int = 0,
        directory: Path | None = None,
        hostnames: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        self.state = _State(key=key)
        self.ca = trustme.CA()
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="videogen-webhooks-"))
        self.ca_file = self.directory / "webhook-receiver-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.state))
        self.server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*hostnames).configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def key(self) -> str | None:
        return self.state.key

    @key.setter
    def key(self, value: str | None) -> None:
        self.state.key = value

    def url(self, path: str = "/hooks") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this receiver (for senders in this process)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def script(self, path: str, answers: list[int]) -> None:
        """Answer the next requests to ``path`` with these statuses (then 200)."""
        with self.state.lock:
            self.state.scripts[path] = list(answers)

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        with self.state.lock:
            return [d for d in self.state.deliveries if path is None or d.path == path]

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def verify(key: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """What a client does with a delivery: verify it with the library, then parse it."""
    payload = Webhook(key).verify(body, headers)
    if not isinstance(payload, dict):
        raise WebhookVerificationError("payload is not a JSON object")
    return payload


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, MAX_BODY))
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            verified, error, payload = False, None, None
            if state.key is None:
                error = "no key configured"
            else:
                try:
                    payload = verify(state.key, body, headers)
                    verified = True
                except (WebhookVerificationError, ValueError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            if payload is None:
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
            with state.lock:
                script = state.scripts.get(path) or []
                status = script.pop(0) if script else (200 if verified else 400)
                state.deliveries.append(Delivery(path, headers, body, verified, error, status, payload))
            answer = json.dumps({"received": verified}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


class DemoWebhooks:
    """``make demo``'s receiver: every demo job asks for webhooks to it; a report at the end.

    with DemoWebhooks() as hooks, launch("demo", ..., args=hooks.stack_args) as stack:
        hooks.configure(stack.info["api_url"])   # the key from GET /webhooks/secret
        body = hooks.ask(body, route)            # adds webhook_url / webhook_events
        ...
        ok = hooks.report({route: job_id, ...}) and ok
    """

    EVENTS = ["started", "progress", "succeeded", "failed"]

    def __init__(self) -> None:
        self.receiver = WebhookReceiver()
        self.api_url = ""

    def __enter__(self) -> DemoWebhooks:
        self.receiver.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.stop()

    @property
    def stack_args(self) -> tuple[str, ...]:
        """The stack's functions must trust the receiver's throwaway CA."""
        return ("--trust-ca", str(self.receiver.ca_file))

    def configure(self, api_url: str) -> None:
        import httpx

        self.api_url = api_url
        answer = httpx.get(f"{api_url}/webhooks/secret", timeout=30)
        answer.raise_for_status()
        self.receiver.key = answer.json()["key"]
        print(f"  webhook receiver: {self.receiver.url('/hooks')} (https, key from GET /webhooks/secret)", flush=True)

    def ask(self, body: dict[str, Any], route: str) -> dict[str, Any]:
        return {**body, "webhook_url": self.receiver.url(f"/hooks/{route}"), "webhook_events": self.EVENTS}

    def report(self, jobs: dict[str, str], timeout: float = 30.0) -> bool:
        """Print, per job: events received, signatures verified, poster, probed duration and size.

        Waits (up to ``timeout``) for the last delivery and the probe, which follow the job's
        status change; True when every job's events verified and its video was probed.
        """
        import time

        import httpx

        deadline = time.monotonic() + timeout
        views: dict[str, dict[str, Any]] = {}
        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            for route, job_id in jobs.items():
                while True:
                    view = client.get(f"/videos/{job_id}").json()
                    hook, video = view.get("webhook") or {}, view.get("video")
                    probed = video is None or video.get("poster_url") or video.get("warnings")
                    if (hook.get("status") not in (None, "pending") and probed) or time.monotonic() > deadline:
                        break
                    time.sleep(0.3)
                views[route] = view
        ok = True
        print("\nWebhooks and the downstream probe:")
        for route, job_id in jobs.items():
            got = [d for d in self.receiver.deliveries() if d.job_id == job_id]
            verified = sum(d.verified for d in got)
            view = views[route]
            video = view.get("video") or {}
            kinds = ", ".join(d.type or "?" for d in got) or "none"
            size = f"{video.get('width')}x{video.get('height')}" if video.get("width") else "-"
            print(
                f"  {route:<8} events: {kinds}; signatures verified: {verified}/{len(got)}; "
                f"webhook {view.get('webhook', {}).get('status')}; "
                f"poster: {'written' if video.get('poster_url') else 'none'}; "
                f"probed: {video.get('duration_seconds')} s, {size}, {video.get('codec')}"
                + (f"; warnings: {'; '.join(video['warnings'])}" if video.get("warnings") else "")
            )
            ok = ok and bool(got) and verified == len(got) and (not video or bool(video.get("poster_url")))
        return ok
