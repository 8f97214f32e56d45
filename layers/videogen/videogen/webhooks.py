"""Webhooks: the submit-time URL check, Standard Webhooks signing, and delivery with retries.

* **URL rules** (at submit and again at every delivery, since DNS can change): ``https``, at
  most 2048 characters, no user-info, and every address the host resolves to is public
  (the safe client's rules: no loopback, private, link-local, metadata or reserved address).
* **Signing**: Standard Webhooks v1 with the ``standardwebhooks`` package; one signature per
  key held in the secret (space-separated) so receivers keep verifying during a rotation.
* **Delivery**: through the safe client (pinned connection to the checked address, redirects
  never followed, a small response read). A 2xx within the timeout is delivered; 410 stops
  deliveries for the job; anything else is retried by the delivery queue on the
  ``WEBHOOK_RETRY_SCHEDULE``, then the message goes to the dead-letter queue.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import httpcore
import httpx
from aws_lambda_powertools.metrics import MetricUnit
from standardwebhooks import Webhook

from . import aws, secrets
from .errors import InvalidRequest, TransferFailed
from .events import TERMINAL_EVENTS
from .http import make_client
from .models import MAX_WEBHOOK_URL, WEBHOOK_ALWAYS, WEBHOOK_EVENTS, CreateVideoRequest, Job, JobStatus, WebhookState
from .observability import logger, metrics
from .probe import poster_url
from .repository import JobRepository
from .safe_http import DownloadPolicy, PinnedBackend, PinnedTransport, Resolver, system_resolver
from .settings import Settings
from .storage import presign

SECRET_PREFIX = "whsec_"  # noqa: S105 - the key format's prefix, not a key
USER_AGENT = "videogen-webhooks/1"


# -- the URL rules ---------------------------------------------------------------------------


def url_policy(settings: Settings) -> DownloadPolicy:
    """Any public host; loopback only with the local stack's development switch."""
    return DownloadPolicy(allowed_hosts=("*",), allow_local_stack=settings.allow_insecure_downloads_for_local_stack)


