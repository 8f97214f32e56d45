"""Provider clients, and the one place that maps provider states to job outcomes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from ..models import ErrorCode, JobError

Phase = Literal["pending", "running", "succeeded", "failed"]

# Provider failure codes (task API ``failCode``, OpenAI-style ``error.code``) -> job error codes.
FAIL_CODES: dict[str, ErrorCode] = {
    "content_violation": ErrorCode.CONTENT_VIOLATION,
    "moderation_blocked": ErrorCode.CONTENT_VIOLATION,
    "content_policy_violation": ErrorCode.CONTENT_VIOLATION,
    "invalid_image_url": ErrorCode.INVALID_IMAGE_URL,
    "expired": ErrorCode.EXPIRED,
}


class Outcome(BaseModel):
    """A provider's answer about one job, in the pipeline's terms."""

    phase: Phase
    progress: int | None = None
    result_url: str | None = None
    error: JobError | None = None
    poll_after_seconds: float | None = None


def job_error(code: str | None, message: str | None) -> JobError:
    """Map a provider failure code and message to a job error."""
    mapped = FAIL_CODES.get((code or "").strip().lower(), ErrorCode.PROVIDER_ERROR)
    text = (message or code or "the provider reported a failure").strip()
    return JobError(code=mapped.value, message=text[:1000])
