"""Provider clients, and the one place that maps provider states to job outcomes."""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import BaseModel

from ..models import ErrorCode, JobError
from ..settings import Settings

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


def error_message(response: httpx.Response) -> str:
    """The provider's own words for an error answer, whatever its shape (best effort).

    Knows ``{"error": {"message"}}`` (OpenAI-style), ``{"msg"}``/``{"message"}`` (task API),
    ``{"error": "..."}``/``{"detail"}``, and falls back to the text or the status.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
            return str(error["message"])
        for key in ("msg", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return f"HTTP {response.status_code}"


class ProviderClient:
    """What every provider client holds: settings, its base URL, the bearer header, the shared client."""

    def __init__(self, settings: Settings, base_url: str, api_key: str, client: httpx.Client) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.client = client
