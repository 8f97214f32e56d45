"""The task API's callback: token first, then the payload; duplicates and late callbacks are
no-ops. The callback is only a hint: the provider's status API is asked before finishing.

The provider waits 30 s for our answer and retries up to 3 times: the whole callback,
status check and inline store included, shares one time budget measured from its start,
and a transfer that cannot finish in it is handed to the workflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .. import observability, secrets
from ..context import Context
from ..errors import InvalidRequest, Unauthorized
from ..security import verify_callback_token
from .store import finish

logger = observability.logger

# Seconds the provider is asked to wait before retrying a callback we could not take yet.
RETRY_LATER_SECONDS = 30

CallbackAnswer = Literal[
    "ignored", "not_ready", "not_final", "succeeded", "failed", "handed off", "store already running", "pending"
]


@dataclass(frozen=True)
class CallbackResult:
    """What happened to one callback: ``not_ready``/``not_final`` ask the provider to retry."""

    job_id: str
    result: CallbackAnswer
    status: str
    retry_after_seconds: int | None = None


def receive_callback(
    ctx: Context,
    job_id: str,
    token: str | None,
    read_body: Callable[[], Any],
    *,
    remaining_seconds: float,
) -> CallbackResult:
    """Handle one callback. ``read_body`` decodes the request body; it runs only after the
    token is verified, so a hostile encoding is a 4xx for an authenticated caller and a 401
    for anyone else."""
    deadline = time.monotonic() + max(1.0, min(ctx.settings.callback_budget_seconds, remaining_seconds - 3.0))
    if not verify_callback_token(job_id, token, secrets.callback_keys(ctx.settings)):
        raise Unauthorized("missing or invalid callback token")
    body = read_body()
    job = ctx.repo.get(job_id)
    logger.append_keys(job_id=job.id)
    provider = ctx.provider(job.route)
    if not provider.calls_back:
        raise InvalidRequest("this job does not take callbacks", field="job_id")
    report = provider.read_callback(body)
    if job.provider_job_id is not None and report.provider_job_id != job.provider_job_id:
        # Checked before the terminal no-op: a callback about another task is never "fine".
        raise InvalidRequest("taskId does not match this job", field="data.taskId", code="task_mismatch")
    if job.status.terminal:
        return CallbackResult(job.id, "ignored", job.status.value)
    if job.provider_job_id is None:
        # The callback outran submit's write of the taskId: ask the provider to retry.
        return CallbackResult(job.id, "not_ready", job.status.value, RETRY_LATER_SECONDS)
    # The callback is a hint; the provider's status API is the truth.
    outcome = provider.status(job, deadline=deadline) if ctx.settings.verify_callbacks else report.outcome
    if outcome.phase in ("pending", "running"):
        return CallbackResult(job.id, "not_final", job.status.value, RETRY_LATER_SECONDS)
    result = finish(ctx, job, outcome, deadline=deadline, handoff=True)
    return CallbackResult(job.id, result, job.status.value)
