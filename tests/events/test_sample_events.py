"""The sample events in events/ (what ``sam local invoke -e`` uses) against the real handlers."""

from __future__ import annotations

import json

from local.outbox import mapping_of, matches
from tests.conftest import FakeContext, load_event, load_handler
from tests.events.conftest import World
from videogen import events
from videogen.models import Job, WebhookState


def test_the_notify_sample_passes_the_template_filter_and_puts_the_event_and_queues_the_delivery(world: World) -> None:
    sample = load_event("notify-job-succeeded")
    (record,) = sample["Records"]
    job_id = record["dynamodb"]["Keys"]["id"]["S"]

    # The template's filter criteria let the record through
    assert matches(mapping_of("NotifyFunction", "DynamoDB").filters, record)

    # The handler answers no batch item failures, puts one event and queues one delivery
    answer = load_handler("notify").lambda_handler(sample, FakeContext(function_name="notify"))
    assert answer == {"batchItemFailures": []}
    (seen,) = world.observed()
    assert seen["detail-type"] == "Video Job Succeeded" and seen["detail"]["id"] == job_id
    queued = world.sqs().receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["event_id"] for m in queued] == [events.event_id(job_id, "succeeded")]


def test_the_deliver_sample_is_delivered_to_the_job_webhook(world: World) -> None:
    sample = load_event("deliver-webhook")
    message = json.loads(sample["Records"][0]["body"])
    job = Job.model_validate(message["job"])
    job.webhook = WebhookState(url=world.receiver.url("/hooks/sample"), events=["started", "succeeded", "failed"])
    world.repo.create(job)

    answer = load_handler("deliver").lambda_handler(sample, FakeContext(function_name="deliver"))

    assert answer == {"batchItemFailures": []}
    (delivery,) = world.receiver.deliveries("/hooks/sample")
    assert delivery.verified and delivery.type == "video.succeeded" and delivery.webhook_id == message["event_id"]
    assert world.repo.get(job.id).public()["webhook"]["status"] == "delivered"
