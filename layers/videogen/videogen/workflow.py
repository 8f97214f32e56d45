"""The job workflow's Lambda tasks (``statemachine/job.asl.json``): poll, store, fail.

The state machine owns the waiting (Wait states, ``SecondsPath``) and the retrying (``Retry``
with full jitter); these functions do one step each and answer a small JSON object the
Choice states branch on. Every job change goes through :class:`~videogen.service.Pipeline`
(``finish``/``store``/``fail_job``), the same code path the callback uses, so a job ends
``succeeded`` at most once with one object, whoever gets there first.

Poll answer: ``{"phase", "status", "progress", "wait_seconds", "result_url"}`` where ``phase``
is ``pending``/``running`` (wait ``wait_seconds``, poll again), ``succeeded`` (store
``result_url``), ``failed`` (the job was just failed) or ``done`` (the job was already
terminal, e.g. its callback finished it).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import observability
from .errors import InvalidRequest, TransferFailed, VideogenError
from .models import ErrorCode, Job, JobStatus
from .providers import Outcome
from .providers.task import outcome_of as task_outcome
from .service import Pipeline

logger = observability.logger

# Seconds the store task keeps in hand before its Lambda timeout: a transfer that cannot
# finish by then stops cleanly (multipart upload aborted, store lease released).
STORE_SAFETY_SECONDS = 30.0
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
    """The provider said ``completed`` but ``/content`` still answers 404 (the ASL retries)."""

    status = 503
    code = "not_ready"


class StoreBusy(VideogenError):
    """Another store (the callback's, or a hand-off) holds the lease; the ASL polls again."""

    status = 409
    code = "store_busy"


class PollEvent(BaseModel):
    """Input of the poll task (the ``Parameters`` of the ``Poll`` state)."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["poll"] = "poll"
    job_id: str = Field(min_length=1, max_length=200)
    started_at: datetime | None = None
    deadline_seconds: int | None = Field(default=None, ge=0)
    poll_interval_seconds: int = Field(default=15, ge=0)


class FailEvent(BaseModel):
    """Input of the fail task: the ``{Error, Cause}`` a ``Catch`` put at ``$.error``."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["fail"]
    job_id: str = Field(min_length=1, max_length=200)
    error: dict[str, Any] = Field(default_factory=dict)


class StoreEvent(BaseModel):
    """Input of the store task: the job, and the result URL for task-route jobs."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["store"] = "store"
    job_id: str = Field(min_length=1, max_length=200)
    result_url: str | None = Field(default=None, max_length=4096)


def _parse(model: type[BaseModel], event: Any) -> Any:
    if not isinstance(event, dict):
        raise InvalidRequest("workflow task input must be a JSON object", field="event")
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "event"
        raise InvalidRequest(f"invalid workflow task input: {field}: {first['msg']}", field=field) from exc


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


def poll(pipeline: Pipeline, event: Any, *, now: Callable[[], float] = time.time) -> dict[str, Any]:
    """One look at a job and its provider; the answer tells the state machine what is next."""
    request: PollEvent = _parse(PollEvent, event)
    job = pipeline.repo.find(request.job_id)
    if job is None:
        logger.warning("workflow polled a job that does not exist", extra={"job_id": request.job_id})
        return {"phase": "done", "status": "missing", "progress": 0, "wait_seconds": 0, "result_url": None}
    logger.append_keys(job_id=job.id)
    if job.status.terminal:
        return _answer(job, "done")

    started = request.started_at.timestamp() if request.started_at else None
    seconds_left = None
    if started is not None and request.deadline_seconds is not None:
        seconds_left = started + request.deadline_seconds - now()
    interval = request.poll_interval_seconds
    max_interval = pipeline.settings.poll_max_interval_seconds

    if job.status == JobStatus.QUEUED and not job.provider_job_id:
        # The workflow starts before submit calls the provider. A queued job without a
        # provider id is either still being submitted (wait a little) or its submit died.
        grace_left = pipeline.settings.submit_grace_seconds - _age_seconds(job, now())
        if seconds_left is not None and seconds_left <= 0:
            pipeline.fail_job(
                job.id,
                ErrorCode.TIMED_OUT.value,
                f"the provider did not accept the job within {request.deadline_seconds} seconds",
            )
        elif grace_left > 0:
            limit = grace_left if seconds_left is None else min(grace_left, seconds_left)
            return _answer(job, "pending", wait_seconds=next_wait(Outcome(phase="pending"), interval, max_interval, limit))
        else:
            pipeline.fail_job(
                job.id, ErrorCode.SUBMIT_INTERRUPTED.value, "the submit request stopped before the provider accepted the job"
            )
        return _answer(pipeline.repo.get(job.id), "failed")

    outcome = provider_outcome(pipeline, job)
    wait = next_wait(outcome, interval, max_interval, seconds_left)
    if outcome.phase == "succeeded":
        # ``wait_seconds`` matters only if the store finds another store running (StoreBusy).
        return _answer(job, "succeeded", wait_seconds=max(wait, MIN_HINT_SECONDS), result_url=outcome.result_url)
    pipeline.finish(job, outcome, deadline=None, handoff=False)
    if outcome.phase == "failed":
        current = pipeline.repo.get(job.id)
        return _answer(current, "failed" if current.status == JobStatus.FAILED else "done")
    if seconds_left is not None and seconds_left <= 0:
        within = request.deadline_seconds
        pipeline.fail_job(job.id, ErrorCode.TIMED_OUT.value, f"the provider did not finish the video within {within} seconds")
        return _answer(pipeline.repo.get(job.id), "failed")
    current = pipeline.repo.find(job.id) or job
    phase = "running" if outcome.phase == "running" else "pending"
    return _answer(current, phase, wait_seconds=wait)


def provider_outcome(pipeline: Pipeline, job: Job) -> Outcome:
    """Ask the job's provider where the job stands (the provider's status API is the truth)."""
    if not job.provider_job_id:
        raise InvalidRequest("job has no provider id to poll", field="job_id")
    if job.route == "official":
        return pipeline.official_api().retrieve(job.provider_job_id)
    if job.route == "task":
        return task_outcome(pipeline.task_api().status(job.model, job.provider_job_id))
    raise InvalidRequest(f"route {job.route!r} has no status to poll", field="route")


def store(pipeline: Pipeline, event: Any, *, remaining_seconds: float) -> dict[str, Any]:
    """Stream the job's video into S3 through :meth:`Pipeline.store` (no hand-off: errors raise)."""
    request: StoreEvent = _parse(StoreEvent, event)
    job = pipeline.repo.get(request.job_id)
    logger.append_keys(job_id=job.id)
    if job.status.terminal:
        return {"result": "ignored", "status": job.status.value}
    headers: dict[str, str] | None = None
    if job.route == "official":
        if not job.provider_job_id:
            raise InvalidRequest("job has no provider video id to download", field="job_id")
        api = pipeline.official_api()
        url, headers = api.content_url(job.provider_job_id), api.headers
    elif request.result_url:
        url = request.result_url
    else:
        raise InvalidRequest("result_url is required for this job's route", field="result_url")

    deadline = time.monotonic() + max(1.0, remaining_seconds - STORE_SAFETY_SECONDS)
    try:
        result = pipeline.store(job, url, deadline=deadline, handoff=False, headers=headers)
    except TransferFailed as exc:
        if job.route == "official" and exc.details.get("http_status") == 404:
            raise VideoNotReady("the provider reports the video completed but its content is not ready yet") from exc
        raise
    if result == "store already running":
        raise StoreBusy("another store of this job is running")
    return {"result": result, "status": pipeline.repo.get(job.id).status.value}


