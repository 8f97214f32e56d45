"""A provider simulator on loopback: the three seed APIs over real HTTP, with switchable faults.

* Task API (seed 003): ``POST /api/v1/generateTask/{model}``, ``GET /api/v1/statusTask/{model}``,
  answers wrapped ``{code, msg, data}``, and real HTTP callbacks to ``callback_url`` in the
  wrapped ``{code, message, data}`` form (``resultJson`` a JSON *string*), retried with
  growing delays when the receiver does not answer 2xx.
* Official forward (seed 002): ``POST /v1/videos`` (multipart or JSON), ``GET /v1/videos/{id}``
  with ``progress`` and an ``openai-poll-after-ms`` hint, ``GET /v1/videos/{id}/content``
  answering 404 until the video is ready.
* Legacy chat route (seeds 000/001): ``POST /v1/chat/completions``, streamed as SSE exactly
  like seed 001 (role chunk, prompt block, queue line, progress lines, a final markdown link
  to an ``.mp4``, a ``stop`` chunk with usage, ``data: [DONE]``) or answered whole.

Every result is the real MP4 in ``local/assets/sample.mp4``, streamed from disk. The HTTP side is
a Werkzeug WSGI application (``Map``/``Rule`` routing, ``Request.form``/``files`` for multipart,
streamed ``Response`` bodies that Werkzeug's server sends chunked) on Werkzeug's threaded server.

Faults are chosen per job by markers in the prompt, ``[fault:NAME]`` (several allowed;
``[fault:rate_limited=5]`` sets a count), or armed for the next jobs through
``POST /_sim/faults``. ``/_sim/*`` also exposes what happened (callback attempts and their
answers, downloads, submit attempts) so tests can check that nothing was lost or doubled.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_MP4 = ASSETS / "sample.mp4"

FAULTS = (
    "callback_lost",  # the task API never calls back (the workflow's fallback must finish the job)
    "callback_duplicate",  # the callback arrives three times, two of them at once
    "callback_early",  # the success callback arrives before statusTask shows success
    "content_violation",  # generation fails with CONTENT_VIOLATION
    "rate_limited",  # the first N submits answer 429 with Retry-After (N defaults to 2)
    "server_error",  # the first N submits answer 5xx (N defaults to 2)
    "truncated_download",  # the result announces its full length but the connection closes half-way
    "slow_download",  # half the result, then nothing until the job's callback was answered (or slow_download_seconds)
    "expired_url",  # the result URL has already expired (official: the video reports ``expired``)
    "not_mp4",  # the result URL serves an HTML page instead of an MP4
)
FAULT_MARKER = re.compile(r"\[fault:([a-z0-9_]+)(?:=(\d+))?\]")
SUBMIT_FAULTS = ("rate_limited", "server_error")
DEFAULT_SUBMIT_FAILURES = 2

TASK_MODELS = {"sora-2": {4, 8, 10, 12, 15}, "sora-2-pro": {4, 8, 10, 12, 15}}
OFFICIAL_MODELS = {
    "sora-2": {"720x1280", "1280x720"},
    "sora-2-pro": {"720x1280", "1280x720", "1024x1792", "1792x1024"},
}
OFFICIAL_SECONDS = {"4", "8", "12"}
LEGACY_MODELS = {"sora_video2": "Vertical Mode", "sora_video2-landscape": "Horizontal Mode"}
MAX_BODY = 16 * 1024 * 1024
MAX_PROMPT = 10000
CHUNK = 16 * 1024
LOG = logging.getLogger("local.simulator")


@dataclass
class SimConfig:
    """How the simulated provider behaves; every wait is an input (zero in tests)."""

    api_key: str = "sk-local-simulator"
    generation_seconds: float = 0.0
    # Delays before each callback retry (the real task API: about 30 s, then longer, 3 retries).
    callback_retry_delays: tuple[float, ...] = (30.0, 60.0, 120.0)
    callback_timeout_seconds: float = 30.0
    # How long statusTask still says "processing" after an early callback went out.
    early_callback_lead_seconds: float = 1.0
    slow_download_seconds: float = 3.0
    retry_after_seconds: int = 1
    result_ttl_seconds: int = 15 * 86400
    progress_steps: int = 4


@dataclass
class CallbackAttempt:
    at: float
    status: int | None
    body: Any
    error: str | None = None


@dataclass
class SimJob:
    """One generation job at the simulated provider."""

    id: str
    route: str  # task | official | legacy
    model: str
    prompt: str
    created: float
    generation_seconds: float
    faults: dict[str, int]
    size: str | None = None
    seconds: str | None = None
    callback_url: str | None = None
    has_reference: bool = False
    callbacks: list[CallbackAttempt] = field(default_factory=list)
    downloads: int = 0
    completed_downloads: int = 0
    status_polls: int = 0

    @property
    def ready_at(self) -> float:
        return self.created + self.generation_seconds

    def has(self, fault: str) -> bool:
        return fault in self.faults

    def progress(self, now: float) -> int:
        if self.generation_seconds <= 0 or now >= self.ready_at:
            return 100
        return max(0, min(99, int(100 * (now - self.created) / self.generation_seconds)))

    def summary(self) -> dict[str, Any]:
        body = asdict(self)
        body["callbacks"] = [asdict(c) for c in self.callbacks]
        return body


def parse_faults(prompt: str) -> dict[str, int]:
    """Faults named in a prompt: ``[fault:NAME]`` or ``[fault:NAME=COUNT]``."""
    found: dict[str, int] = {}
    for name, count in FAULT_MARKER.findall(prompt):
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        found[name] = int(count) if count else (DEFAULT_SUBMIT_FAILURES if name in SUBMIT_FAULTS else 1)
    return found


class ApiError(Exception):
    """An HTTP error answer; ``body`` is already in the calling API's error shape."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Simulator:
    """The provider's state: jobs, armed faults, counters. Thread-safe."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.base_url = ""
        self.jobs: dict[str, SimJob] = {}
        self.submit_attempts: dict[str, int] = {}
        self.armed: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url_key = secrets.token_bytes(32)
        self.stopping = threading.Event()
        self.mp4_size = SAMPLE_MP4.stat().st_size
        self.callback_answered: dict[str, threading.Event] = {}

    def answered(self, job: SimJob) -> threading.Event:
        """Set once a callback of ``job`` got a 2xx answer."""
        with self.lock:
            return self.callback_answered.setdefault(job.id, threading.Event())

    # -- jobs -------------------------------------------------------------------------------

    def _faults_for(self, route: str, prompt: str) -> dict[str, int]:
        faults = parse_faults(prompt)
        with self.lock:
            for armed in self.armed:
                if armed["route"] in (None, route) and armed["remaining"] > 0:
                    armed["remaining"] -= 1
                    for name in armed["faults"]:
                        faults.setdefault(name, DEFAULT_SUBMIT_FAILURES if name in SUBMIT_FAULTS else 1)
                    break
            self.armed = [a for a in self.armed if a["remaining"] > 0]
        return faults

    def submit_gate(self, route: str, prompt: str, faults: dict[str, int]) -> None:
        """Count a submit attempt; the first N of a faulted prompt answer 429 or 5xx."""
        key = f"{route}:{hashlib.sha256(prompt.encode()).hexdigest()}"
        with self.lock:
            attempt = self.submit_attempts.get(key, 0) + 1
            self.submit_attempts[key] = attempt
        if attempt <= faults.get("rate_limited", 0):
            retry_after = str(self.config.retry_after_seconds)
            raise ApiError(429, {"message": "Rate limit exceeded, please retry later"}, {"Retry-After": retry_after})
        if attempt <= faults.get("rate_limited", 0) + faults.get("server_error", 0):
            # With Retry-After: the provider says it did not take the request (safe to resend).
            retry_after = str(self.config.retry_after_seconds)
            raise ApiError(503, {"message": "Upstream service temporarily unavailable"}, {"Retry-After": retry_after})

    def new_job(self, route: str, job_id: str, model: str, prompt: str, faults: dict[str, int], **extra: Any) -> SimJob:
        job = SimJob(
            id=job_id,
            route=route,
            model=model,
            prompt=prompt,
            created=time.time(),
            generation_seconds=self.config.generation_seconds,
            faults=faults,
            **extra,
        )
        with self.lock:
            self.jobs[job.id] = job
        return job

    def job(self, job_id: str) -> SimJob | None:
        with self.lock:
            return self.jobs.get(job_id)

    # -- result URLs ------------------------------------------------------------------------

    def result_url(self, job: SimJob, ttl: int | None = None) -> str:
        """A signed, expiring URL ending in ``.mp4`` (the legacy route's link must end so)."""
        expires = int(job.created) - 60 if job.has("expired_url") else int(time.time()) + (ttl or self.config.result_ttl_seconds)
        token = f"{job.id}.{expires}"
        sig = hmac.new(self.url_key, token.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.base_url}/files/{token}.{sig}.mp4"

    def check_result_token(self, token: str) -> SimJob:
        job_id, _, rest = token.partition(".")
        expires, _, sig = rest.partition(".")
        good = hmac.new(self.url_key, f"{job_id}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        job = self.job(job_id)
        if job is None or not hmac.compare_digest(sig, good) or not expires.isdigit():
            raise ApiError(403, {"message": "SignatureDoesNotMatch"})
        if int(expires) < time.time():
            raise ApiError(403, {"message": "Request has expired"})
        return job

    # -- task API ---------------------------------------------------------------------------

    def task_state(self, job: SimJob, now: float | None = None, *, finished: bool = False) -> dict[str, Any]:
        """``data`` of a statusTask answer, or (``finished``) of the callback for the finished task."""
        now = time.time() if now is None else now
        data: dict[str, Any] = {
            "taskId": job.id,
            "model": job.model,
            "state": "processing",
            "param": json.dumps({"prompt": job.prompt[:200]}),
            "resultJson": None,
            "failCode": None,
            "failMsg": None,
            "createTime": int(job.created * 1000),
            "completeTime": None,
            "costTime": None,
        }
        done = finished or (now >= job.ready_at and not self.status_lags(job, now))
        if done and job.has("content_violation"):
            data.update(state="failed", failCode="CONTENT_VIOLATION", failMsg="Content violates safety guidelines")
        elif done:
            data.update(state="success", resultJson=json.dumps({"resultUrls": [self.result_url(job)]}))
        elif job.generation_seconds > 0 and now < job.created + job.generation_seconds * 0.1:
            data["state"] = "pending"
        if done:
            data["completeTime"] = int(job.ready_at * 1000)
            data["costTime"] = data["completeTime"] - data["createTime"]
        return data

    def status_lags(self, job: SimJob, now: float) -> bool:
        """``callback_early``: statusTask still says processing for ``early_callback_lead_seconds``
        after the callback went out, and at least until the first callback was answered."""
        if not job.has("callback_early"):
            return False
        awaiting_first_answer = bool(job.callback_url) and not job.has("callback_lost") and not job.callbacks
        return now < job.ready_at + self.config.early_callback_lead_seconds or awaiting_first_answer

    def schedule_callbacks(self, job: SimJob) -> None:
        if not job.callback_url or job.has("callback_lost"):
            return

        def run() -> None:
            if self.stopping.wait(max(0.0, job.ready_at - time.time())):
                return
            # The payload describes the finished task, even when (callback_early) the status
            # API does not show it yet.
            payload = {"code": 200, "message": "success", "data": self.task_state(job, finished=True)}
            if job.has("callback_duplicate"):
                twins = [threading.Thread(target=self.deliver, args=(job, payload), daemon=True) for _ in range(2)]
                for twin in twins:
                    twin.start()
                for twin in twins:
                    twin.join()
                self.stopping.wait(0.2)
            self.deliver(job, payload)

        threading.Thread(target=run, name=f"callback-{job.id}", daemon=True).start()

    def deliver(self, job: SimJob, payload: dict[str, Any]) -> None:
        """POST the callback; retry on anything but 2xx, with the configured delays."""
        assert job.callback_url
        data = json.dumps(payload).encode()
        delays = (0.0, *self.config.callback_retry_delays)
        for delay in delays:
            if self.stopping.wait(delay):
                return
            request = urllib.request.Request(
                job.callback_url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "task-api-sim/1"},
            )
            attempt = CallbackAttempt(at=time.time(), status=None, body=None)
            try:
                with urllib.request.urlopen(request, timeout=self.config.callback_timeout_seconds) as answer:
                    attempt.status = answer.status
                    attempt.body = _json_or_text(answer.read(64 * 1024))
            except urllib.error.HTTPError as exc:
                attempt.status = exc.code
                attempt.body = _json_or_text(exc.read(64 * 1024))
            except (OSError, TimeoutError) as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"
            with self.lock:
                job.callbacks.append(attempt)
            if attempt.status is not None and 200 <= attempt.status < 300:
                self.answered(job).set()
                return

    # -- official ---------------------------------------------------------------------------

    def video_object(self, job: SimJob) -> dict[str, Any]:
        now = time.time()
        body: dict[str, Any] = {
            "id": job.id,
            "object": "video",
            "model": job.model,
            "status": "queued",
            "progress": 0,
            "created_at": int(job.created),
            "size": job.size,
            "seconds": job.seconds,
        }
        if now >= job.ready_at:
            if job.has("content_violation"):
                body.update(
                    status="failed",
                    error={"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."},
                )
            elif job.has("expired_url"):
                body.update(status="expired", progress=100, completed_at=int(job.ready_at), expires_at=int(job.ready_at))
            else:
                body.update(status="completed", progress=100, completed_at=int(job.ready_at), expires_at=int(job.ready_at) + 3600)
        elif job.generation_seconds > 0 and now >= job.created + job.generation_seconds * 0.1:
            body.update(status="in_progress", progress=job.progress(now))
        return body


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class SimulatorApp:
    """The simulator's HTTP side, a WSGI application: one method per route of :data:`URLS`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        api = "task" if path.startswith("/api/v1/") else "openai" if path.startswith("/v1/") else "other"
        try:
            if (request.content_length or 0) > MAX_BODY:
                raise ApiError(413, {"message": "request body too large"})
            try:
                endpoint, args = URLS.bind_to_environ(request.environ).match()
            except HTTPException as exc:
                raise ApiError(404, {"message": f"no route {request.method} {path}"}) from exc
            response: Response = getattr(self, endpoint)(request, **args)
            return response
        except ApiError as exc:
            return error_response(api, exc)
        except Exception as exc:  # noqa: BLE001 - a simulator bug answers 500 instead of hanging up
            LOG.error("simulator error on %s %s: %r", request.method, path, exc)
            return error_response(api, ApiError(500, {"message": f"simulator error: {type(exc).__name__}"}))

    def check_auth(self, request: Request) -> Response:
        expected = f"Bearer {self.sim.config.api_key}"
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, {"message": "Invalid or missing API key"})

    # -- task API (seed 003) -----------------------------------------------------------------

    def generate_task(self, request: Request, model: str) -> Response:
        self.check_auth(request)
        body = json_body(request)
        if model not in TASK_MODELS:
            raise ApiError(400, {"message": f"unsupported model {model!r}"})
        task_input = body.get("input")
        if not isinstance(task_input, dict):
            raise ApiError(400, {"message": "input is required and must be an object"})
        prompt = task_input.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
            raise ApiError(400, {"message": f"input.prompt must be 1..{MAX_PROMPT} characters"})
        mode = task_input.get("mode", "text-to-video")
        if mode not in ("text-to-video", "image-to-video"):
            raise ApiError(400, {"message": "input.mode must be text-to-video or image-to-video"})
        images = task_input.get("image_urls")
        if mode == "image-to-video" and (not isinstance(images, list) or not images):
            raise ApiError(400, {"message": "input.image_urls is required for image-to-video"})
        duration = task_input.get("duration", 10)
        if isinstance(duration, str) and duration.isdigit():
            duration = int(duration)
        if duration not in TASK_MODELS[model]:
            raise ApiError(400, {"message": f"input.duration must be one of {sorted(TASK_MODELS[model])}"})
        if task_input.get("aspect_ratio", "landscape") not in ("landscape", "portrait"):
            raise ApiError(400, {"message": "input.aspect_ratio must be landscape or portrait"})
        if body.get("provider", "auto") not in ("auto", "value", "official"):
            raise ApiError(400, {"message": "provider must be auto, value or official"})
        request_type = body.get("request_type", "async")
        callback_url = body.get("callback_url")
        if request_type not in ("async", "callback"):
            raise ApiError(400, {"message": "request_type must be async or callback"})
        if request_type == "callback" and (
            not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
        ):
            raise ApiError(400, {"message": "callback_url is required when request_type is callback"})
        try:
            faults = self.sim._faults_for("task", prompt)
        except ValueError as exc:
            raise ApiError(400, {"message": str(exc)}) from exc
        self.sim.submit_gate("task", prompt, faults)
        job_id = f"task_{model.replace('-', '')}_{int(time.time() * 1000)}_{secrets.token_hex(3)}"
        job = self.sim.new_job(
            "task",
            job_id,
            model,
            prompt,
            faults,
            seconds=str(duration),
            callback_url=callback_url if request_type == "callback" else None,
        )
        self.sim.schedule_callbacks(job)
        return json_response(200, {"code": 200, "msg": "success", "data": {"taskId": job.id}})

    def status_task(self, request: Request, model: str) -> Response:
        self.check_auth(request)
        task_id = request.args.get("taskId", "")
        job = self.sim.job(task_id)
        if not task_id or job is None or job.route != "task":
            raise ApiError(404, {"message": "task not found"})
        with self.sim.lock:
            job.status_polls += 1
        return json_response(200, {"code": 200, "msg": "success", "data": self.sim.task_state(job)})

    # -- official forward (seed 002) ---------------------------------------------------------

    def create_video(self, request: Request) -> Response:
        self.check_auth(request)
        fields, has_reference = form_fields(request)
        model = fields.get("model", "")
        if model not in OFFICIAL_MODELS:
            raise ApiError(400, {"message": f"model must be one of {sorted(OFFICIAL_MODELS)}", "param": "model"})
        prompt = fields.get("prompt", "")
        if not prompt.strip() or len(prompt) > MAX_PROMPT:
            raise ApiError(400, {"message": f"prompt must be 1..{MAX_PROMPT} characters", "param": "prompt"})
        size = fields.get("size", "720x1280")
        if size not in OFFICIAL_MODELS[model]:
            raise ApiError(400, {"message": f"size must be one of {sorted(OFFICIAL_MODELS[model])}", "param": "size"})
        seconds = str(fields.get("seconds", "4"))
        if seconds not in OFFICIAL_SECONDS:
            raise ApiError(400, {"message": "seconds must be one of '4', '8', '12'", "param": "seconds"})
        try:
            faults = self.sim._faults_for("official", prompt)
        except ValueError as exc:
            raise ApiError(400, {"message": str(exc), "param": "prompt"}) from exc
        self.sim.submit_gate("official", prompt, faults)
        job = self.sim.new_job(
            "official",
            f"video_{secrets.token_hex(16)}",
            model,
            prompt,
            faults,
            size=size,
            seconds=seconds,
            has_reference=has_reference,
        )
        return json_response(200, self.sim.video_object(job))

    def official_job(self, video_id: str) -> SimJob:
        job = self.sim.job(video_id)
        if job is None or job.route != "official":
            raise ApiError(404, {"message": f"Video with id '{video_id}' not found.", "param": "video_id"})
        return job

    def retrieve_video(self, request: Request, video_id: str) -> Response:
        self.check_auth(request)
        job = self.official_job(video_id)
        with self.sim.lock:
            job.status_polls += 1
        body = self.sim.video_object(job)
        headers = {}
        if body["status"] in ("queued", "in_progress"):
            wait = max(0.2, min(10.0, job.ready_at - time.time()))
            headers["openai-poll-after-ms"] = str(int(wait * 1000))
        return json_response(200, body, headers)

    def video_content(self, request: Request, video_id: str) -> Response:
        self.check_auth(request)
        job = self.official_job(video_id)
        variant = request.args.get("variant", "video")
        if variant != "video":
            raise ApiError(404, {"message": f"variant {variant!r} is not available from the simulator", "param": "variant"})
        status = self.sim.video_object(job)["status"]
        if status == "expired":
            raise ApiError(404, {"message": "Video content has expired.", "code": "video_expired"})
        if status != "completed":
            raise ApiError(404, {"message": "Video is not ready yet.", "code": "video_not_ready"})
        return self.send_video(job)

    # -- legacy chat completions (seeds 000/001) ---------------------------------------------

    def chat_completions(self, request: Request) -> Response:
        self.check_auth(request)
        body = json_body(request)
        model = body.get("model")
        if model not in LEGACY_MODELS:
            raise ApiError(400, {"message": f"model must be one of {sorted(LEGACY_MODELS)}", "param": "model"})
        prompt, has_image = _chat_prompt(body.get("messages"))
        try:
            faults = self.sim._faults_for("legacy", prompt)
        except ValueError as exc:
            raise ApiError(400, {"message": str(exc), "param": "messages"}) from exc
        self.sim.submit_gate("legacy", prompt, faults)
        job = self.sim.new_job(
            "legacy", f"foaicmpl-{secrets.token_hex(12)}", model, prompt, faults, has_reference=has_image, seconds="10"
        )
        pieces = list(self.legacy_pieces(job))
        if body.get("stream"):
            return Response(self.chat_events(job, pieces), content_type="text/event-stream; charset=utf-8", headers=NO_CACHE)
        for delay, _ in pieces:
            if self.sim.stopping.wait(delay):
                return Response(status=503)
        text = "".join(content for _, content in pieces)
        return json_response(
            200,
            {
                "id": job.id,
                "object": "chat.completion",
                "created": int(job.created),
                "model": job.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": _usage(prompt, text),
            },
        )

    def legacy_pieces(self, job: SimJob) -> Iterator[tuple[float, str]]:
        """(delay before, content) of each text piece the chat answer is made of."""
        block = json.dumps({"prompt": job.prompt, "mode": LEGACY_MODELS[job.model]}, indent=4, ensure_ascii=False)
        yield 0.0, f"```json\n{block}\n```\n\n"
        yield 0.0, "> ⌛️ Task is in queue, please wait patiently...\n\n"
        steps = max(1, self.sim.config.progress_steps)
        step = job.generation_seconds / (steps + 1)
        for i in range(1, steps + 1):
            yield step, f"> 🏃 Progress: {100 * i / (steps + 1):.1f}%\n\n"
        yield step, self.legacy_outcome(job)

    def legacy_outcome(self, job: SimJob) -> str:
        if job.has("content_violation"):
            return "> ❌ Video generation failed: CONTENT_VIOLATION - the prompt violates the content safety guidelines\n\n"
        url = self.sim.result_url(job, ttl=86400)
        return f"> ✅ Video generated successfully, [Click here]({url}) to view video~~~\n\n"

    def chat_events(self, job: SimJob, pieces: list[tuple[float, str]]) -> Iterator[bytes]:
        """The streamed answer as seed 001 shows it: one ``data:`` event per chunk, then ``[DONE]``."""

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            chunk = {
                "id": job.id,
                "object": "chat.completion.chunk",
                "created": int(job.created),
                "model": job.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

        yield event({"role": "assistant"})
        text = ""
        for delay, content in pieces:
            if self.sim.stopping.wait(delay):
                return
            text += content
            yield event({"content": content})
        yield event({}, "stop", usage=_usage(job.prompt, text))
        yield b"data: [DONE]\n\n"

    # -- result downloads --------------------------------------------------------------------

    def result_file(self, request: Request, token: str) -> Response:
        return self.send_video(self.sim.check_result_token(token))

    def send_video(self, job: SimJob) -> Response:
        """Stream the sample MP4, or what the job's faults say instead."""
        with self.sim.lock:
            job.downloads += 1
        if job.has("not_mp4"):
            page = b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>\n" * 8
            return Response(page, content_type="video/mp4")
        size = self.sim.mp4_size
        # truncated_download: the full length is announced, half is sent, the connection closes.
        headers = {"Content-Length": str(size)}
        return Response(self.video_bytes(job, size), content_type="video/mp4", headers=headers, direct_passthrough=True)

    def video_bytes(self, job: SimJob, size: int) -> Iterator[bytes]:
        limit = size // 2 if job.has("truncated_download") else size
        sent = 0
        with SAMPLE_MP4.open("rb") as video:
            while sent < limit:
                data = video.read(min(CHUNK, limit - sent))
                if not data:
                    break
                if job.has("slow_download") and sent < size // 2 <= sent + len(data) and not self.stall(job):
                    return
                yield data
                sent += len(data)
        if sent == size:
            with self.sim.lock:
                job.completed_downloads += 1

    def stall(self, job: SimJob) -> bool:
        """``slow_download``, half-way: wait until the job's callback was answered (so the callback
        can never finish this transfer itself: it must hand it over), at most
        ``slow_download_seconds``; without a callback, that long. False when the simulator stops."""
        end = time.monotonic() + self.sim.config.slow_download_seconds
        answered = self.sim.answered(job) if job.callback_url and not job.has("callback_lost") else None
        while time.monotonic() < end and not (answered and answered.is_set()):
            if self.sim.stopping.wait(0.05):
                return False
        return True

    # -- control ----------------------------------------------------------------------------

    def sim_health(self, request: Request) -> Response:
        return json_response(200, {"ok": True, "jobs": len(self.sim.jobs)})

    def sim_jobs(self, request: Request) -> Response:
        prompt = request.args.get("prompt")
        with self.sim.lock:
            jobs = [j.summary() for j in self.sim.jobs.values() if prompt is None or j.prompt == prompt]
        return json_response(200, {"jobs": jobs})

    def sim_job(self, request: Request, job_id: str) -> Response:
        job = self.sim.job(job_id)
        if job is None:
            raise ApiError(404, {"message": "no such job"})
        with self.sim.lock:
            return json_response(200, job.summary())

    def sim_submits(self, request: Request) -> Response:
        with self.sim.lock:
            return json_response(200, {"attempts": dict(self.sim.submit_attempts)})

    def sim_faults(self, request: Request) -> Response:
        body = json_body(request)
        faults = body.get("faults")
        if not isinstance(faults, list) or not all(f in FAULTS for f in faults):
            raise ApiError(400, {"message": f"faults must be a list drawn from {list(FAULTS)}"})
        route = body.get("route")
        if route not in (None, "task", "official", "legacy"):
            raise ApiError(400, {"message": "route must be task, official or legacy"})
        jobs = body.get("jobs", 1)
        if not isinstance(jobs, int) or jobs < 1:
            raise ApiError(400, {"message": "jobs must be a positive integer"})
        with self.sim.lock:
            self.sim.armed.append({"faults": faults, "route": route, "remaining": jobs})
        return json_response(200, {"armed": self.sim.armed})

    def sim_config(self, request: Request) -> Response:
        body = json_body(request)
        config = self.sim.config
        for key, value in body.items():
            if key not in ("generation_seconds", "slow_download_seconds", "early_callback_lead_seconds", "progress_steps"):
                raise ApiError(400, {"message": f"{key} cannot be changed at run time"})
            if not isinstance(value, int | float) or value < 0:
                raise ApiError(400, {"message": f"{key} must be a non-negative number"})
            setattr(config, key, type(getattr(config, key))(value))
        return json_response(200, asdict(config) | {"api_key": "***"})


URLS = Map(
    [
        Rule("/api/v1/generateTask/<model>", methods=["POST"], endpoint="generate_task"),
        Rule("/api/v1/statusTask/<model>", methods=["GET"], endpoint="status_task"),
        Rule("/v1/videos", methods=["POST"], endpoint="create_video"),
        Rule("/v1/videos/<video_id>", methods=["GET"], endpoint="retrieve_video"),
        Rule("/v1/videos/<video_id>/content", methods=["GET"], endpoint="video_content"),
        Rule("/v1/chat/completions", methods=["POST"], endpoint="chat_completions"),
        Rule("/files/<token>.mp4", methods=["GET"], endpoint="result_file"),
        Rule("/_sim/health", methods=["GET"], endpoint="sim_health"),
        Rule("/_sim/jobs", methods=["GET"], endpoint="sim_jobs"),
        Rule("/_sim/jobs/<job_id>", methods=["GET"], endpoint="sim_job"),
        Rule("/_sim/submits", methods=["GET"], endpoint="sim_submits"),
        Rule("/_sim/faults", methods=["POST"], endpoint="sim_faults"),
        Rule("/_sim/config", methods=["POST"], endpoint="sim_config"),
    ],
    strict_slashes=False,
)
NO_CACHE = {"Cache-Control": "no-cache"}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(api: str, exc: ApiError) -> Response:
    """An error in the calling API's shape: the task API's ``{code, msg}``, OpenAI's ``{error: {...}}``."""
    message = str(exc.body.get("message", "error"))
    if api == "task":
        body: dict[str, Any] = {"code": exc.status, "msg": message, "data": None}
    elif api == "openai":
        kinds = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error"}
        body = {
            "error": {
                "message": message,
                "type": kinds.get(exc.status, "server_error" if exc.status >= 500 else "invalid_request_error"),
                "param": exc.body.get("param"),
                "code": exc.body.get("code"),
            }
        }
    else:
        body = {"error": message}
    return json_response(exc.status, body, exc.headers)


def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError as exc:
        raise ApiError(400, {"message": "request body is not valid JSON"}) from exc
    if not isinstance(body, dict):
        raise ApiError(400, {"message": "request body must be a JSON object"})
    return body


def form_fields(request: Request) -> tuple[dict[str, str], bool]:
    """Fields of a multipart, urlencoded or JSON body; whether a reference image came."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = {name: value for name, value in request.form.items() if name != "input_reference"}
        reference = request.files.get("input_reference")
        has_reference = bool(reference and reference.read(1)) or bool(request.form.get("input_reference"))
        return fields, has_reference
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise ApiError(400, {"message": "request body is not valid JSON"}) from exc
    if not isinstance(body, dict):
        raise ApiError(400, {"message": "request body must be an object"})
    return {k: str(v) for k, v in body.items() if k != "input_reference"}, bool(body.get("input_reference"))


def _chat_prompt(messages: Any) -> tuple[str, bool]:
    """The user's text and whether an image came, from chat ``messages``."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, {"message": "messages must be a non-empty list", "param": "messages"})
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise ApiError(400, {"message": "the last message must come from the user", "param": "messages"})
    content = last.get("content")
    if isinstance(content, str):
        text, has_image = content, False
    elif isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        has_image = any(isinstance(p, dict) and p.get("type") == "image_url" for p in content)
        text = "\n".join(t for t in texts if isinstance(t, str))
    else:
        raise ApiError(400, {"message": "message content must be a string or a list of parts", "param": "messages"})
    if not text.strip() or len(text) > MAX_PROMPT:
        raise ApiError(400, {"message": f"the prompt text must be 1..{MAX_PROMPT} characters", "param": "messages"})
    return text, has_image


def _usage(prompt: str, text: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(text) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler; the TLS handshake runs here, in the request's thread, not in accept()."""

    server: SimulatorServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
        super().setup()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.verbose:
            super().log_request(code, size)


class SimulatorServer(ThreadedWSGIServer):
    """The simulator on Werkzeug's threaded server, over https when given a certificate."""

    daemon_threads = True

    def __init__(
        self, sim: Simulator, host: str = "127.0.0.1", port: int = 0, verbose: bool = False, tls: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__(host, port, SimulatorApp(sim), handler=_Handler)
        self.sim = sim
        self.verbose = verbose
        scheme = "http"
        if tls is not None:
            # Providers speak https: with a certificate (chain file, key file) the simulator does too.
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certfile=str(tls[0]), keyfile=str(tls[1]))
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.ssl_context = context
            scheme = "https"
        sim.base_url = f"{scheme}://{host}:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return self.sim.base_url

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError | TimeoutError):
            return  # a client that hung up or refused the certificate: nothing to report
        super().handle_error(request, client_address)


def start(
    config: SimConfig | None = None, *, port: int = 0, verbose: bool = False, tls: tuple[Path, Path] | None = None
) -> SimulatorServer:
    """Start the simulator in a background thread on 127.0.0.1; returns the server."""
    server = SimulatorServer(Simulator(config), port=port, verbose=verbose, tls=tls)
    threading.Thread(target=server.serve_forever, name="provider-simulator", daemon=True).start()
    return server


def stop(server: SimulatorServer) -> None:
    server.sim.stopping.set()
    server.shutdown()
    server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the provider simulator alone on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--generation-seconds", type=float, default=5.0)
    parser.add_argument("--api-key", default=SimConfig.api_key)
    args = parser.parse_args()
    server = SimulatorServer(
        Simulator(SimConfig(api_key=args.api_key, generation_seconds=args.generation_seconds)), port=args.port, verbose=True
    )
    print(f"provider simulator on {server.url} (key {args.api_key!r}); faults: {', '.join(FAULTS)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.sim.stopping.set()
        server.server_close()


if __name__ == "__main__":
    main()
