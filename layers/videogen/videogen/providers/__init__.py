"""What every provider route shares: the :class:`Provider` interface, outcomes, error mapping.

One module per provider style implements :class:`Provider` (``task``, ``official``,
``legacy``) and :mod:`videogen.providers.registry` maps each route to its implementation.
Wire formats stay inside those modules; the operations only see this interface.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from ..errors import InvalidRequest
from ..models import ErrorCode, JobError, Route
from ..settings import Settings

if TYPE_CHECKING:
    from ..models import Job

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


# The provider's words for a refused prompt or image (real faces, moderation, policy).
REFUSAL = re.compile(
    r"violat|moderat|policy|guideline|sensitive|inappropriate|real (?:person|people|human)|face|人脸|真人|违规|敏感|审核",
    re.IGNORECASE,
)


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
    """What every provider client holds: settings, its base URL, the bearer header, the shared client.

    ``api_key`` may be a function: the key (a Secrets Manager read) is then fetched on the
    first request, so a task that never calls the provider needs no access to its secret.
    """

    extra_headers: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: Settings, base_url: str, api_key: str | Callable[[], str], client: httpx.Client) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.client = client

    @cached_property
    def headers(self) -> dict[str, str]:
        key = self._api_key if isinstance(self._api_key, str) else self._api_key()
        return {"Authorization": f"Bearer {key}", **self.extra_headers}


def rejection_code(message: str, provider_code: str | None = None) -> str:
    """Job error code for a request the provider refused (HTTP 4xx), on any route.

    A known provider code wins (``moderation_blocked`` -> ``content_violation``); otherwise
    the provider's words decide between ``content_violation`` and ``provider_rejected``.
    """
    mapped = FAIL_CODES.get((provider_code or "").strip().lower())
    if mapped is not None:
        return mapped.value
    return ErrorCode.CONTENT_VIOLATION.value if REFUSAL.search(message) else ErrorCode.PROVIDER_REJECTED.value


def refusal_error(message: str) -> JobError:
    """A provider's failure text as a job error: refusals (faces, moderation) are named so."""
    code = ErrorCode.CONTENT_VIOLATION.value if REFUSAL.search(message) else ErrorCode.PROVIDER_ERROR.value
    return job_error(code, message)


def provider_job_id(job: Job) -> str:
    """The job's id at its provider; a job without one (never started) cannot be asked about."""
    if not job.provider_job_id:
        raise InvalidRequest("job has no provider job id yet", field="job_id")
    return job.provider_job_id


@dataclass(frozen=True)
class ReferenceImage:
    """An image sent as a file (the official route's ``input_reference``)."""

    content: bytes
    content_type: str
    filename: str = "input_reference"


@dataclass(frozen=True)
class StartRequest:
    """What a provider needs to start a job, beyond the job itself.

    ``image_url`` is a presigned URL of our checked copy of the input image (never the
    client's URL); ``image_file`` is the same image's bytes, for providers that take a file.
    """

    provider_model: str
    callback_url: str | None = None
    image_url: str | None = None
    image_file: ReferenceImage | None = None
    #: ``time.monotonic()`` by which the provider call must be over (the Lambda's time left).
    deadline: float | None = None


@dataclass(frozen=True)
class ResultSource:
    """Where a finished job's MP4 is fetched from, and the headers the fetch needs."""

    url: str
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class CallbackReport:
    """A provider's callback, read: which provider job it is about, and what it says."""

    provider_job_id: str
    outcome: Outcome


ImageInput = Literal["url", "file"]


@runtime_checkable
class Provider(Protocol):
    """One provider style. Adding a style = one module implementing this + one registry line."""

    route: ClassVar[Route]
    #: The provider calls our callback endpoint when the job ends (else the workflow polls).
    calls_back: ClassVar[bool]
    #: The job is started by submit (``create``); ``False``: the workflow's generate task runs it.
    starts_at_submit: ClassVar[bool]
    #: How the provider takes an input image: a URL it fetches, or the file in the request.
    image_input: ClassVar[ImageInput]
    #: The content answer that means "completed, but the bytes are not there yet" (retry later).
    content_not_ready_status: ClassVar[int | None]

    def create(self, job: Job, start: StartRequest) -> str:
        """Start paid work for ``job``; return the provider's job id."""
        ...

    def status(self, job: Job, *, deadline: float | None = None) -> Outcome:
        """Where ``job`` stands at the provider (its status API is the truth)."""
        ...

    def find_created(self, job: Job, start: StartRequest, *, since: float) -> str | None:
        """After an uncertain ``create``: the provider job that request made, if the provider
        can tell (``since`` is when the request was sent, unix seconds); else ``None``."""
        ...

    def result_source(self, job: Job, result_url: str | None) -> ResultSource:
        """Where to fetch the finished video (``result_url`` is what a status or callback said)."""
        ...

    def first_wait_seconds(self, expected_seconds: int) -> int:
        """How long the workflow waits before its first look at the job."""
        ...

    def read_callback(self, body: Any) -> CallbackReport:
        """Validate a callback body (``InvalidRequest`` naming the field when it is wrong)."""
        ...


class BaseProvider:
    """What most providers share: the defaults of :class:`Provider` and its constructor.

    A subclass sets ``route`` and whichever class attributes differ, and implements
    ``create``, ``status`` and ``first_wait_seconds``.
    """

    route: ClassVar[Route]
    calls_back: ClassVar[bool] = False
    starts_at_submit: ClassVar[bool] = True
    image_input: ClassVar[ImageInput] = "url"
    content_not_ready_status: ClassVar[int | None] = None

    def __init__(self, api: ProviderClient, settings: Settings) -> None:
        self.api = api
        self.settings = settings

    def result_source(self, job: Job, result_url: str | None) -> ResultSource:
        if not result_url:
            raise InvalidRequest("result_url is required for this job's route", field="result_url")
        return ResultSource(result_url)

    def find_created(self, job: Job, start: StartRequest, *, since: float) -> str | None:
        return None  # the API has no way to list what a request created

    def read_callback(self, body: Any) -> CallbackReport:
        raise InvalidRequest("this job does not take callbacks", field="job_id")


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider whose single call runs the whole generation (the legacy SSE route)."""

    def generate(
        self,
        job: Job,
        start: StartRequest,
        *,
        deadline: float,
        on_progress: Callable[[float], None] | None = None,
        on_provider_id: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Run the generation to its end; return its outcome."""
        ...
