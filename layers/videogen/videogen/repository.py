"""The job repository: every read and write of the jobs table goes through here.

Every status change is one conditional write, so a terminal job never changes again and
two writers racing on the same job cannot both win.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from . import aws
from .errors import NotFound
from .models import ACTIVE, Job, JobError, JobStatus, StoredVideo, VideoProbe, utcnow

# Listings are per owner: ``by_created`` is keyed by the owner (``list_pk``) and the creation
# time; ``by_status`` by the status and ``owner_created`` ("{owner}#{created_at}").
LIST_INDEX = "by_created"
STATUS_INDEX = "by_status"
SHARED_OWNER = "anonymous"


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class JobRepository:
    """Reads and conditional writes of jobs in one DynamoDB table."""

    def __init__(self, table_name: str, ttl_days: int = 90) -> None:
        self.table = aws.table(table_name)
        self.ttl_days = ttl_days

    # -- reads ---------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        item = self.table.get_item(Key={"id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise NotFound(f"job {job_id!r} not found", job_id=job_id)
        return Job.model_validate(_from_dynamo(item))

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except NotFound:
            return None

    def list(
        self,
        *,
        owner: str = SHARED_OWNER,
        status: JobStatus | None = None,
        limit: int = 20,
        start_after: dict[str, str] | None = None,
    ) -> tuple[list[Job], dict[str, str] | None]:
        """``owner``'s jobs newest first, one page at a time.

        Returns the page and the key to continue after (``None`` at the end); any job's
        :meth:`page_key` is a valid ``start_after`` too (to end a page early).
        """
        kwargs: dict[str, Any] = {"ScanIndexForward": False, "Limit": limit}
        if status is None:
            kwargs["IndexName"] = LIST_INDEX
            kwargs["KeyConditionExpression"] = Key("list_pk").eq(owner)
        else:
            kwargs["IndexName"] = STATUS_INDEX
            kwargs["KeyConditionExpression"] = Key("status").eq(status.value) & Key("owner_created").begins_with(f"{owner}#")
        if start_after:
            kwargs["ExclusiveStartKey"] = start_after
        page = self.table.query(**kwargs)
        jobs = [Job.model_validate(_from_dynamo(item)) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return jobs, ({str(k): str(v) for k, v in _from_dynamo(last).items()} if last else None)

    @staticmethod
    def page_key(job: Job, *, by_status: bool) -> dict[str, str]:
        """The index key of ``job`` in a listing (where a page that ends at it continues)."""
        owner = job.owner or SHARED_OWNER
        if by_status:
            return {"id": job.id, "status": job.status.value, "owner_created": f"{owner}#{job.created_at}"}
        return {"id": job.id, "list_pk": owner, "created_at": job.created_at}

    # -- writes --------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        """Write a new job; an existing id is never overwritten."""
        item = job.model_dump(mode="json", exclude_none=True)
        owner = job.owner or SHARED_OWNER
        item["owner"] = owner
        item["list_pk"] = owner
        item["owner_created"] = f"{owner}#{job.created_at}"
        if self.ttl_days > 0:
            item["expires_at"] = int(time.time()) + self.ttl_days * 86400
        self.table.put_item(Item=_to_dynamo(item), ConditionExpression=Attr("id").not_exists())
        return job

    def update(
        self, job_id: str, *, expect: tuple[JobStatus, ...] = ACTIVE, remove: tuple[str, ...] = (), **fields: Any
    ) -> Job | None:
        """Set ``fields`` if the job's status is one of ``expect``.

        Returns the updated job, or ``None`` when the condition failed (the job moved on:
        a duplicate or late writer). Never raises for a lost race.
        """
        fields["updated_at"] = utcnow()
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": _to_dynamo(_plain(value)) for i, value in enumerate(fields.values())}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        expression = f"SET {sets}"
        if remove:
            names.update({f"#r{i}": name for i, name in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        names["#status"] = "status"
        expected = {f":e{i}": status.value for i, status in enumerate(expect)}
        values.update(expected)
        condition = f"attribute_exists(id) AND #status IN ({', '.join(expected)})"
        try:
            result = self.table.update_item(
                Key={"id": job_id},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return Job.model_validate(_from_dynamo(result["Attributes"]))

    def start(self, job_id: str, provider_job_id: str) -> Job | None:
        """queued -> in_progress, recording the provider's id."""
        return self.update(
            job_id, expect=(JobStatus.QUEUED,), status=JobStatus.IN_PROGRESS.value, provider_job_id=provider_job_id
        )

    def record_progress(self, job_id: str, progress: int) -> Job | None:
        return self.update(job_id, expect=(JobStatus.IN_PROGRESS,), progress=max(0, min(100, int(progress))))

    def succeed(self, job_id: str, video: StoredVideo) -> Job | None:
        """Active -> succeeded, exactly once."""
        now = utcnow()
        return self.update(
            job_id,
            status=JobStatus.SUCCEEDED.value,
            video=video.model_dump(),
            progress=100,
            completed_at=now,
            remove=("store_lease_until",),
        )

    def fail(self, job_id: str, error: JobError) -> Job | None:
        """Active -> failed, exactly once."""
        return self.update(
            job_id,
            status=JobStatus.FAILED.value,
            error=error.model_dump(),
            completed_at=utcnow(),
            remove=("store_lease_until",),
        )

    def claim_store(self, job_id: str, seconds: int) -> bool:
        """Take the store lease for ``seconds``; only one store runs for a job at a time."""
        now = int(time.time())
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="SET store_lease_until = :until",
                ConditionExpression=(
                    "#status = :in_progress AND (attribute_not_exists(store_lease_until) OR store_lease_until < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":until": now + seconds, ":now": now, ":in_progress": JobStatus.IN_PROGRESS.value},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def release_store(self, job_id: str) -> None:
        """Give the store lease back after a failed attempt, so another store can run."""
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="REMOVE store_lease_until",
                ConditionExpression="#status = :in_progress",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":in_progress": JobStatus.IN_PROGRESS.value},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    # -- events out (webhooks, probe): fields beside the status, written in any status -----

    def record_webhook_attempt(
        self, job_id: str, *, event: str, terminal_event: bool, status: str, attempts: int, last_status: int | None
    ) -> bool:
        """Record a delivery attempt of ``event`` in the job's ``webhook`` object.

        ``stopped`` (the receiver answered 410) is final, and once a terminal event
        (succeeded/failed) is tracked a late started/progress delivery does not overwrite it.
        False when the condition kept the record as it was.
        """
        names = {"#w": "webhook", "#st": "status", "#a": "attempts", "#ls": "last_status", "#t": "last_attempt_at"}
        names["#e"] = "webhook_event"
        values: dict[str, Any] = {
            ":st": status,
            ":a": attempts,
            ":ls": last_status,
            ":t": utcnow(),
            ":e": event,
            ":stopped": "stopped",
        }
        condition = "attribute_exists(#w) AND #w.#st <> :stopped"
        if not terminal_event:
            condition += " AND (attribute_not_exists(#e) OR NOT #e IN (:succeeded, :failed))"
            values.update({":succeeded": "succeeded", ":failed": "failed"})
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="SET #w.#st = :st, #w.#a = :a, #w.#ls = :ls, #w.#t = :t, #e = :e",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def claim_progress_window(self, job_id: str, second: int, event_id: str, interval: int) -> bool:
        """Claim a progress event at unix ``second``: at most one per ``interval`` seconds per job.

        A replay of the same event (same id) claims it again, so a record retried after a
        crash is re-sent with the same id instead of lost.
        """
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="SET webhook_progress_window = :w, webhook_progress_event = :id",
                ConditionExpression=(
                    "attribute_exists(id) AND (attribute_not_exists(webhook_progress_window)"
                    " OR webhook_progress_window <= :limit OR webhook_progress_event = :id)"
                ),
                ExpressionAttributeValues={":w": second, ":limit": second - interval, ":id": event_id},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def record_probe(self, job_id: str, probe: VideoProbe) -> bool:
        """Store what the probe read from the job's video; False when the job does not exist."""
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="SET video_probe = :p",
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeValues={":p": _to_dynamo(probe.model_dump(mode="json"))},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, JobStatus) else value
