"""``POST /videos``: validate against the catalog, record the job, start the workflow and the
provider job, answer 202 with the job.

The workflow starts before the provider call, so a Lambda that dies half-way still leaves a
job that reaches a terminal state. A request with an ``Idempotency-Key`` runs at most once
per (caller, key) (see :mod:`videogen.idempotency`).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import httpx

from .. import observability, secrets, webhooks
from ..catalog import ResolvedSpec, resolve
from ..context import Context
from ..errors import InvalidRequest, ProviderRejected, ProviderUnavailable, ProviderUncertain, VideogenError
from ..images import CheckedImage, delete_input_image, file_name, input_image_url, load_request_image, store_input_image
from ..models import Cost, CreateVideoRequest, ErrorCode, Job
from ..providers import Provider, ReferenceImage, StartRequest, rejection_code
from ..security import make_callback_token
from ..settings import Settings
from ..workflow import start_workflow
from .jobs import view
from .store import fail_job

logger = observability.logger

# Seconds a client's image_url may take to download at submit (the submit Lambda has 29).
IMAGE_FETCH_SECONDS = 10.0
# Seconds kept in hand before the Lambda's timeout (failing the job, answering), and the
# time assumed when there is no Lambda context (scripts, some tests).
SAFETY_SECONDS = 4.0
DEFAULT_SECONDS = 29.0


def submit_video(
    ctx: Context,
    request: CreateVideoRequest,
    *,
    request_base_url: str,
    idempotency_key: str | None,
    caller: str,
    lambda_context: Any = None,
) -> dict[str, Any]:
    """The operation behind ``POST /videos``: ``{"status", "body", "headers"}`` to answer."""
    remaining = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context is not None else DEFAULT_SECONDS
    deadline = time.monotonic() + max(1.0, remaining - SAFETY_SECONDS)
    if idempotency_key is not None and ctx.settings.idempotency_table:
        from .. import idempotency  # Powertools idempotency is imported only when a key is used

        return idempotency.once(
            lambda: answer(ctx, request, request_base_url, deadline, caller),
            settings=ctx.settings,
            request=request,
            key=idempotency_key,
            caller=caller,
            lambda_context=lambda_context,
        )
    if idempotency_key is not None:
        from ..idempotency import checked_key

        checked_key(idempotency_key)
        logger.warning("Idempotency-Key ignored: IDEMPOTENCY_TABLE is not configured")
    return answer(ctx, request, request_base_url, deadline, caller)


def answer(
    ctx: Context, request: CreateVideoRequest, request_base_url: str, deadline: float | None, owner: str
) -> dict[str, Any]:
    """Submit and shape the 202 answer (what an idempotent replay returns again)."""
    job = submit(ctx, request, request_base_url=request_base_url, deadline=deadline, owner=owner)
    return {"status": 202, "body": view(ctx, job), "headers": {"Location": f"/videos/{job.id}"}}


def submit(
    ctx: Context,
    request: CreateVideoRequest,
    *,
    request_base_url: str,
    deadline: float | None = None,
    owner: str = "anonymous",
) -> Job:
    """Validate, record the job, start the workflow and the provider job; return the job."""
    spec = resolve(request, ctx.settings)
    provider = ctx.provider(spec.route)
    if not provider.starts_at_submit and not ctx.settings.state_machine_arn:
        raise VideogenError(
            f"the {spec.route} route runs in the job workflow; STATE_MACHINE_ARN is not set", code="not_configured"
        )
    image = load_request_image(request, spec, ctx.settings, lambda url: _open_image_url(ctx, url))
    job = _new_job(request, spec, owner, ctx.settings)
    if image is not None:
        job.input_image = store_input_image(ctx.settings, job.id, image.data, image.info, image.source)
    try:
        ctx.repo.create(job)
    except BaseException:
        if job.input_image is not None:
            delete_input_image(job.input_image)  # a job never recorded leaves nothing behind
        raise
    logger.append_keys(job_id=job.id)
    try:
        expected = spec.spec.expected_generation_seconds
        start_workflow(ctx.settings, job, first_wait_seconds=provider.first_wait_seconds(expected), expected_seconds=expected)
        provider_job_id = _start_at_provider(ctx, provider, job, spec, image, request_base_url, deadline)
    except Exception as exc:
        _fail_submitted(ctx, job, exc)
        raise
    observability.job_submitted(job.route)
    if provider_job_id is None:
        return job  # queued until the workflow's generate task claims it
    started = ctx.repo.start(job.id, provider_job_id)
    return started or ctx.repo.get(job.id)


def _new_job(request: CreateVideoRequest, spec: ResolvedSpec, owner: str, settings: Settings) -> Job:
    cost = Cost(amount=spec.cost_usd, basis=f"catalog:{spec.route}/{spec.model}") if spec.cost_usd is not None else None
    return Job.new(
        route=spec.route,
        model=spec.model,
        prompt=request.prompt,
        seconds=spec.seconds,
        size=spec.size,
        orientation=spec.orientation,
        image_url=request.image_url,
        metadata=request.metadata,
        cost=cost,
        owner=owner,
        # webhook_url is checked here (https, public addresses only); 400 naming the field.
        webhook=webhooks.requested_webhook(request, settings),
    )


def _start_at_provider(
    ctx: Context,
    provider: Provider,
    job: Job,
    spec: ResolvedSpec,
    image: CheckedImage | None,
    request_base_url: str,
    deadline: float | None,
) -> str | None:
    """The provider's job id, or ``None`` for a route the workflow starts.

    The create is paid work, sent at most once. When its fate is unknown (the request may
    have arrived), the provider is asked what that request created; a job found is adopted,
    otherwise :class:`ProviderUncertain` fails the job loudly.
    """
    if not provider.starts_at_submit:
        return None
    start = StartRequest(provider_model=spec.provider_model, deadline=deadline)
    if provider.calls_back:
        base = (ctx.settings.public_base_url or request_base_url).rstrip("/")
        token = make_callback_token(job.id, secrets.callback_keys(ctx.settings))
        start = replace(start, callback_url=f"{base}/callbacks/{job.id}?token={token}")
    if image is not None and job.input_image is not None:
        if provider.image_input == "file":
            file = ReferenceImage(content=image.data, content_type=image.info.content_type, filename=file_name(job.input_image))
            start = replace(start, image_file=file)
        else:
            # The provider fetches our checked copy of the image, never the client's URL.
            start = replace(start, image_url=input_image_url(ctx.settings, job.input_image)[0])
    sent_at = time.time()
    try:
        return provider.create(job, start)
    except ProviderUncertain:
        found = provider.find_created(job, start, since=sent_at)
        if found is None:
            raise
        logger.warning("create answer lost; adopted the provider job it made", extra={"provider_job_id": found})
        return found


def _fail_submitted(ctx: Context, job: Job, exc: Exception) -> None:
    """A recorded job whose start failed ends ``failed`` at once, with the reason named."""
    if isinstance(exc, ProviderRejected):
        # A refusal of the content (faces, moderation) is named so, in the provider's words.
        fail_job(ctx, job.id, rejection_code(exc.message, exc.details.get("provider_code")), exc.message)
        exc.details.setdefault("job_id", job.id)
    elif isinstance(exc, ProviderUncertain):
        message = f"{exc.message}. Check the provider's dashboard before submitting again: it may bill for it."
        fail_job(ctx, job.id, ErrorCode.SUBMIT_UNCERTAIN.value, message)
        exc.details.setdefault("job_id", job.id)
    elif isinstance(exc, ProviderUnavailable):
        fail_job(ctx, job.id, ErrorCode.PROVIDER_UNAVAILABLE.value, exc.message)
        exc.details.setdefault("job_id", job.id)
    elif isinstance(exc, InvalidRequest):
        fail_job(ctx, job.id, "invalid_request", exc.message)
    else:
        fail_job(ctx, job.id, ErrorCode.PROVIDER_ERROR.value, f"submit failed: {type(exc).__name__}")


def _open_image_url(ctx: Context, url: str) -> AbstractContextManager[httpx.Response]:
    return ctx.image_downloader.open(url, budget_seconds=IMAGE_FETCH_SECONDS)
