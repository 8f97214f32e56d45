"""Typed configuration, parsed once from the environment.

Domain code never reads ``os.environ``; it receives a :class:`Settings`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from .models import Route

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseModel):
    """Everything the pipeline needs to know about its deployment."""

    jobs_table: str = "videogen-jobs"
    video_bucket: str = "videogen-videos"
    video_prefix: str = "videos/"

    # One base URL and one API-key secret per provider route: the task API and the
    # OpenAI-style forward are usually run by different companies.
    task_api_base_url: str = ""
    task_api_key_secret: str = ""
    official_api_base_url: str = ""
    official_api_key_secret: str = ""
    legacy_api_base_url: str = ""
    legacy_api_key_secret: str = ""
    # Development only: a literal key used when no secret name is configured.
    provider_api_key: str = ""

    callback_secret: str = ""
    # Development only: literal callback-signing keys as JSON {"active": "v1", "v1": "..."}.
    callback_keys_json: str = ""
    public_base_url: str = ""
    verify_callbacks: bool = True

    default_route: Route = "task"
    default_task_model: str = "sora-2"
    default_official_model: str = "sora-2"
    default_legacy_model: str = "sora_video2"
    task_provider: str = "official"
    catalog_json: str = ""
    catalog_file: str = ""

    state_machine_arn: str = ""
    # Powertools idempotency records for POST /videos (Idempotency-Key); empty: no idempotency.
    idempotency_table: str = ""
    # How long a key is remembered (a retry after that creates a new job).
    idempotency_expires_seconds: int = 24 * 3600
    # Task route: seconds past the expected generation time before the first poll (a callback
    # normally ends the job first; a lost one is found then, later polls grow).
    fallback_wait_seconds: int = 30
    poll_interval_seconds: int = 15
    # Cap on one poll wait, whatever a server's openai-poll-after-ms hint asks for.
    poll_max_interval_seconds: int = 120
    official_first_wait_seconds: int = 180
    workflow_deadline_seconds: int = 3600
    # A queued job without a provider id younger than this may still be in submit; older, its
    # submit died and the workflow fails it (submit_interrupted).
    submit_grace_seconds: int = 120

    # HTTP behaviour towards providers.
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    submit_max_attempts: int = 3
    retry_base_delay_seconds: float = 0.5
    retry_max_delay_seconds: float = 4.0

    # Transfers.
    # Comma-separated hosts (or "*.suffix") videos may be downloaded from; empty: built-in allowlist.
    download_allowed_hosts: str = ""
    # DEVELOPMENT ONLY (the local stack): also download over plain http from loopback addresses.
    allow_insecure_downloads_for_local_stack: bool = False
    max_video_bytes: int = 2 * 1024**3
    part_size_bytes: int = 8 * 1024 * 1024
    # Part buffers alive at once while storing a video (the one being filled and those
    # uploading): the store's memory is about this many times the part size. 1 = no overlap.
    store_parts_in_flight: int = Field(default=3, ge=1, le=8)
    callback_budget_seconds: float = 25.0
    callback_max_body_bytes: int = 64 * 1024
    presign_expires_seconds: int = 3600

    # Image-to-video: inline (base64) images are capped below Lambda's 6 MB event limit; every
    # checked input image is stored under this prefix and shown to providers by presigned URL.
    # 3 MB: the largest submit then fits 6 MB even when API Gateway base64-encodes the body
    # (tests/deploy/test_limits.py computes the bound, about 3.4 MB).
    max_inline_image_bytes: int = 3_000_000
    input_image_prefix: str = "inputs/"
    input_image_url_expires_seconds: int = 6 * 3600

    # Legacy chat route: the longest silence tolerated on its SSE stream, and the least time
    # between two progress writes to DynamoDB.
    legacy_stream_idle_seconds: float = 120.0
    legacy_progress_interval_seconds: float = 10.0

    job_ttl_days: int = 90

    secrets_max_age_seconds: int = 300

    # Events out (videogen.events, videogen.webhooks, videogen.probe).
    # EventBridge bus for "Video Job ..." events; empty: none are put.
    event_bus_name: str = ""
    # Webhook deliveries: the queue the notify function fills and its dead-letter queue.
    webhook_queue_url: str = ""
    webhook_dead_letter_queue_url: str = ""
    # Signing keys: a secret {"active": "v1", "v1": "whsec_..."}; literal JSON for development.
    webhook_secret: str = ""
    webhook_keys_json: str = ""
    # Seconds between delivery attempts (comma-separated); one more attempt than entries.
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000"
    webhook_timeout_seconds: float = 10.0
    webhook_progress_interval_seconds: int = 10
    webhook_max_response_bytes: int = 64 * 1024
    poster_prefix: str = "posters/"
    # The largest moov box the probe reads (it never reads the media data).
    probe_max_moov_bytes: int = 64 * 1024 * 1024

    @field_validator("public_base_url")
    @classmethod
    def _callbacks_over_https(cls, value: str) -> str:
        # Callback URLs carry a job's token: https, except plain http to a loopback host,
        # which only the local stack's explicit setting produces.
        if not value:
            return value
        parts = urlsplit(value)
        if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)):
            return value
        raise ValueError("PUBLIC_BASE_URL must be an https:// URL (http:// only to a loopback host, for the local stack)")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from upper-case environment variables of the same names."""
        source = os.environ if env is None else env
        values: dict[str, str] = {}
        for name in cls.model_fields:
            key = name.upper()
            if key in source and source[key] != "":
                values[name] = source[key]
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()


def base_url_for(settings: Settings, route: Route) -> str:
    """The provider base URL configured for ``route`` (template parameters set it)."""
    url = {
        "task": settings.task_api_base_url,
        "official": settings.official_api_base_url,
        "legacy": settings.legacy_api_base_url,
    }[route].rstrip("/")
    if not url:
        raise RuntimeError(f"no provider base URL configured for route {route!r}")
    return url


def key_secret_for(settings: Settings, route: Route) -> str:
    return {
        "task": settings.task_api_key_secret,
        "official": settings.official_api_key_secret,
        "legacy": settings.legacy_api_key_secret,
    }[route]
