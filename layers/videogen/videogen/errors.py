"""Domain errors. Each carries the HTTP status it maps to, in one place."""

from __future__ import annotations

from typing import Any


class VideogenError(Exception):
    """Base class: ``code`` is the machine-readable error code, ``status`` the HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON error body of the HTTP contract: ``{"error": {"code", "message", ...}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class InvalidRequest(VideogenError):
    """The client's request is wrong (names the field and, where known, the allowed values)."""

    status = 400
    code = "invalid_request"


class NotFound(VideogenError):
    status = 404
    code = "not_found"


class Unauthorized(VideogenError):
    status = 401
    code = "unauthorized"


class Conflict(VideogenError):
    status = 409
    code = "conflict"


class PayloadTooLarge(VideogenError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(VideogenError):
    status = 415
    code = "unsupported_media_type"


class ProviderRejected(VideogenError):
    """The provider answered 4xx: our request (or its content) was refused."""

    status = 422
    code = "provider_rejected"

    def __init__(self, message: str, *, http_status: int | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.http_status = http_status


class ProviderUnavailable(VideogenError):
    """The provider kept answering 429/5xx or could not be reached."""

    status = 502
    code = "provider_unavailable"


class ProviderUncertain(VideogenError):
    """A paid call may or may not have reached the provider: it is never resent blindly."""

    status = 502
    code = "submit_uncertain"


class TransferFailed(VideogenError):
    """Downloading the result or uploading it to S3 failed; nothing was stored."""

    status = 502
    code = "download_failed"


class DeadlineExceeded(TransferFailed):
    """A transfer could not finish within its time budget (it may be retried elsewhere)."""

    code = "deadline_exceeded"
