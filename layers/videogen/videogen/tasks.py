"""The job workflow's Lambda tasks (``statemachine/job.asl.json``): poll, store, generate, fail.

The state machine owns the waiting (Wait states, ``SecondsPath``) and the retrying (``Retry``
with full jitter); each task does one step and answers a small JSON object the Choice states
branch on. Every job change goes through :mod:`videogen.operations.store`, the path the
callback uses too, so a job ends ``succeeded`` at most once with one object.

Poll answer: ``{"phase", "status", "progress", "wait_seconds", "result_url"}`` where ``phase``
is ``pending``/``running`` (wait ``wait_seconds``, poll again), ``succeeded`` (store
``result_url``), ``failed`` (the job was just failed) or ``done`` (the job was already
terminal, e.g. its callback finished it).

Inputs are one discriminated union on ``action``; each function accepts its own actions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from . import observability
from .context import Context
from .errors import InvalidRequest, ProviderUnavailable, TransferFailed, VideogenError
from .models import ErrorCode, Job, JobStatus
from .operations.generate import run_generation
from .operations.store import fail_job, finish, store_video
from .providers import Outcome

logger = observability.logger

# Seconds a long task keeps in hand before its Lambda timeout: a transfer or stream that
# cannot finish by then stops cleanly (multipart upload aborted, store lease released).
SAFETY_SECONDS = 30.0
# Seconds the poll task keeps in hand before its Lambda timeout (writing the answer).
POLL_SAFETY_SECONDS = 5.0
# The shortest wait a server hint may ask for (Wait states count whole seconds).
MIN_HINT_SECONDS = 1

# Error names (the Lambda ``errorType``, i.e. the exception class) -> job error codes,
# for the catch-all fail task. Anything not listed is a ``provider_error``.
FAILURE_CODES: dict[str, ErrorCode] = {
    "TransferFailed": ErrorCode.DOWNLOAD_FAILED,
    "DeadlineExceeded": ErrorCode.DOWNLOAD_FAILED,
    "VideoNotReady": ErrorCode.DOWNLOAD_FAILED,
    "States.Timeout": ErrorCode.TIMED_OUT,
    "States.HeartbeatTimeout": ErrorCode.TIMED_OUT,
    "Sandbox.Timedout": ErrorCode.TIMED_OUT,
}


class VideoNotReady(VideogenError):
    """The provider said ``completed`` but its content still answers "not ready" (the ASL retries)."""

    status = 503
    code = "not_ready"


class StoreBusy(VideogenError):
    """Another store (the callback's, or a hand-off) holds the lease; the ASL polls again."""

    status = 409
    code = "store_busy"


class _TaskInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str = Field(min_length=1, max_length=200)


class PollInput(_TaskInput):
    """The ``Poll`` state's parameters."""

    action: Literal["poll"]
    started_at: datetime | None = None
    deadline_seconds: int | None = Field(default=None, ge=0)
    poll_interval_seconds: int = Field(default=15, ge=0)


class FailInput(_TaskInput):
    """The fail task's input: the ``{Error, Cause}`` a ``Catch`` put at ``$.error``."""

    action: Literal["fail"]
    error: dict[str, Any] = Field(default_factory=dict)


class StoreInput(_TaskInput):
    """The store task's input: the job, and the result URL a poll or callback found."""

    action: Literal["store"]
    result_url: str | None = Field(default=None, max_length=4096)


class GenerateInput(_TaskInput):
    """The generate task's input: a queued job of a streaming route (legacy)."""

    action: Literal["generate"]


TaskInput = Annotated[PollInput | FailInput | StoreInput | GenerateInput, Field(discriminator="action")]
_TASK_INPUT: TypeAdapter[PollInput | FailInput | StoreInput | GenerateInput] = TypeAdapter(TaskInput)


def parse_task_input(event: Any, accepted: tuple[str, ...]) -> PollInput | FailInput | StoreInput | GenerateInput:
    """Validate a task's input; a function given an action it does not run is a 400."""
    if not isinstance(event, dict):
        raise InvalidRequest("workflow task input must be a JSON object", field="event")
    if event.get("action") not in accepted:
        raise InvalidRequest(f"unknown task action {event.get('action')!r}", field="action", allowed=list(accepted))
    try:
        return _TASK_INPUT.validate_python(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise InvalidRequest(f"invalid workflow task input: {field}: {first['msg']}", field=field) from exc


# -- the functions' entry points ------------------------------------------------------------


def run_poll_function(ctx: Context, event: Any, *, remaining_seconds: float = 60.0) -> dict[str, Any]:
    """The poll function: ``poll`` (a look at the job) or ``fail`` (the workflow's catch-all)."""
    request = parse_task_input(event, ("poll", "fail"))
    if isinstance(request, FailInput):
        return fail(ctx, request)
    assert isinstance(request, PollInput)
    return poll(ctx, request, remaining_seconds=remaining_seconds)


def run_store_function(ctx: Context, event: Any, *, remaining_seconds: float) -> dict[str, Any]:
    """The store function: stream a finished job's video into S3."""
    request = parse_task_input(event, ("store",))
    assert isinstance(request, StoreInput)
    return store(ctx, request, remaining_seconds=remaining_seconds)


def run_generate_function(ctx: Context, event: Any, *, remaining_seconds: float) -> dict[str, Any]:
    """The generate function: run a streaming route's generation call."""
    request = parse_task_input(event, ("generate",))
    assert isinstance(request, GenerateInput)
    return generate(ctx, request, remaining_seconds=remaining_seconds)


# -- the tasks ------------------------------------------------------------------------------


def _answer(job: Job, phase: str, *, wait_seconds: int = 0, result_url: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "phase": phase,
        "status": job.status.value,
        "progress": job.progress,
        "wait_seconds": wait_seconds,
        "result_url": result_url,
    }
    if job.error is not None:
        answer["error"] = job.error.code
    return answer


def _age_seconds(job: Job, now: float) -> float:
    created = datetime.fromisoformat(job.created_at.replace("Z", "+00:00"))
    return now - created.timestamp()


def next_wait(outcome: Outcome, interval: int, max_interval: int, seconds_left: float | None) -> int:
    """Seconds until the next poll: the configured interval, or the server's hint when it
    asks for more (never polling earlier than asked), capped, and never past the deadline."""
    wait = float(interval)
    if outcome.poll_after_seconds is not None:
        wait = max(wait, float(MIN_HINT_SECONDS), outcome.poll_after_seconds)
    wait = min(wait, float(max_interval))
    if seconds_left is not None:
        wait = min(wait, max(0.0, seconds_left))
    return max(0, math.ceil(wait))


def poll(
    ctx: Context, request: PollInput, *, remaining_seconds: float = 60.0, now: Callable[[], float] = time.time
) -> dict[str, Any]:
    """One look at a job and its provider; the answer tells the state machine what is next."""
    job = ctx.repo.find(request.job_id)
    if job is None:
        logger.warning("workflow polled a job that does not exist", extra={"job_id": request.job_id})
        return {"phase": "done", "status": "missing", "progress": 0, "wait_seconds": 0, "result_url": None}
    logger.append_keys(job_id=job.id)
    if job.status.terminal:
        return _answer(job, "done")
    seconds_left = None
    if request.started_at is not None and request.deadline_seconds is not None:
        seconds_left = request.started_at.timestamp() + request.deadline_seconds - now()
    if job.status == JobStatus.QUEUED and not job.provider_job_id:
        return _poll_unstarted(ctx, job, request, seconds_left, now)

    # The status call (retries included) ends before this Lambda would: never Sandbox.Timedout.
    call_deadline = time.monotonic() + max(1.0, remaining_seconds - POLL_SAFETY_SECONDS)
    try:
        outcome = ctx.provider(job.route).status(job, deadline=call_deadline)
    except ProviderUnavailable as exc:
        hint = exc.details.get("retry_after_seconds")
        if hint is None:
            raise  # the ASL retries with jitter, then fails the job
        # The provider asked us to come back later: that is the next wait, not an error.
        outcome = Outcome(phase="pending", poll_after_seconds=float(hint))
    wait = next_wait(outcome, request.poll_interval_seconds, ctx.settings.poll_max_interval_seconds, seconds_left)
    if outcome.phase == "succeeded":
        # ``wait_seconds`` matters only if the store finds another store running (StoreBusy).
        return _answer(job, "succeeded", wait_seconds=max(wait, MIN_HINT_SECONDS), result_url=outcome.result_url)
    finish(ctx, job, outcome, deadline=None, handoff=False)
    if outcome.phase == "failed":
        current = ctx.repo.get(job.id)
        return _answer(current, "failed" if current.status == JobStatus.FAILED else "done")
    if seconds_left is not None and seconds_left <= 0:
        message = f"the provider did not finish the video within {request.deadline_seconds} seconds"
        fail_job(ctx, job.id, ErrorCode.TIMED_OUT.value, message)
        return _answer(ctx.repo.get(job.id), "failed")
    current = ctx.repo.find(job.id) or job
    return _answer(current, "running" if outcome.phase == "running" else "pending", wait_seconds=wait)


def _poll_unstarted(
    ctx: Context, job: Job, request: PollInput, seconds_left: float | None, now: Callable[[], float]
) -> dict[str, Any]:
    """The workflow starts before submit calls the provider. A queued job without a provider
    id is either still being submitted (wait a little) or its submit died (fail it)."""
    grace_left = ctx.settings.submit_grace_seconds - _age_seconds(job, now())
    if seconds_left is not None and seconds_left <= 0:
        message = f"the provider did not accept the job within {request.deadline_seconds} seconds"
        fail_job(ctx, job.id, ErrorCode.TIMED_OUT.value, message)
    elif grace_left > 0:
        limit = grace_left if seconds_left is None else min(grace_left, seconds_left)
        wait = next_wait(Outcome(phase="pending"), request.poll_interval_seconds, ctx.settings.poll_max_interval_seconds, limit)
        return _answer(job, "pending", wait_seconds=wait)
    else:
        message = "the submit request stopped before the provider accepted the job"
        fail_job(ctx, job.id, ErrorCode.SUBMIT_INTERRUPTED.value, message)
    return _answer(ctx.repo.get(job.id), "failed")


def store(ctx: Context, request: StoreInput, *, remaining_seconds: float) -> dict[str, Any]:
    """Stream the job's video into S3 through the one store path (no hand-off: errors raise)."""
    job = ctx.repo.get(request.job_id)
    logger.append_keys(job_id=job.id)
    if job.status.terminal:
        return {"result": "ignored", "status": job.status.value}
    provider = ctx.provider(job.route)
    source = provider.result_source(job, request.result_url)
    deadline = time.monotonic() + max(1.0, remaining_seconds - SAFETY_SECONDS)
    try:
        result = store_video(ctx, job, source.url, deadline=deadline, handoff=False, headers=source.headers)
    except TransferFailed as exc:
        not_ready = provider.content_not_ready_status
        if not_ready is not None and exc.details.get("http_status") == not_ready:
            raise VideoNotReady("the provider reports the video completed but its content is not ready yet") from exc
        raise
    if result == "store already running":
        raise StoreBusy("another store of this job is running")
    return {"result": result, "status": ctx.repo.get(job.id).status.value}


def generate(ctx: Context, request: GenerateInput, *, remaining_seconds: float) -> dict[str, Any]:
    """Run a streaming route's generation call.

    The answer is shaped like a poll answer: ``succeeded`` with the MP4 link sends the state
    machine straight to the store step (a fresh Lambda, the one store path, with its retries;
    the link lives one day); ``failed``/``done`` end the execution.
    """
    deadline = time.monotonic() + max(1.0, remaining_seconds - SAFETY_SECONDS)
    outcome = run_generation(ctx, request.job_id, deadline=deadline)
    job = ctx.repo.get(request.job_id)
    if outcome.phase == "succeeded" and not job.status.terminal:
        return _answer(job, "succeeded", result_url=outcome.result_url)
    return _answer(job, "failed" if job.status == JobStatus.FAILED else "done")


def fail(ctx: Context, request: FailInput) -> dict[str, Any]:
    """The catch-all: make the job terminal with a code chosen from the caught error."""
    name = str(request.error.get("Error") or "States.TaskFailed")
    code = FAILURE_CODES.get(name, ErrorCode.PROVIDER_ERROR).value
    message = _cause_message(request.error.get("Cause"))
    if not message:
        message = f"workflow step failed ({name})"
    elif name.startswith("States.") or name == "Sandbox.Timedout":
        message = f"{name}: {message}"
    changed = fail_job(ctx, request.job_id, code, message)
    return {"phase": "failed", "changed": changed, "error": code}


def _cause_message(cause: Any) -> str:
    """The ``errorMessage`` of a Lambda error cause (a JSON string), or the cause as text."""
    if not cause:
        return ""
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except ValueError:
            return cause[:1000]
        cause = parsed
    if isinstance(cause, dict) and isinstance(cause.get("errorMessage"), str):
        return str(cause["errorMessage"])[:1000]
    return str(cause)[:1000]
