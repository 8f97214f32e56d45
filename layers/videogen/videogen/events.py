"""Events out: the jobs table's stream is the outbox.

Every status change is first a conditional write of the job (the repository); the table's
stream (``NEW_AND_OLD_IMAGES``) then feeds the notify function, which turns each change into

* an EventBridge event (``source: videogen``, ``detail-type: Video Job Started|Succeeded|Failed``,
  ``detail`` = the job JSON without presigned URLs), and
* a webhook delivery on the delivery queue, for jobs that asked for that event.

A Lambda that dies half-way loses nothing: the stream record is retried, and the event id is
derived from (job id, event type) so a replayed record produces the same ``webhook-id``, which
a receiver can use to drop the duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from . import aws
from .models import Job, JobStatus
from .observability import logger, metrics
from .repository import JobRepository, _from_dynamo
from .settings import Settings

SOURCE = "videogen"
STARTED, PROGRESS, SUCCEEDED, FAILED = "started", "progress", "succeeded", "failed"
TERMINAL_EVENTS = frozenset({SUCCEEDED, FAILED})
DETAIL_TYPES = {STARTED: "Video Job Started", SUCCEEDED: "Video Job Succeeded", FAILED: "Video Job Failed"}


class EventsNotSent(RuntimeError):
    """EventBridge refused an entry; the stream record is retried (nothing is lost)."""


def event_id(job_id: str, event_type: str, record: str | None = None) -> str:
    """The event's id (the ``webhook-id``): the same for a replay, different between events.

    A job has several progress events: theirs also carry the stream record's sequence number.
    """
    basis = f"{job_id}:{event_type}" if record is None else f"{job_id}:{event_type}:{record}"
    return "msg_" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def job_from_image(image: Mapping[str, Any] | None) -> Job | None:
    """A job from a stream record's (deserialized) image; ``None`` for a missing image."""
    if not image:
        return None
    return Job.model_validate(_from_dynamo(dict(image)))


@dataclass(frozen=True)
class JobChange:
    """One stream record: the job before and after, and when the change was written."""

    old: Job | None
    new: Job | None
    at: float  # unix seconds (the record's ApproximateCreationDateTime)
    sequence: str = ""  # the record's sequence number (stable when a record is replayed)


def events_of(change: JobChange) -> list[str]:
    """The event types a change means (usually none or one)."""
    new, old = change.new, change.old
    if new is None:
        return []
    before = old.status if old is not None else None
    if new.status != before:
        if new.status == JobStatus.IN_PROGRESS and before in (None, JobStatus.QUEUED):
            return [STARTED]
        if new.status == JobStatus.SUCCEEDED:
            return [SUCCEEDED]
        if new.status == JobStatus.FAILED:
            return [FAILED]
        return []
    if new.status == JobStatus.IN_PROGRESS and old is not None and new.progress != old.progress:
        return [PROGRESS]
    return []


def timestamp_of(job: Job) -> str:
    """RFC 3339 time of the change: the job's ``updated_at`` (stable across replays)."""
    return job.updated_at


def detail_of(job: Job) -> dict[str, Any]:
    """The job JSON without presigned URLs: they expire, and events end up in logs."""
    body = job.public()
    if body.get("video") is not None:
        for key in ("url", "url_expires_at", "poster_url"):
            body["video"].pop(key, None)
    return body


def eventbridge_entry(job: Job, event_type: str, bus: str) -> dict[str, Any]:
    """The ``PutEvents`` entry for a job's status change."""
    when = datetime.fromisoformat(job.updated_at.replace("Z", "+00:00")).astimezone(UTC)
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPES[event_type],
        "Detail": json.dumps(detail_of(job), separators=(",", ":")),
        "EventBusName": bus,
        "Time": when,
    }


def delivery_message(job: Job, event_type: str, msg_id: str) -> dict[str, Any]:
    """The delivery queue's message: the event and the job as it was when it happened."""
    return {
        "event_id": msg_id,
        "type": event_type,
        "job_id": job.id,
        "timestamp": timestamp_of(job),
        "job": job.model_dump(mode="json", exclude_none=True),
    }


@dataclass
class Outbox:
    """Turns job changes into EventBridge events and queued webhook deliveries."""

    settings: Settings
    repo: JobRepository

    def handle(self, change: JobChange) -> list[str]:
        """Send what ``change`` means; returns what was sent (``"eventbridge:started"``, ...).

        Raises on a failed send, so the stream record is retried; every send is repeatable
        (same event ids), so a retry after a partial success only duplicates, never loses.
        """
        job = change.new
        sent: list[str] = []
        if job is None:
            return sent
        for event_type in events_of(change):
            if event_type in DETAIL_TYPES and self.settings.event_bus_name:
                self.put_event(job, event_type)
                sent.append(f"eventbridge:{event_type}")
                metrics.add_metric(name="JobEventsPut", unit=MetricUnit.Count, value=1)
            if self.wants_webhook(job, event_type) and self.enqueue(job, event_type, change):
                sent.append(f"webhook:{event_type}")
                metrics.add_metric(name="WebhooksQueued", unit=MetricUnit.Count, value=1)
        return sent

    def put_event(self, job: Job, event_type: str) -> None:
        answer = aws.client("events").put_events(Entries=[eventbridge_entry(job, event_type, self.settings.event_bus_name)])
        if answer.get("FailedEntryCount"):
            codes = [entry.get("ErrorCode") for entry in answer.get("Entries", []) if entry.get("ErrorCode")]
            raise EventsNotSent(f"EventBridge refused the {event_type} event of job {job.id}: {codes}")

    def wants_webhook(self, job: Job, event_type: str) -> bool:
        hook = job.webhook
        return bool(hook and self.settings.webhook_queue_url and event_type in hook.events and hook.status != "stopped")

    def enqueue(self, job: Job, event_type: str, change: JobChange) -> bool:
        """Queue one delivery; progress events at most once per interval per job."""
        second = int(change.at) if event_type == PROGRESS else None
        msg_id = (
            event_id(job.id, event_type, change.sequence or str(second)) if second is not None else event_id(job.id, event_type)
        )
        interval = self.settings.webhook_progress_interval_seconds
        if second is not None and not self.repo.claim_progress_window(job.id, second, msg_id, interval):
            logger.debug("progress event throttled", extra={"job_id": job.id})
            return False
        aws.client("sqs").send_message(
            QueueUrl=self.settings.webhook_queue_url,
            MessageBody=json.dumps(delivery_message(job, event_type, msg_id), separators=(",", ":")),
        )
        return True
