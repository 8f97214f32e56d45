"""The job JSON of the contract: one job (with a presigned video URL) or a page of jobs."""

from __future__ import annotations

from typing import Any

from ..context import Context
from ..errors import InvalidRequest
from ..models import Job, JobStatus
from ..storage import presign

MAX_PAGE = 100


def view(ctx: Context, job: Job) -> dict[str, Any]:
    """The job JSON, with a presigned URL for a stored video."""
    if job.status == JobStatus.SUCCEEDED and job.video is not None:
        url, expires = presign(ctx.settings, job.video)
        return job.public(url, expires)
    return job.public()


def get_job(ctx: Context, job_id: str) -> dict[str, Any]:
    """One job's JSON (404 when there is no such job)."""
    return view(ctx, ctx.repo.get(job_id))


def list_jobs(ctx: Context, *, status: str | None, limit: int, next_token: str | None) -> dict[str, Any]:
    """A page of jobs, newest first: ``{"jobs": [...], "next_token"}``."""
    try:
        wanted = JobStatus(status) if status else None
    except ValueError as exc:
        raise InvalidRequest(f"unknown status {status!r}", field="status", allowed=[s.value for s in JobStatus]) from exc
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    jobs, token = ctx.repo.list(status=wanted, limit=limit, next_token=next_token)
    return {"jobs": [view(ctx, job) for job in jobs], "next_token": token}
