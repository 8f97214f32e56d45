"""The job JSON of the contract: one job (with a presigned video URL) or a page of jobs.

Jobs belong to their owner (the IAM principal that created them): another caller's job is
a 404, and a listing shows only the caller's jobs. List cursors are signed (HMAC under the
callback signing keys, purpose ``cursor``) and bound to the owner and the status filter,
so an edited or foreign cursor is a 400, never a query with a key we did not issue.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .. import secrets
from ..context import Context
from ..errors import InvalidRequest, NotFound
from ..limits import fitting_count
from ..models import Job, JobStatus
from ..probe import poster_url
from ..security import sign, verify
from ..storage import presign

MAX_PAGE = 100
CURSOR_KEYS = frozenset({"id", "list_pk", "created_at", "status", "owner_created"})


def view(ctx: Context, job: Job) -> dict[str, Any]:
    """The job JSON, with a presigned URL for a stored video."""
    if job.status == JobStatus.SUCCEEDED and job.video is not None:
        url, expires = presign(ctx.settings, job.video)
        return job.public(url, expires, poster_url=poster_url(ctx.settings, job))
    return job.public()


def get_job(ctx: Context, job_id: str, *, owner: str) -> dict[str, Any]:
    """``owner``'s job JSON; a job of someone else's is as unknown as a missing one (404)."""
    job = ctx.repo.find(job_id)
    if job is None or (job.owner or "anonymous") != owner:
        raise NotFound(f"job {job_id!r} not found", job_id=job_id)
    return view(ctx, job)


def list_jobs(ctx: Context, *, owner: str, status: str | None, limit: int, next_token: str | None) -> dict[str, Any]:
    """A page of ``owner``'s jobs, newest first: ``{"jobs": [...], "next_token"}``."""
    try:
        wanted = JobStatus(status) if status else None
    except ValueError as exc:
        raise InvalidRequest(f"unknown status {status!r}", field="status", allowed=[s.value for s in JobStatus]) from exc
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    keys = secrets.callback_keys(ctx.settings)
    scope = {"owner": owner, "status": wanted.value if wanted else None}
    start = read_cursor(next_token, scope, keys) if next_token else None
    jobs, last = ctx.repo.list(owner=owner, status=wanted, limit=limit, start_after=start)
    views = [view(ctx, job) for job in jobs]
    fitting = fitting_count(views)
    if fitting < len(views):
        # The byte cap ends the page early: continue right after its last job.
        views = views[:fitting]
        last = ctx.repo.page_key(jobs[fitting - 1], by_status=wanted is not None)
    return {"jobs": views, "next_token": make_cursor(last, scope, keys) if last else None}


def make_cursor(key: dict[str, str], scope: dict[str, Any], keys: dict[str, str]) -> str:
    """An opaque cursor: the position and its scope, signed."""
    payload = json.dumps({"k": key, **scope}, separators=(",", ":"), sort_keys=True)
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{encoded}.{sign(encoded, keys, purpose='cursor')}"


def read_cursor(token: str, scope: dict[str, Any], keys: dict[str, str]) -> dict[str, str]:
    """The position a cursor holds, if we signed it for this owner and filter; else a 400."""
    bad = InvalidRequest("next_token is not a token this API issued for this listing", field="next_token")
    encoded, _, signature = token.partition(".")
    if not encoded or not verify(encoded, signature, keys, purpose="cursor"):
        raise bad
    try:
        payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    key = payload.get("k") if isinstance(payload, dict) else None
    if not isinstance(key, dict) or not set(key) <= CURSOR_KEYS or not all(isinstance(v, str) for v in key.values()):
        raise bad
    if {k: payload.get(k) for k in scope} != scope:
        raise bad  # a cursor of another owner's listing or of another status filter
    return key
