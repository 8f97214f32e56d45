"""The job model, the client's request, and the state rules of a job."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Route = Literal["task", "official", "legacy"]
Orientation = Literal["portrait", "landscape"]

MAX_METADATA_BYTES = 2048


class JobStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})
ACTIVE = (JobStatus.QUEUED, JobStatus.IN_PROGRESS)


class ErrorCode(StrEnum):
    CONTENT_VIOLATION = "content_violation"
    INVALID_IMAGE_URL = "invalid_image_url"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_REJECTED = "provider_rejected"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    DOWNLOAD_FAILED = "download_failed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    SUBMIT_INTERRUPTED = "submit_interrupted"
    SUBMIT_UNCERTAIN = "submit_uncertain"


def utcnow() -> str:
    """ISO-8601 UTC timestamp with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JobError(BaseModel):
    code: str
    message: str


class StoredVideo(BaseModel):
    bucket: str
    key: str
    bytes: int
    content_type: str = "video/mp4"


class InputImage(BaseModel):
    """The checked input image of an image-to-video job, stored at ``inputs/{job_id}.{ext}``."""

    bucket: str
    key: str
    bytes: int
    content_type: str
    width: int
    height: int
    source: Literal["url", "upload"]


class Cost(BaseModel):
    amount: float
    currency: str = "USD"
    basis: str = ""


# Webhooks (issue 11): the event names a client may ask for; succeeded and failed are always sent.
WebhookEventName = Literal["started", "progress", "succeeded", "failed"]
WEBHOOK_EVENTS: tuple[str, ...] = ("started", "progress", "succeeded", "failed")
WEBHOOK_ALWAYS: tuple[str, ...] = ("succeeded", "failed")
MAX_WEBHOOK_URL = 2048


class WebhookState(BaseModel):
    """The job's webhook: where events go, which ones, and how the latest delivery went."""

    url: str
    events: list[str]
    status: Literal["pending", "delivered", "failed", "stopped"] = "pending"
    attempts: int = 0
    last_status: int | None = None
    last_attempt_at: str | None = None


class VideoProbe(BaseModel):
    """What the probe function read from the stored MP4 (shown inside the job's ``video``)."""

    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    warnings: list[str] = Field(default_factory=list)
    poster_key: str | None = None


class Job(BaseModel):
    """One video-generation job as stored in DynamoDB."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: JobStatus = JobStatus.QUEUED
    route: Route
    model: str
    prompt: str
    seconds: int | None = None
    size: str | None = None
    orientation: Orientation | None = None
    image_url: str | None = None
    input_image: InputImage | None = None
    progress: int = 0
    provider_job_id: str | None = None
    created_at: str
    updated_at: str
    completed_at: str | None = None
    error: JobError | None = None
    video: StoredVideo | None = None
    cost: Cost | None = None
    metadata: dict[str, Any] | None = None
    webhook: WebhookState | None = None
    # Internal bookkeeping, not shown to clients.
    owner: str | None = None
    store_lease_until: int | None = None
    expires_at: int | None = None
    # Written by the probe function apart from ``video`` (the probe may run before the job is
    # marked succeeded); merged into the public ``video`` object.
    video_probe: VideoProbe | None = None
    # Which event the ``webhook`` delivery fields describe, and the progress-event window.
    webhook_event: str | None = None
    webhook_progress_window: int | None = None

    @classmethod
    def new(cls, **fields: Any) -> Job:
        now = utcnow()
        return cls(id=uuid.uuid4().hex, created_at=now, updated_at=now, **fields)

    def public(
        self, video_url: str | None = None, url_expires_at: str | None = None, poster_url: str | None = None
    ) -> dict[str, Any]:
        """The job JSON of the HTTP contract."""
        body = self.model_dump(mode="json", exclude=INTERNAL_FIELDS)
        if body["video"] is not None:
            body["video"]["url"] = video_url
            body["video"]["url_expires_at"] = url_expires_at
            probe = self.video_probe or VideoProbe()
            body["video"].update(
                duration_seconds=probe.duration_seconds,
                width=probe.width,
                height=probe.height,
                codec=probe.codec,
                warnings=list(probe.warnings),
                poster_url=poster_url,
            )
        return body


INTERNAL_FIELDS = {"owner", "store_lease_until", "expires_at", "video_probe", "webhook_event", "webhook_progress_window"}


class CreateVideoRequest(BaseModel):
    """Body of ``POST /videos``; catalog rules (durations, sizes) are checked by the service."""

    # Built on first use: only the submit function validates requests (a cold start of the
    # others need not pay for its validators and patterns).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    prompt: str = Field(min_length=1, max_length=10000)
    route: Route | None = None
    model: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$")
    seconds: int | None = Field(default=None, ge=1, le=600)
    orientation: Orientation | None = None
    size: str | None = Field(default=None, pattern=r"^\d{2,5}x\d{2,5}$")
    image_url: str | None = Field(default=None, max_length=2048)
    # An uploaded image: base64 or a data: URL. Lambda's 6 MB request payload bounds it in
    # practice (see images.py); the service checks the decoded bytes against its caps and the
    # catalog and names the limit, so this bound is only a backstop.
    image_base64: str | None = Field(default=None, min_length=1, max_length=16_000_000)
    metadata: dict[str, Any] | None = None
    # Webhooks: syntax here; the address check (public IPs only) is videogen.webhooks'.
    webhook_url: str | None = Field(default=None, min_length=1, max_length=MAX_WEBHOOK_URL)
    webhook_events: list[WebhookEventName] | None = Field(default=None, max_length=4)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_https(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("webhook_url must be an https:// URL with a host")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise ValueError("webhook_url must not carry user credentials")
        return value

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_from_string(cls, value: Any) -> Any:
        # The OpenAI-style API sends seconds as a string; accept "8" as well as 8.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    @field_validator("image_url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("image_url must be an https:// URL")
        return value

    @model_validator(mode="after")
    def _one_image(self) -> CreateVideoRequest:
        if self.image_url is not None and self.image_base64 is not None:
            raise ValueError("give at most one image: image_url or image_base64, not both")
        return self

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialize to at most {MAX_METADATA_BYTES} bytes of JSON")
        return value
