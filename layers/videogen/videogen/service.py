"""The pipeline's operations: submit, callback, store, status.

Handlers call these and nothing else; each operation leaves the job row telling the
truth whatever happens (every status change is a conditional write in the repository).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import httpx

from aws_lambda_powertools.utilities import parameters

from . import aws, observability, secrets
from .catalog import resolve
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
from .models import Cost, CreateVideoRequest, ErrorCode, Job, JobError, JobStatus, StoredVideo
from .providers import Outcome
from .providers.task import TaskApi, outcome_of, parse_task_payload
from .repository import JobRepository
from .security import make_callback_token, verify_callback_token
from .settings import Settings, base_url_for, get_settings
from .storage import download_and_store, presign, video_key

logger = observability.logger

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

    @classmethod
    def create(cls, settings: Settings) -> Pipeline:
        return cls(settings=settings, repo=JobRepository(settings.jobs_table, settings.job_ttl_days), http=make_client(settings))

    # -- providers -------------------------------------------------------------------------

    def task_api(self) -> TaskApi:
        return TaskApi(self.settings, base_url_for(self.settings, "task"), secrets.provider_api_key(self.settings, "task"), self.http)

    # -- submit ----------------------------------------------------------------------------

    def submit(self, request: CreateVideoRequest, *, request_base_url: str) -> Job:
        """Validate, record the job, start the provider job and the workflow; return the job."""
        spec = resolve(request, self.settings)
        job = Job.new(
            route=spec.route,
            model=spec.model,
            prompt=request.prompt,
            seconds=spec.seconds,
            size=spec.size,
            orientation=spec.orientation,
            image_url=request.image_url,
            metadata=request.metadata,
            cost=Cost(amount=spec.cost_usd, basis=f"catalog:{spec.route}/{spec.model}"),
        )
        self.repo.create(job)
        logger.append_keys(job_id=job.id)
        # The workflow starts before the provider call: if this Lambda dies half-way, the
        # workflow still finds the job and brings it to a terminal state.
        try:
            self.start_workflow(job, expected_seconds=spec.spec.expected_generation_seconds)
            if spec.route == "task":
                provider_job_id = self._submit_task(job, spec.provider_model, request_base_url)
            else:
                raise InvalidRequest(f"route {spec.route!r} is not implemented yet", field="route", allowed=["task"])
        except ProviderRejected as exc:
            self.fail_job(job.id, ErrorCode.PROVIDER_REJECTED.value, exc.message)
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
            image_urls=[job.image_url] if job.image_url else None,
            callback_url=callback_url,
        )

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

    # -- callback --------------------------------------------------------------------------

    def handle_callback(self, job_id: str, token: str | None, raw_body: str | bytes | None, *, remaining_seconds: float) -> CallbackResult:
        """The task API's callback. Token first; duplicates and late callbacks are 2xx no-ops."""
        if not verify_callback_token(job_id, token, secrets.callback_keys(self.settings)):
            raise Unauthorized("missing or invalid callback token")
        raw = raw_body or b""
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > self.settings.callback_max_body_bytes:
            raise PayloadTooLarge(f"callback body exceeds {self.settings.callback_max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest("callback body is not valid JSON", field="body") from exc
        task = parse_task_payload(body)
        job = self.repo.get(job_id)
        logger.append_keys(job_id=job.id)
        if job.route != "task":
            raise InvalidRequest("this job does not take callbacks", field="job_id")
        if job.status.terminal:
            return CallbackResult(200, {"job_id": job.id, "status": job.status.value, "result": "ignored: job already finished"})
        if job.provider_job_id is None:
            # The callback outran submit's write of the taskId: ask the provider to retry.
            return CallbackResult(503, {"error": {"code": "not_ready", "message": "job not bound to a task yet"}}, {"Retry-After": "30"})
        if task.task_id != job.provider_job_id:
            raise InvalidRequest("taskId does not match this job", field="data.taskId", code="task_mismatch")

        outcome = outcome_of(task)
        if self.settings.verify_callbacks:
            # The callback is a hint; the provider's status API is the truth.
            outcome = outcome_of(self.task_api().status(job.model, job.provider_job_id))
        if outcome.phase in ("pending", "running"):
            return CallbackResult(503, {"error": {"code": "not_final", "message": "provider status is not final yet"}}, {"Retry-After": "30"})
        deadline = time.monotonic() + max(1.0, min(self.settings.callback_budget_seconds, remaining_seconds - 3.0))
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

    def store(
        self, job: Job, url: str, *, deadline: float | None, handoff: bool, headers: dict[str, str] | None = None
    ) -> str:
        """Stream ``url`` into ``videos/{id}.mp4`` and mark the job succeeded, exactly once."""
        if not self.repo.claim_store(job.id, STORE_LEASE_SECONDS):
            current = self.repo.get(job.id)
            return "ignored" if current.status.terminal else "store already running"
        try:
            video = download_and_store(
                url,
                settings=self.settings,
                client=self.http,
                key=video_key(self.settings, job.id),
                metadata={"job-id": job.id, "route": job.route, "model": job.model},
                headers=headers,
                deadline=deadline,
            )
        except TransferFailed as exc:
            self.repo.release_store(job.id)
            if handoff and self.settings.state_machine_arn:
                logger.warning("inline store failed; handing off to the workflow", extra={"reason": exc.code})
                self.start_workflow(job, expected_seconds=0, name=f"{job.id}-store", mode="store", result_url=url)
                return "handed off"
            raise
        if self.repo.succeed(job.id, video) is None:
            # Someone else finished the job first; the object we wrote has the same key and bytes.
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
            return job.public(url, expires)
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
