"""Finishing a job: the one path shared by the callback, the workflow and the legacy run.

Success streams the result into S3 under a store lease (one store at a time) and marks the
job ``succeeded``; failure marks it ``failed``. Every status change is one conditional
write, so a terminal job never changes again, whoever gets there first.
"""

from __future__ import annotations

from typing import Literal

from .. import observability
from ..context import Context
from ..errors import TransferFailed
from ..models import ErrorCode, Job, JobError, JobStatus
from ..providers import Outcome
from ..safe_http import DownloadRefused
from ..storage import delete_video, download_and_store, video_key
from ..workflow import hand_off_store

logger = observability.logger

# Seconds a store holds its lease: the workflow's store task runs up to 15 minutes.
STORE_LEASE_SECONDS = 16 * 60

StoreResult = Literal["succeeded", "failed", "ignored", "handed off", "store already running"]
FinishResult = Literal["succeeded", "failed", "ignored", "handed off", "store already running", "pending"]


def finish(ctx: Context, job: Job, outcome: Outcome, *, deadline: float | None, handoff: bool) -> FinishResult:
    """Bring ``job`` to the state ``outcome`` says; return what happened, in a word or two.

    With ``handoff``, a transfer that fails or runs out of time is handed to the workflow's
    store task instead of failing the job; without it the error propagates (the workflow
    retries, then fails the job).
    """
    if outcome.phase == "failed":
        error = outcome.error or JobError(code=ErrorCode.PROVIDER_ERROR.value, message="provider reported a failure")
        return "failed" if fail_job(ctx, job.id, error.code, error.message) else "ignored"
    if outcome.phase != "succeeded" or not outcome.result_url:
        if outcome.progress is not None:
            ctx.repo.record_progress(job.id, outcome.progress)
        return "pending"
    return store_video(ctx, job, outcome.result_url, deadline=deadline, handoff=handoff)


def store_video(
    ctx: Context, job: Job, url: str, *, deadline: float | None, handoff: bool, headers: dict[str, str] | None = None
) -> StoreResult:
    """Stream ``url`` into ``videos/{id}.mp4`` and mark the job succeeded, exactly once."""
    if not ctx.repo.claim_store(job.id, STORE_LEASE_SECONDS):
        current = ctx.repo.get(job.id)
        return "ignored" if current.status.terminal else "store already running"
    try:
        video = download_and_store(
            url,
            settings=ctx.settings,
            downloader=ctx.downloader,
            key=video_key(ctx.settings, job.id),
            metadata={"job-id": job.id, "route": job.route, "model": job.model},
            headers=headers,
            deadline=deadline,
        )
    except TransferFailed as exc:
        ctx.repo.release_store(job.id)
        if isinstance(exc, DownloadRefused):
            # Retrying cannot cure it (refused URL, over the cap, not an MP4, file gone).
            logger.warning("result refused; failing the job", extra={"reason": exc.message})
            return "failed" if fail_job(ctx, job.id, ErrorCode.DOWNLOAD_FAILED.value, exc.message) else "ignored"
        if handoff and ctx.settings.state_machine_arn:
            logger.warning("inline store failed; handing off to the workflow", extra={"reason": exc.code})
            hand_off_store(ctx.settings, job, url)
            return "handed off"
        raise
    if ctx.repo.succeed(job.id, video) is None:
        # Someone else finished the job first. A succeeded job's object has the same key and
        # bytes; a job that ended otherwise (failed, timed out) must not keep our object.
        ended = ctx.repo.find(job.id)
        if ended is None or ended.status != JobStatus.SUCCEEDED:
            delete_video(video)
        return "ignored"
    observability.job_succeeded(job.route, video)
    return "succeeded"


def fail_job(ctx: Context, job_id: str, code: str, message: str) -> bool:
    """Make an active job ``failed``, exactly once. False if it was already terminal."""
    failed = ctx.repo.fail(job_id, JobError(code=code, message=message[:1000]))
    if failed is None:
        return False
    observability.job_failed(failed.route, code)
    return True
