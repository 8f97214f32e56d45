"""The job workflow's Lambda tasks (``statemachine/job.asl.json``): poll, store, generate, fail.

The state machine owns the waiting (Wait states, ``SecondsPath``) and the retrying (``Retry``
with full jitter); each task does one step and answers a small JSON object the Choice states
branch on. Every job change goes through :mod:`videogen.operations.store`, the path the
callback uses too, so a job ends ``succeeded`` at most once with one object.

Poll answer: ``{"phase", "status", "progress", "wait_seconds", "result_url", "polled_at"}``
where ``phase`` is ``pending``/``running`` (wait ``wait_seconds``, poll again), ``succeeded``
(store ``result_url``), ``failed`` (the job was just failed) or ``done`` (the job was already
terminal, e.g. its callback finished it). The answer stays at ``$.poll`` and the next poll
gets it back (with the whole execution state, ``$``): the wait follows the job from the
previous progress and time (:func:`next_wait`).

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
# A wait estimated from the progress rate is stretched by this factor plus these seconds:
# polling a little late costs seconds, polling too early costs a whole extra poll.
ESTIMATE_FACTOR = 1.1
ESTIMATE_PAD_SECONDS = 2.0
# Without progress to go by, each wait is this many times the previous one (capped).
BACKOFF_FACTOR = 2.0

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


class PollMemory(BaseModel):
    """What the previous poll answered (``$.poll``): the next wait follows from it."""

    model_config = ConfigDict(extra="ignore")

    progress: int | None = Field(default=None, ge=0, le=100)
    polled_at: float | None = None
    wait_seconds: int | None = Field(default=None, ge=0)


class WorkflowState(BaseModel):
    """The parts of the execution state (``$``) a poll reads; every part is optional, so an
    execution started with an older input still polls (a missing path would fail the state).
    Advisory only: a state that does not fit is ignored (:func:`workflow_state`), never an error."""

    model_config = ConfigDict(extra="ignore")

    expected_seconds: int | None = Field(default=None, ge=0)
    poll: PollMemory | None = None


class PollInput(_TaskInput):
    """The ``Poll`` state's parameters."""

    action: Literal["poll"]
    started_at: datetime | None = None
    deadline_seconds: int | None = Field(default=None, ge=0)
    poll_interval_seconds: int = Field(default=15, ge=0)
    workflow: dict[str, Any] | None = None  # the execution state (``$``), see :func:`workflow_state`


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


_WORKFLOW_STATE: TypeAdapter[WorkflowState] = TypeAdapter(WorkflowState)


def workflow_state(raw: dict[str, Any] | None) -> WorkflowState:
    """What the poll may use of the execution state; a part that does not fit is dropped (the
    wait then falls back to the interval), since it only tunes when the next poll comes."""
    if not raw:
        return WorkflowState()
    try:
        return _WORKFLOW_STATE.validate_python(raw)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]]
        logger.warning("ignoring an unexpected workflow state", extra={"errors": errors})
        return WorkflowState()


def _answer(
    job: Job, phase: str, *, wait_seconds: int = 0, result_url: str | None = None, polled_at: float | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "phase": phase,
        "status": job.status.value,
        "progress": job.progress,
        "wait_seconds": wait_seconds,
        "result_url": result_url,
    }
    if polled_at is not None:
        answer["polled_at"] = round(polled_at, 3)
    if job.error is not None:
        answer["error"] = job.error.code
    return answer


def _age_seconds(job: Job, now: float) -> float:
    created = datetime.fromisoformat(job.created_at.replace("Z", "+00:00"))
    return now - created.timestamp()


def remaining_estimate(progress: int | None, previous: PollMemory | None, now: float, age_seconds: float | None) -> float | None:
    """Seconds until the video is done, from how fast ``progress`` moves: between the previous
    poll and this one, or (first look) since the job was created (queue time included, so the
    estimate errs late). ``None`` when progress says nothing (unknown, 0, 100, or standing still)."""
    if progress is None or not 0 < progress < 100:
        return None
    rate: float | None = None
    if previous is not None and previous.progress is not None and previous.polled_at is not None:
        moved, took = progress - previous.progress, now - previous.polled_at
        if moved <= 0 or took <= 0:
            return None
        rate = moved / took
    elif age_seconds is not None and age_seconds > 0:
        rate = progress / age_seconds
    if rate is None:
        return None
    return (100 - progress) / rate


def next_wait(
    outcome: Outcome,
    interval: int,
    max_interval: int,
    seconds_left: float | None,
    *,
    previous: PollMemory | None = None,
    now: float = 0.0,
    age_seconds: float | None = None,
    expected_seconds: int | None = None,
) -> int:
    """Seconds until the next poll, following the job, in this order:

    1. the remaining time estimated from the progress rate (:func:`remaining_estimate`),
       stretched a little so the next look usually finds the video ready;
    2. else, while the job is younger than the catalog's expected time, the time left to it;
    3. else growing intervals: the previous wait times :data:`BACKOFF_FACTOR` (a task-route
       job whose callback was lost is looked at sparsely; an official job stuck in the queue);
    4. else the configured interval.

    Never less than the interval, never earlier than the server's ``openai-poll-after-ms``
    hint asks, capped at ``max_interval``, and never past the deadline."""
    wait = float(interval)
    estimate = remaining_estimate(outcome.progress, previous, now, age_seconds)
    if estimate is not None:
        wait = max(wait, estimate * ESTIMATE_FACTOR + ESTIMATE_PAD_SECONDS)
    elif expected_seconds is not None and age_seconds is not None and age_seconds < expected_seconds:
        wait = max(wait, expected_seconds - age_seconds)
    elif previous is not None and previous.wait_seconds:
        wait = max(wait, previous.wait_seconds * BACKOFF_FACTOR)
    if outcome.poll_after_seconds is not None:
        wait = max(wait, float(MIN_HINT_SECONDS), outcome.poll_after_seconds)
    wait = min(wait, float(max_interval))
    if seconds_left is not None:
        wait = min(wait, max(0.0, seconds_left))
    return max(0, math.ceil(round(wait, 6)))  # no float noise past a whole second


def wall_clock() -> float:
    """Unix seconds now (scripts/transitions.py replaces it with its virtual clock)."""
    return time.time()


def poll(
    ctx: Context, request: PollInput, *, remaining_seconds: float = 60.0, now: Callable[[], float] | None = None
) -> dict[str, Any]:
    """One look at a job and its provider; the answer tells the state machine what is next."""
    now = now or wall_clock
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
    polled_at = now()
    state = workflow_state(request.workflow)
    wait = next_wait(
        outcome,
        request.poll_interval_seconds,
        ctx.settings.poll_max_interval_seconds,
        seconds_left,
        previous=state.poll,
        now=polled_at,
        age_seconds=_age_seconds(job, polled_at),
        expected_seconds=state.expected_seconds,
    )
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
    phase = "running" if outcome.phase == "running" else "pending"
    return _answer(current, phase, wait_seconds=wait, polled_at=polled_at)


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
