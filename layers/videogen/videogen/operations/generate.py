"""The legacy route's generation: one streamed chat call, run by the workflow's generate task."""

from __future__ import annotations

from .. import observability
from ..catalog import model_spec, provider_model_for
from ..context import Context
from ..errors import InvalidRequest, ProviderRejected, ProviderUnavailable, ProviderUncertain
from ..images import input_image_url
from ..models import ErrorCode, JobError, JobStatus
from ..providers import Outcome, StartRequest, StreamingProvider, rejection_code
from ..providers.legacy import ProgressThrottle
from .store import finish

logger = observability.logger


def run_generation(ctx: Context, job_id: str, *, deadline: float) -> Outcome:
    """Make the streaming call for a queued job of a streaming route; return its outcome.

    A failed outcome has already failed the job; a succeeded one carries the MP4 link for the
    workflow's store step. Progress lines update the job (throttled). The call is made at
    most once per job: it is charged per call and its stream cannot be resumed, so a job
    found already in progress (an earlier run died mid-stream) is failed instead.
    ``deadline`` is a ``time.monotonic()`` value for the stream.
    """
    job = ctx.repo.get(job_id)
    logger.append_keys(job_id=job.id)
    provider = ctx.provider(job.route)
    if not isinstance(provider, StreamingProvider):
        raise InvalidRequest(f"job {job.id} is not on a streaming route (its route is {job.route})", field="job_id")
    if job.status.terminal:
        return Outcome(phase="failed" if job.status == JobStatus.FAILED else "succeeded", error=job.error)
    claimed = ctx.repo.update(job.id, expect=(JobStatus.QUEUED,), status=JobStatus.IN_PROGRESS.value)
    if claimed is None:
        error = JobError(
            code=ErrorCode.PROVIDER_ERROR.value,
            message="the legacy generation was interrupted and cannot be resumed (the route has no status API)",
        )
        finish(ctx, job, Outcome(phase="failed", error=error), deadline=None, handoff=False)
        return Outcome(phase="failed", error=error)
    job = claimed
    spec = model_spec(ctx.settings, job.route, job.model)
    start = StartRequest(
        provider_model=provider_model_for(spec, job.model, job.orientation, job.seconds),
        image_url=input_image_url(ctx.settings, job.input_image)[0] if job.input_image else None,
    )
    throttle = ProgressThrottle(lambda value: _record_progress(ctx, job.id, value), ctx.settings.legacy_progress_interval_seconds)
    try:
        outcome = provider.generate(
            job,
            start,
            deadline=deadline,
            on_progress=throttle,
            on_provider_id=lambda provider_id: _record_provider_id(ctx, job.id, provider_id),
        )
    except ProviderRejected as exc:
        code = rejection_code(exc.message, exc.details.get("provider_code"))
        outcome = Outcome(phase="failed", error=JobError(code=code, message=exc.message[:1000]))
    except ProviderUncertain as exc:
        # The stream may have started a paid generation: never rerun, say so.
        outcome = Outcome(phase="failed", error=JobError(code=ErrorCode.SUBMIT_UNCERTAIN.value, message=exc.message[:1000]))
    except ProviderUnavailable as exc:
        outcome = Outcome(phase="failed", error=JobError(code=ErrorCode.PROVIDER_UNAVAILABLE.value, message=exc.message[:1000]))
    if outcome.phase == "failed":
        finish(ctx, job, outcome, deadline=None, handoff=False)
    return outcome


def _record_progress(ctx: Context, job_id: str, progress: int) -> None:
    # A lost progress write must not stop a generation that is being paid for.
    try:
        ctx.repo.record_progress(job_id, progress)
    except Exception:
        logger.warning("progress write failed", exc_info=True)


def _record_provider_id(ctx: Context, job_id: str, provider_id: str) -> None:
    try:
        ctx.repo.update(job_id, expect=(JobStatus.IN_PROGRESS,), provider_job_id=provider_id)
    except Exception:
        logger.warning("provider id write failed", exc_info=True)
