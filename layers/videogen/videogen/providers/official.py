"""Client of the OpenAI-style ``/v1/videos`` API forwarded by the provider (seed 002).

``POST /v1/videos`` (multipart) starts a video, ``GET /v1/videos/{id}`` reports its state,
``GET /v1/videos/{id}/content`` streams the MP4 (404 while it is not ready). There are no
callbacks: the job workflow polls. Errors are ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ProviderRejected, ProviderUnavailable
from ..http import request_timeout, send_once, send_with_retries
from ..models import ErrorCode, JobError
from . import (
    BaseProvider,
    ImageInput,
    Outcome,
    Phase,
    ProviderClient,
    ReferenceImage,
    ResultSource,
    StartRequest,
    job_error,
    provider_job_id,
)

if TYPE_CHECKING:
    from ..models import Job, Route

VIDEO_STATES = ("queued", "in_progress", "completed", "failed", "expired")
POLL_AFTER_HEADER = "openai-poll-after-ms"
# Seconds a provider's clock may run behind ours when matching a video to a create.
RECONCILE_SKEW_SECONDS = 30


class VideoError(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str | None = None
    message: str | None = None


class Video(BaseModel):
    """The video object of ``POST /v1/videos`` and ``GET /v1/videos/{id}``."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str
    progress: int | None = None
    error: VideoError | None = None
    model: str | None = None
    created_at: float | None = None
    seconds: str | int | None = None
    size: str | None = None


def outcome_of(video: Video, *, content_url: str, poll_after_seconds: float | None = None) -> Outcome:
    """The one mapping of ``/v1/videos`` states to job outcomes."""
    progress = max(0, min(100, video.progress)) if video.progress is not None else None
    if video.status == "completed":
        return Outcome(phase="succeeded", progress=100, result_url=content_url)
    if video.status == "failed":
        error = video.error or VideoError()
        return Outcome(phase="failed", error=job_error(error.code, error.message or "the provider reported a failed video"))
    if video.status == "expired":
        message = (video.error.message if video.error and video.error.message else None) or "the video expired at the provider"
        return Outcome(phase="failed", error=JobError(code=ErrorCode.EXPIRED.value, message=message))
    phase: Phase = "running" if video.status == "in_progress" else "pending"
    return Outcome(phase=phase, progress=progress, poll_after_seconds=poll_after_seconds)


def poll_after_seconds(response: httpx.Response) -> float | None:
    """The ``openai-poll-after-ms`` hint in seconds, if the server sent a sane one."""
    value = response.headers.get(POLL_AFTER_HEADER)
    if not value:
        return None
    try:
        millis = float(value)
    except ValueError:
        return None
    return millis / 1000 if millis >= 0 else None


def error_details(response: httpx.Response) -> dict[str, Any]:
    """``message``/``code``/``param``/``type`` of an ``{"error": {...}}`` body (best effort)."""
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:500] or f"HTTP {response.status_code}"}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = {k: error[k] for k in ("message", "code", "param", "type") if isinstance(error.get(k), str) and error[k]}
        details.setdefault("message", f"HTTP {response.status_code}")
        return details
    if isinstance(error, str) and error:
        return {"message": error}
    return {"message": f"HTTP {response.status_code}"}


