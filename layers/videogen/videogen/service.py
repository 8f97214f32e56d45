"""The pipeline's operations: submit, callback, store, status.

Handlers call these and nothing else; each operation leaves the job row telling the
truth whatever happens (every status change is a conditional write in the repository).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import httpx
from aws_lambda_powertools.utilities import parameters

from . import aws, observability, secrets, webhooks
from .catalog import model_spec, provider_model_for, resolve
from .errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProviderRejected,
    ProviderUnavailable,
    TransferFailed,
    Unauthorized,
    VideogenError,
)
from .http import make_client
from .images import CheckedImage, delete_input_image, file_name, input_image_url, load_request_image, store_input_image
from .models import Cost, CreateVideoRequest, ErrorCode, Job, JobError, JobStatus, StoredVideo
from .probe import poster_url as probe_poster_url
from .providers import Outcome
from .providers.legacy import LegacyApi, ProgressThrottle, rejection_code
from .providers.official import OfficialApi, ReferenceImage
from .providers.task import TaskApi, outcome_of, parse_task_payload
from .repository import JobRepository
from .safe_http import DownloadPolicy, DownloadRefused, SafeDownloader
from .security import make_callback_token, verify_callback_token
from .settings import Settings, base_url_for, get_settings
from .storage import delete_video, download_and_store, presign, video_key

logger = observability.logger

# Seconds a client's image_url may take to download at submit (the submit Lambda has 29).
IMAGE_FETCH_SECONDS = 10.0

# Seconds a store holds its lease: the workflow's store task runs up to 15 minutes.
STORE_LEASE_SECONDS = 16 * 60


@dataclass
class CallbackResult:
    """What the callback endpoint answers: an HTTP status and a small JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Pipeline:
    """Settings plus the shared clients; one per process."""

    settings: Settings
    repo: JobRepository
    http: httpx.Client
    # Result URLs come from third parties: they are fetched only through the safe downloader.
    downloader: SafeDownloader | None = None

    @classmethod
    def create(cls, settings: Settings) -> Pipeline:
        return cls(
            settings=settings,
            repo=JobRepository(settings.jobs_table, settings.job_ttl_days),
            http=make_client(settings),
            downloader=SafeDownloader(settings),
        )

    # -- providers -------------------------------------------------------------------------

    def task_api(self) -> TaskApi:
        return TaskApi(
            self.settings, base_url_for(self.settings, "task"), secrets.provider_api_key(self.settings, "task"), self.http
        )

    def official_api(self) -> OfficialApi:
        return OfficialApi(
            self.settings, base_url_for(self.settings, "official"), secrets.provider_api_key(self.settings, "official"), self.http
        )

    def legacy_api(self) -> LegacyApi:
        return LegacyApi(
            self.settings, base_url_for(self.settings, "legacy"), secrets.provider_api_key(self.settings, "legacy"), self.http
        )

    @cached_property
    def image_downloader(self) -> SafeDownloader:
        """Client images may live on any public host: the safe downloader's address checks,
        scheme rule and redirect re-checks apply, but not the provider-host allowlist."""
        policy = DownloadPolicy(allowed_hosts=("*",), allow_local_stack=self.settings.allow_insecure_downloads_for_local_stack)
        return SafeDownloader(self.settings, policy=policy)

    def _open_image_url(self, url: str) -> AbstractContextManager[httpx.Response]:
        return self.image_downloader.open(url, budget_seconds=IMAGE_FETCH_SECONDS)

    # -- submit ----------------------------------------------------------------------------

    def submit(self, request: CreateVideoRequest, *, request_base_url: str) -> Job:
        """Validate, record the job, start the provider job and the workflow; return the job."""
        spec = resolve(request, self.settings)
        if spec.route == "legacy" and not self.settings.state_machine_arn:
            raise VideogenError("the legacy route runs in the job workflow; STATE_MACHINE_ARN is not set", code="not_configured")
        image = load_request_image(request, spec, self.settings, self._open_image_url)
        job = Job.new(
            route=spec.route,
            model=spec.model,
            prompt=request.prompt,
            seconds=spec.seconds,
            size=spec.size,
            orientation=spec.orientation,
            image_url=request.image_url,
            metadata=request.metadata,
            webhook=webhooks.requested_webhook(request, self.settings),
            cost=Cost(amount=spec.cost_usd, basis=f"catalog:{spec.route}/{spec.model}") if spec.cost_usd is not None else None,
        )
        if image is not None:
            job.input_image = store_input_image(self.settings, job.id, image.data, image.info, image.source)
        try:
            self.repo.create(job)
        except BaseException:
            if job.input_image is not None:
                delete_input_image(job.input_image)  # a job never recorded leaves nothing behind
            raise
        logger.append_keys(job_id=job.id)
        # The workflow starts before the provider call: if this Lambda dies half-way, the
        # workflow still finds the job and brings it to a terminal state.
        try:
            self.start_workflow(job, expected_seconds=spec.spec.expected_generation_seconds)
            if spec.route == "task":
                provider_job_id = self._submit_task(job, spec.provider_model, request_base_url)
            elif spec.route == "official":
                provider_job_id = self._submit_official(job, spec.provider_model, _reference_image(job, image))
            else:
                provider_job_id = None  # legacy: the workflow's legacy task makes the streaming call
        except ProviderRejected as exc:
            # A refusal of the content (faces, moderation) is named so, in the provider's words.
            self.fail_job(job.id, rejection_code(exc.message, exc.details.get("provider_code")), exc.message)
            exc.details.setdefault("job_id", job.id)
            raise
        except ProviderUnavailable as exc:
            self.fail_job(job.id, ErrorCode.PROVIDER_UNAVAILABLE.value, exc.message)
            exc.details.setdefault("job_id", job.id)
            raise
        except InvalidRequest as exc:
            self.fail_job(job.id, "invalid_request", exc.message)
            raise
        except Exception as exc:
            self.fail_job(job.id, ErrorCode.PROVIDER_ERROR.value, f"submit failed: {type(exc).__name__}")
            raise
        observability.job_submitted(job.route)
        if provider_job_id is None:
            return job  # queued until the workflow's legacy task claims it
        started = self.repo.start(job.id, provider_job_id)
        return started or self.repo.get(job.id)

    def _submit_task(self, job: Job, provider_model: str, request_base_url: str) -> str:
        base = (self.settings.public_base_url or request_base_url).rstrip("/")
        token = make_callback_token(job.id, secrets.callback_keys(self.settings))
        callback_url = f"{base}/callbacks/{job.id}?token={token}"
        return self.task_api().create(
            provider_model,
            prompt=job.prompt,
            seconds=job.seconds or 10,
            orientation=job.orientation,
            # The provider fetches our checked copy of the image, never the client's URL.
            image_urls=[input_image_url(self.settings, job.input_image)[0]] if job.input_image else None,
            callback_url=callback_url,
        )

    def _submit_official(self, job: Job, provider_model: str, image: ReferenceImage | None = None) -> str:
        """``POST /v1/videos`` (multipart); returns the provider's video id. No callbacks: the workflow polls."""
        return self.official_api().create(provider_model, prompt=job.prompt, seconds=job.seconds or 4, size=job.size, image=image)

    def start_workflow(self, job: Job, *, expected_seconds: int, name: str | None = None, **extra: Any) -> None:
        """Start the job's workflow execution (named by the job id, so a repeat is harmless)."""
        if not self.settings.state_machine_arn:
            return
        payload = {
            "job_id": job.id,
            "route": job.route,
            "mode": "run",
            "first_wait_seconds": self._first_wait(job, expected_seconds),
            "poll_interval_seconds": self.settings.poll_interval_seconds,
            "deadline_seconds": self.settings.workflow_deadline_seconds,
            **extra,
        }
        try:
            aws.client("stepfunctions").start_execution(
                stateMachineArn=self.settings.state_machine_arn, name=name or job.id, input=json.dumps(payload)
            )
        except aws.client("stepfunctions").exceptions.ExecutionAlreadyExists:
            logger.info("workflow execution already exists", extra={"execution": name or job.id})

    def _first_wait(self, job: Job, expected_seconds: int) -> int:
        if job.route == "task":
            return expected_seconds + self.settings.fallback_wait_seconds
        if job.route == "official":
            return min(expected_seconds, self.settings.official_first_wait_seconds)
        return 0

    # -- legacy route: the streaming call, run by the workflow -------------------------------

    def run_legacy(self, job_id: str, *, deadline: float) -> Outcome:
        """Make the legacy route's streaming chat call for a queued job; return its outcome.

        The workflow's legacy task (up to 15 minutes) calls this; it stores a succeeded
        outcome's ``result_url`` at once through :meth:`store`. Progress lines update the job's
        ``progress`` (throttled); a failure fails the job with the provider's words. The call is
        made at most once per job: it is charged per call and its stream cannot be resumed, so
        a job found already in progress (an earlier run died mid-stream) is failed instead.
        ``deadline`` is a ``time.monotonic()`` value for the stream.
        """
        job = self.repo.get(job_id)
        logger.append_keys(job_id=job.id)
        if job.route != "legacy":
            raise InvalidRequest(f"job {job.id} is not on the legacy route", field="job_id")
        if job.status.terminal:
            return Outcome(phase="failed" if job.status == JobStatus.FAILED else "succeeded", error=job.error)
        claimed = self.repo.update(job.id, expect=(JobStatus.QUEUED,), status=JobStatus.IN_PROGRESS.value)
        if claimed is None:
            error = JobError(
                code=ErrorCode.PROVIDER_ERROR.value,
                message="the legacy generation was interrupted and cannot be resumed (the route has no status API)",
            )
            self.finish(job, Outcome(phase="failed", error=error), deadline=None, handoff=False)
            return Outcome(phase="failed", error=error)
        job = claimed
        spec = model_spec(self.settings, "legacy", job.model)
        image = input_image_url(self.settings, job.input_image)[0] if job.input_image else None
        interval = self.settings.legacy_progress_interval_seconds
        throttle = ProgressThrottle(lambda value: self._record_progress(job.id, value), interval)
        try:
            outcome = self.legacy_api().generate(
                provider_model_for(spec, job.model, job.orientation, job.seconds),
                prompt=job.prompt,
                image_url=image,
                deadline=deadline,
                on_progress=throttle,
                on_provider_id=lambda provider_id: self._record_provider_id(job.id, provider_id),
            )
        except ProviderRejected as exc:
            code = rejection_code(exc.message, exc.details.get("provider_code"))
            outcome = Outcome(phase="failed", error=JobError(code=code, message=exc.message[:1000]))
        except ProviderUnavailable as exc:
            error = JobError(code=ErrorCode.PROVIDER_UNAVAILABLE.value, message=exc.message[:1000])
            outcome = Outcome(phase="failed", error=error)
        if outcome.phase == "failed":
            self.finish(job, outcome, deadline=None, handoff=False)
        return outcome

    def _record_progress(self, job_id: str, progress: int) -> None:
        # A lost progress write must not stop a generation that is being paid for.
        try:
            self.repo.record_progress(job_id, progress)
        except Exception:
            logger.warning("progress write failed", exc_info=True)

    def _record_provider_id(self, job_id: str, provider_id: str) -> None:
        try:
            self.repo.update(job_id, expect=(JobStatus.IN_PROGRESS,), provider_job_id=provider_id)
        except Exception:
            logger.warning("provider id write failed", exc_info=True)

    # -- callback --------------------------------------------------------------------------

    def handle_callback(
        self,
        job_id: str,
        token: str | None,
        raw_body: str | bytes | None,
        *,
        remaining_seconds: float,
        base64_encoded: bool = False,
    ) -> CallbackResult:
        """The task API's callback. Token first; duplicates and late callbacks are 2xx no-ops.

        The body is decoded here (``base64_encoded`` as API Gateway flags it), after the token
        check, so a hostile encoding is a 400 for an authenticated caller and a 401 otherwise.
        """
        # The provider waits 30 s for our answer: the whole callback, status check included,
        # shares one budget, measured from its start.
        deadline = time.monotonic() + max(1.0, min(self.settings.callback_budget_seconds, remaining_seconds - 3.0))
        if not verify_callback_token(job_id, token, secrets.callback_keys(self.settings)):
            raise Unauthorized("missing or invalid callback token")
        raw = raw_body or b""
        # surrogatepass: a lone surrogate in the event's body is a 400 below, not a crash here.
        size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        if size > self.settings.callback_max_body_bytes:
            raise PayloadTooLarge(f"callback body exceeds {self.settings.callback_max_body_bytes} bytes")
        if base64_encoded:
            try:
                raw = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest("callback body is not valid base64", field="body") from exc
        try:
            body = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest("callback body is not valid JSON", field="body") from exc
        task = parse_task_payload(body)
        job = self.repo.get(job_id)
        logger.append_keys(job_id=job.id)
        if job.route != "task":
            raise InvalidRequest("this job does not take callbacks", field="job_id")
        if job.provider_job_id is not None and task.task_id != job.provider_job_id:
            # Checked before the terminal no-op: a callback about another task is never "fine".
            raise InvalidRequest("taskId does not match this job", field="data.taskId", code="task_mismatch")
        if job.status.terminal:
            return CallbackResult(200, {"job_id": job.id, "status": job.status.value, "result": "ignored: job already finished"})
        if job.provider_job_id is None:
            # The callback outran submit's write of the taskId: ask the provider to retry.
            return CallbackResult(
                503, {"error": {"code": "not_ready", "message": "job not bound to a task yet"}}, {"Retry-After": "30"}
            )

        outcome = outcome_of(task)
        if self.settings.verify_callbacks:
            # The callback is a hint; the provider's status API is the truth.
            outcome = outcome_of(self.task_api().status(job.model, job.provider_job_id))
        if outcome.phase in ("pending", "running"):
            return CallbackResult(
                503, {"error": {"code": "not_final", "message": "provider status is not final yet"}}, {"Retry-After": "30"}
            )
        result = self.finish(job, outcome, deadline=deadline, handoff=True)
        return CallbackResult(200, {"job_id": job.id, "result": result})

    # -- finishing a job: the one path shared by callback and workflow ---------------------

    def finish(self, job: Job, outcome: Outcome, *, deadline: float | None, handoff: bool) -> str:
        """Bring ``job`` to the state ``outcome`` says. Returns what happened, in a word or two.

        Success streams the result into S3 under a store lease (one store at a time). With
        ``handoff``, a transfer that fails or runs out of time is handed to the workflow's
        store task instead of failing the job; without it the error propagates (the workflow
        retries, then fails the job).
        """
        if outcome.phase == "failed":
            error = outcome.error or JobError(code=ErrorCode.PROVIDER_ERROR.value, message="provider reported a failure")
            return "failed" if self.fail_job(job.id, error.code, error.message) else "ignored"
        if outcome.phase != "succeeded" or not outcome.result_url:
            if outcome.progress is not None:
                self.repo.record_progress(job.id, outcome.progress)
            return "pending"
        return self.store(job, outcome.result_url, deadline=deadline, handoff=handoff)

    def store(self, job: Job, url: str, *, deadline: float | None, handoff: bool, headers: dict[str, str] | None = None) -> str:
        """Stream ``url`` into ``videos/{id}.mp4`` and mark the job succeeded, exactly once."""
        if not self.repo.claim_store(job.id, STORE_LEASE_SECONDS):
            current = self.repo.get(job.id)
            return "ignored" if current.status.terminal else "store already running"
        try:
            video = download_and_store(
                url,
                settings=self.settings,
                downloader=self.downloader,
                key=video_key(self.settings, job.id),
                metadata={"job-id": job.id, "route": job.route, "model": job.model},
                headers=headers,
                deadline=deadline,
            )
        except TransferFailed as exc:
            self.repo.release_store(job.id)
            if isinstance(exc, DownloadRefused):
                # Retrying cannot cure it (refused URL, over the cap, not an MP4, file gone).
                logger.warning("result refused; failing the job", extra={"reason": exc.message})
                return "failed" if self.fail_job(job.id, ErrorCode.DOWNLOAD_FAILED.value, exc.message) else "ignored"
            if handoff and self.settings.state_machine_arn:
                logger.warning("inline store failed; handing off to the workflow", extra={"reason": exc.code})
                self.start_workflow(job, expected_seconds=0, name=f"{job.id}-store", mode="store", result_url=url)
                return "handed off"
            raise
        if self.repo.succeed(job.id, video) is None:
            # Someone else finished the job first. A succeeded job's object has the same key and
            # bytes; a job that ended otherwise (failed, timed out) must not keep our object.
            ended = self.repo.find(job.id)
            if ended is None or ended.status != JobStatus.SUCCEEDED:
                delete_video(video)
            return "ignored"
        observability.job_succeeded(video)
        return "succeeded"

    def fail_job(self, job_id: str, code: str, message: str) -> bool:
        """Make an active job ``failed``, exactly once. False if it was already terminal."""
        if self.repo.fail(job_id, JobError(code=code, message=message[:1000])) is None:
            return False
        observability.job_failed(code)
        return True

    # -- status ----------------------------------------------------------------------------

    def view(self, job: Job) -> dict[str, Any]:
        """The job JSON of the contract, with a presigned URL for a stored video."""
        if job.status == JobStatus.SUCCEEDED and job.video is not None:
            url, expires = presign(self.settings, job.video)
            return job.public(url, expires, poster_url=probe_poster_url(self.settings, job))
        return job.public()

    def get(self, job_id: str) -> dict[str, Any]:
        return self.view(self.repo.get(job_id))

    def list(self, *, status: str | None, limit: int, next_token: str | None) -> dict[str, Any]:
        try:
            wanted = JobStatus(status) if status else None
        except ValueError as exc:
            raise InvalidRequest(f"unknown status {status!r}", field="status", allowed=[s.value for s in JobStatus]) from exc
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100", field="limit")
        jobs, token = self.repo.list(status=wanted, limit=limit, next_token=next_token)
        return {"jobs": [self.view(job) for job in jobs], "next_token": token}


def _reference_image(job: Job, image: CheckedImage | None) -> ReferenceImage | None:
    """The official route's ``input_reference`` file: the checked bytes, named like the stored copy."""
    if image is None or job.input_image is None:
        return None
    return ReferenceImage(content=image.data, content_type=image.info.content_type, filename=file_name(job.input_image))


@lru_cache(maxsize=1)
def get_pipeline() -> Pipeline:
    """The process-wide pipeline (tests call :func:`reset`)."""
    return Pipeline.create(get_settings())


def reset() -> None:
    """Forget cached settings, clients and pipeline (between tests)."""
    get_pipeline.cache_clear()
    get_settings.cache_clear()
    aws.reset_clients()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


__all__ = ["CallbackResult", "NotFound", "Pipeline", "StoredVideo", "VideogenError", "get_pipeline", "reset"]