def check_webhook_url(url: str, settings: Settings, *, resolver: Resolver | None = None) -> None:
    """Refuse a webhook URL a client may not use: a 400 naming ``webhook_url``.

    ``https`` only (even on the local stack), at most 2048 characters, no user-info, and every
    address the host resolves to must be public.
    """

    def refuse(reason: str) -> InvalidRequest:
        return InvalidRequest(f"webhook_url {reason}", field="webhook_url")

    if len(url) > MAX_WEBHOOK_URL:
        raise refuse(f"must be at most {MAX_WEBHOOK_URL} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise refuse(f"is not a valid URL: {exc}") from exc
    if parsed.scheme != "https":
        raise refuse("must be an https:// URL")
    if parsed.userinfo:
        raise refuse("must not carry user credentials")
    if not parsed.host:
        raise refuse("has no host")
    policy = url_policy(settings)
    try:
        # IP literals and resolved names alike: every address must be public.
        policy.checked_addresses(parsed.host, parsed.port or 443, resolver or system_resolver)
    except TransferFailed as exc:
        raise refuse(_reason(exc.message)) from exc
    except httpcore.ConnectError as exc:
        raise refuse(f"host {parsed.host!r} does not resolve") from exc


def _reason(message: str) -> str:
    # The safe client words its refusals for result URLs; say the same of a webhook URL.
    return "refused: " + message.removeprefix("result URL refused: ")


def requested_webhook(
    request: CreateVideoRequest, settings: Settings, *, resolver: Resolver | None = None
) -> WebhookState | None:
    """The job's ``webhook`` for a request (checked), or ``None`` when none was asked for.

    ``succeeded`` and ``failed`` are always sent; the list keeps the contract's order.
    """
    if request.webhook_url is None:
        if request.webhook_events is not None:
            raise InvalidRequest("webhook_events needs a webhook_url", field="webhook_events")
        return None
    check_webhook_url(request.webhook_url, settings, resolver=resolver)
    wanted = set(request.webhook_events or ()) | set(WEBHOOK_ALWAYS)
    return WebhookState(url=request.webhook_url, events=[name for name in WEBHOOK_EVENTS if name in wanted])


# -- signing ---------------------------------------------------------------------------------


def signing_keys(settings: Settings) -> list[str]:
    """The webhook signing keys, ``whsec_<base64>``, the active one first.

    The secret is ``{"active": "v1", "v1": "..."}`` like the callback keys: to rotate, add
    ``"v2"`` and make it active; both sign until ``"v1"`` is removed. A value without the
    ``whsec_`` prefix (what Secrets Manager generates) is its base64 part.
    """
    keys = secrets.versioned_keys(
        settings, settings.webhook_secret, settings.webhook_keys_json, "webhook signing (WEBHOOK_SECRET)"
    )
    active = str(keys["active"])
    versions = [active, *sorted(k for k in keys if k not in ("active", active))]
    return [_whsec(str(keys[v])) for v in versions]


def _whsec(value: str) -> str:
    return value if value.startswith(SECRET_PREFIX) else SECRET_PREFIX + value


def sign(keys: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,<sig>`` per key, space-separated."""
    return " ".join(Webhook(key).sign(msg_id, timestamp, body) for key in keys)


def signed_headers(keys: Sequence[str], msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """Every header of a delivery (the timestamp is the attempt's own)."""
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": sign(keys, msg_id, when, body),
    }


# -- the retry schedule ------------------------------------------------------------------------


def retry_schedule(settings: Settings) -> list[int]:
    """Seconds to wait before attempt 2, 3, ...: ``WEBHOOK_RETRY_SCHEDULE``."""
    delays = [int(part) for part in settings.webhook_retry_schedule.replace(" ", "").split(",") if part]
    if any(d < 0 or d > 43200 for d in delays):
        # SQS visibility timeouts end at 12 hours.
        raise RuntimeError("WEBHOOK_RETRY_SCHEDULE delays must be between 0 and 43200 seconds")
    return delays


# -- sending ---------------------------------------------------------------------------------


@dataclass
class AttemptResult:
    """One POST: the receiver's status (``None`` when none came) and why it did not count."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410


class WebhookSender:
    """POSTs deliveries through the safe client: public addresses only, pinned, no redirects."""

    def __init__(self, settings: Settings, *, resolver: Resolver | None = None, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        backend = PinnedBackend(url_policy(settings), resolver or system_resolver)
        self.client = make_client(
            settings, read_timeout=settings.webhook_timeout_seconds, transport=PinnedTransport(backend, ssl_context=ssl_context)
        )

    def post(self, url: str, body: str, headers: dict[str, str]) -> AttemptResult:
        """One attempt; never raises for the receiver's failures."""
        if not url.startswith("https://"):
            return AttemptResult(None, "webhook URL is not https")
        deadline = time.monotonic() + self.settings.webhook_timeout_seconds
        try:
            limit = self.settings.webhook_timeout_seconds
            timeout = httpx.Timeout(limit, connect=min(5.0, limit))
            with self.client.stream("POST", url, content=body.encode(), headers=headers, timeout=timeout) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= self.settings.webhook_max_response_bytes or time.monotonic() > deadline:
                        break  # the answer's status is what counts; its body is never needed
                if time.monotonic() > deadline:
                    # An answer after the deadline does not count, whatever it says.
                    return AttemptResult(None, "timed out")
                return AttemptResult(response.status_code)
        except TransferFailed as exc:
            # A refused address (private at delivery time): the receiver was never called.
            return AttemptResult(None, _reason(exc.message))
        except httpx.HTTPError as exc:
            return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:300])


# -- one delivery ------------------------------------------------------------------------------

Outcome = Literal["delivered", "stopped", "retry", "failed", "skipped"]


@dataclass
class DeliveryResult:
    outcome: Outcome
    attempt: int
    status: int | None = None
    retry_in: int | None = None
    error: str | None = None