class OfficialApi(ProviderClient):
    """``POST /v1/videos``, ``GET /v1/videos/{id}`` and the content URL of one provider."""

    def _check(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if 400 <= response.status_code < 500:
            details = error_details(response)
            message = details.pop("message")
            extra = {f"provider_{k}": v for k, v in details.items()}
            raise ProviderRejected(f"{what} refused by provider: {message}", http_status=response.status_code, **extra)
        if response.status_code >= 300:
            raise ProviderUnavailable(f"{what}: unexpected HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(f"{what}: provider answered non-JSON") from exc
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{what}: provider answered an unexpected shape")
        return body

    def _video(self, body: dict[str, Any], what: str) -> Video:
        try:
            video = Video.model_validate(body)
        except ValidationError as exc:
            raise ProviderUnavailable(f"{what}: provider answer is not a video object") from exc
        if not video.id:
            raise ProviderUnavailable(f"{what}: provider answer has no video id")
        if video.status not in VIDEO_STATES:
            raise ProviderUnavailable(f"{what}: unknown video status {video.status!r}")
        return video

    def create(
        self,
        model: str,
        *,
        prompt: str,
        seconds: int,
        size: str | None,
        image: ReferenceImage | None = None,
        deadline: float | None = None,
    ) -> str:
        """Start a video; returns its id. Multipart, ``seconds`` as a string; sent at most once."""
        fields: dict[str, Any] = {"model": (None, model), "prompt": (None, prompt), "seconds": (None, str(seconds))}
        if size:
            fields["size"] = (None, size)
        if image is not None:
            fields["input_reference"] = (image.filename, image.content, image.content_type)
        url = f"{self.base_url}/v1/videos"
        response = send_once(
            lambda: self.client.post(url, files=fields, headers=self.headers, timeout=request_timeout(self.settings, deadline)),
            self.settings,
            what="create video",
            deadline=deadline,
        )
        return self._video(self._check(response, "create video"), "create video").id

    def retrieve(self, video_id: str, *, deadline: float | None = None) -> Outcome:
        """The video's state as an :class:`Outcome` (with the server's poll hint, if any)."""
        url = f"{self.base_url}/v1/videos/{video_id}"
        response = send_with_retries(
            lambda: self.client.get(url, headers=self.headers, timeout=request_timeout(self.settings, deadline)),
            self.settings,
            what="retrieve video",
            deadline=deadline,
        )
        video = self._video(self._check(response, "retrieve video"), "retrieve video")
        if video.id != video_id:
            raise ProviderUnavailable(f"retrieve video: asked for {video_id!r}, provider answered {video.id!r}")
        return outcome_of(video, content_url=self.content_url(video_id), poll_after_seconds=poll_after_seconds(response))

    def recent(self, *, limit: int = 50, deadline: float | None = None) -> list[Video]:
        """The newest videos of this API key (``GET /v1/videos?order=desc``), for reconciling."""
        url = f"{self.base_url}/v1/videos"
        response = send_with_retries(
            lambda: self.client.get(
                url,
                params={"limit": limit, "order": "desc"},
                headers=self.headers,
                timeout=request_timeout(self.settings, deadline),
            ),
            self.settings,
            what="list videos",
            deadline=deadline,
        )
        body = self._check(response, "list videos")
        items = body.get("data")
        if not isinstance(items, list):
            raise ProviderUnavailable("list videos: provider answer has no data list")
        videos = []
        for item in items:
            try:
                videos.append(Video.model_validate(item))
            except ValidationError:
                continue
        return videos

    def content_url(self, video_id: str) -> str:
        """Where the MP4 is streamed from (needs :attr:`headers`; 404 while not ready)."""
        return f"{self.base_url}/v1/videos/{video_id}/content"


class OfficialProvider(BaseProvider):
    """The ``official`` route: ``POST /v1/videos``, then the workflow polls; no callbacks."""

    route: ClassVar[Route] = "official"
    image_input: ClassVar[ImageInput] = "file"
    # ``/content`` may answer 404 for a moment after the video is reported completed.
    content_not_ready_status: ClassVar[int | None] = 404

    api: OfficialApi

    def create(self, job: Job, start: StartRequest) -> str:
        return self.api.create(
            start.provider_model,
            prompt=job.prompt,
            seconds=job.seconds or 4,
            size=job.size,
            image=start.image_file,
            deadline=start.deadline,
        )

    def status(self, job: Job, *, deadline: float | None = None) -> Outcome:
        return self.api.retrieve(provider_job_id(job), deadline=deadline)

    def find_created(self, job: Job, start: StartRequest, *, since: float) -> str | None:
        """After an uncertain create: the one video this request made, if the list shows it.

        A video counts when its model, seconds and size are the request's and it was created
        after ``since`` (unix seconds, minus clock skew). Only a single match is adopted: two
        candidates could be another request's, so that stays uncertain.
        """
        try:
            videos = self.api.recent(deadline=start.deadline)
        except (ProviderUnavailable, ProviderRejected):
            return None
        matches = [
            v.id
            for v in videos
            if v.model == start.provider_model
            and (v.seconds is None or str(v.seconds) == str(job.seconds or 4))
            and (job.size is None or v.size is None or v.size == job.size)
            and v.created_at is not None
            and v.created_at >= since - RECONCILE_SKEW_SECONDS
        ]
        return matches[0] if len(matches) == 1 else None

    def result_source(self, job: Job, result_url: str | None) -> ResultSource:
        # Always our own content URL: a URL from elsewhere never gets the API key.
        return ResultSource(self.api.content_url(provider_job_id(job)), dict(self.api.headers))

    def first_wait_seconds(self, expected_seconds: int) -> int:
        return min(expected_seconds, self.settings.official_first_wait_seconds)