def fail(pipeline: Pipeline, event: Any) -> dict[str, Any]:
    """The catch-all: make the job terminal with a code chosen from the caught error."""
    request: FailEvent = _parse(FailEvent, event)
    name = str(request.error.get("Error") or "States.TaskFailed")
    code = FAILURE_CODES.get(name, ErrorCode.PROVIDER_ERROR).value
    message = _cause_message(request.error.get("Cause"))
    if not message:
        message = f"workflow step failed ({name})"
    elif name.startswith("States.") or name == "Sandbox.Timedout":
        message = f"{name}: {message}"
    changed = pipeline.fail_job(request.job_id, code, message)
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


def handle_poll_task(pipeline: Pipeline, event: Any) -> dict[str, Any]:
    """Entry point of the poll function: ``action`` ``poll`` (default) or ``fail``."""
    action = event.get("action", "poll") if isinstance(event, dict) else None
    if action == "fail":
        return fail(pipeline, event)
    if action == "poll":
        return poll(pipeline, event)
    raise InvalidRequest(f"unknown poll task action {action!r}", field="action", allowed=["poll", "fail"])


class LegacyEvent(BaseModel):
    """Input of the legacy task: the queued legacy-route job whose streaming call runs now."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["legacy"]
    job_id: str = Field(min_length=1, max_length=200)


def legacy(pipeline: Pipeline, event: Any, *, remaining_seconds: float) -> dict[str, Any]:
    """Run the legacy route's streaming chat call (``Pipeline.run_legacy``).

    The answer is shaped like a poll answer: ``succeeded`` with the MP4 link sends the state
    machine straight to the store step (a fresh 15-minute Lambda, the one store path, with
    its retries; the link lives one day); ``failed``/``done`` end the execution.
    """
    request: LegacyEvent = _parse(LegacyEvent, event)
    deadline = time.monotonic() + max(1.0, remaining_seconds - STORE_SAFETY_SECONDS)
    outcome = pipeline.run_legacy(request.job_id, deadline=deadline)
    job = pipeline.repo.get(request.job_id)
    if outcome.phase == "succeeded" and not job.status.terminal:
        return _answer(job, "succeeded", result_url=outcome.result_url)
    return _answer(job, "failed" if job.status == JobStatus.FAILED else "done")


STORE_ACTIONS: dict[str, Callable[..., dict[str, Any]]] = {"store": store, "legacy": legacy}


def handle_store_task(pipeline: Pipeline, event: Any, *, remaining_seconds: float) -> dict[str, Any]:
    """Entry point of the store function: ``action`` ``store`` (default) or ``legacy``."""
    action = event.get("action", "store") if isinstance(event, dict) else None
    run = STORE_ACTIONS.get(str(action))
    if run is None:
        raise InvalidRequest(f"unknown store task action {action!r}", field="action", allowed=sorted(STORE_ACTIONS))
    return run(pipeline, event, remaining_seconds=remaining_seconds)


__all__ = ["StoreBusy", "VideoNotReady", "fail", "handle_poll_task", "handle_store_task", "legacy", "next_wait", "poll", "store"]