@dataclass
class Deliverer:
    """Delivers queued webhook events (the deliver function's domain)."""

    settings: Settings
    repo: JobRepository
    sender: WebhookSender | None = None

    @cached_property
    def _sender(self) -> WebhookSender:
        return self.sender or WebhookSender(self.settings)

    def body_of(self, message: dict[str, Any]) -> str:
        """The delivery's body: the envelope with the job JSON as ``GET /videos/{id}`` shows it
        (a fresh presigned URL for a stored video)."""
        job = Job.model_validate(message["job"])
        envelope = {"type": f"video.{message['type']}", "timestamp": message["timestamp"], "data": view_of(self.settings, job)}
        return json.dumps(envelope, separators=(",", ":"))

    def deliver(self, message: dict[str, Any], attempt: int) -> DeliveryResult:
        """Attempt ``attempt`` (1-based) of one queued event."""
        job = self.repo.find(str(message["job_id"]))
        event_type = str(message["type"])
        if job is None or job.webhook is None or event_type not in job.webhook.events:
            return DeliveryResult("skipped", attempt, error="job or webhook gone")
        if job.webhook.status == "stopped":
            return DeliveryResult("skipped", attempt, error="receiver answered 410 Gone earlier")
        body = self.body_of(message)
        headers = signed_headers(signing_keys(self.settings), str(message["event_id"]), body)
        result = self._sender.post(job.webhook.url, body, headers)
        terminal = event_type in TERMINAL_EVENTS
        schedule = retry_schedule(self.settings)
        if result.delivered:
            outcome: Outcome = "delivered"
            status = "delivered"
        elif result.gone:
            outcome, status = "stopped", "stopped"
        elif attempt <= len(schedule):
            outcome, status = "retry", "pending"
        else:
            outcome, status = "failed", "failed"
        self.repo.record_webhook_attempt(
            job.id, event=event_type, terminal_event=terminal, status=status, attempts=attempt, last_status=result.status
        )
        retry_in = schedule[attempt - 1] if outcome == "retry" else None
        if outcome == "failed":
            self.dead_letter(message, result)
        metric = {"delivered": "WebhooksDelivered", "stopped": "WebhooksStopped", "failed": "WebhooksDeadLettered"}
        metrics.add_metric(name=metric.get(outcome, "WebhookAttemptsFailed"), unit=MetricUnit.Count, value=1)
        logger.info(
            "webhook attempt",
            extra={"job_id": job.id, "event": event_type, "attempt": attempt, "outcome": outcome, "http_status": result.status},
        )
        return DeliveryResult(outcome, attempt, result.status, retry_in, result.error)

    def dead_letter(self, message: dict[str, Any], result: AttemptResult) -> None:
        """The schedule is spent: the event goes to the dead-letter queue (an alarm watches it)."""
        if not self.settings.webhook_dead_letter_queue_url:
            raise RuntimeError("WEBHOOK_DEAD_LETTER_QUEUE_URL is not set")
        aws.client("sqs").send_message(
            QueueUrl=self.settings.webhook_dead_letter_queue_url,
            MessageBody=json.dumps(message, separators=(",", ":")),
            MessageAttributes={
                "last_status": {"DataType": "String", "StringValue": str(result.status)},
                "last_error": {"DataType": "String", "StringValue": (result.error or "-")[:256]},
            },
        )

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        """Keep the message invisible until the next attempt is due (the queue does the waiting)."""
        aws.client("sqs").change_message_visibility(
            QueueUrl=self.settings.webhook_queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )


# -- the job JSON a receiver gets ----------------------------------------------------------------


def view_of(settings: Settings, job: Job) -> dict[str, Any]:
    """The job JSON exactly as ``GET /videos/{id}`` shows it, presigned URLs fresh."""
    if job.video is None or job.status != JobStatus.SUCCEEDED:
        return job.public()
    url, expires = presign(settings, job.video)
    return job.public(url, expires, poster_url=poster_url(settings, job))


def public_key(settings: Settings) -> dict[str, str]:
    """``GET /webhooks/secret``: the active key, for configuring a receiver."""
    return {"key": signing_keys(settings)[0]}
