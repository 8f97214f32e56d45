"""Outbox -> EventBridge + webhook deliveries, in process (moto), over real https to loopback.

The jobs table's stream feeds the real notify handler through the local stack's stream pump
(filter criteria from template.yaml); the delivery queue feeds the real deliver handler; the
receiver verifies every request with ``standardwebhooks`` as a client would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from standardwebhooks import Webhook

from local.outbox import InvocationFailed
from tests.events.conftest import KEY_V1, KEY_V2, WEBHOOK_SECRET_NAME, World, notify
from videogen import events
from videogen.models import VideoProbe
from videogen.webhooks import Deliverer, WebhookSender, signing_keys


def test_a_succeeded_job_is_delivered_signed_and_put_on_eventbridge(world: World) -> None:
    # Given a job that asked for every event
    job = world.new_job("/hooks/all", events=["started", "progress", "succeeded"])

    # When it starts and succeeds, and the outbox and the delivery queue run
    world.succeed(job)
    world.pump_stream()
    world.drain_queue()

    # Then the receiver got video.started and video.succeeded, each verified by the library
    got = world.receiver.deliveries("/hooks/all")
    assert [d.type for d in got] == ["video.started", "video.succeeded"]
    assert all(d.verified for d in got), [d.error for d in got]
    assert len({d.webhook_id for d in got}) == 2
    succeeded = got[1].payload
    assert succeeded is not None
    assert succeeded["data"]["id"] == job.id and succeeded["data"]["status"] == "succeeded"
    assert succeeded["data"]["video"]["url"].startswith("https://")  # a fresh presigned URL
    assert succeeded["timestamp"].endswith("Z")

    # And the job shows the delivery
    hook = world.repo.get(job.id).public()["webhook"]
    assert hook["status"] == "delivered" and hook["attempts"] == 1 and hook["last_status"] == 200
    assert hook["url"] == world.receiver.url("/hooks/all") and hook["last_attempt_at"]

    # And EventBridge saw Started then Succeeded, with no presigned URL in the detail
    seen = world.observed()
    assert [e["detail-type"] for e in seen] == ["Video Job Started", "Video Job Succeeded"]
    assert all(e["source"] == "videogen" for e in seen)
    detail = seen[1]["detail"]
    assert detail["id"] == job.id and detail["status"] == "succeeded"
    assert "url" not in detail["video"] and "poster_url" not in detail["video"]


def test_the_signature_verifies_with_the_library_and_a_wrong_key_does_not(world: World) -> None:
    job = world.new_job("/hooks/sig")
    world.fail(job)
    world.pump_stream()
    world.drain_queue()

    (delivery,) = world.receiver.deliveries("/hooks/sig")
    assert delivery.type == "video.failed" and delivery.verified
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["webhook-signature"].startswith("v1,")
    Webhook(f"whsec_{KEY_V1}").verify(delivery.body, delivery.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(f"whsec_{KEY_V2}").verify(delivery.body, delivery.headers)


def test_500_twice_then_200_is_delivered_after_3_attempts_with_one_webhook_id(world: World) -> None:
    # Given a receiver that fails twice
    world.receiver.script("/hooks/flaky", [500, 500])
    job = world.new_job("/hooks/flaky")

    # When the job succeeds and the queue retries on its schedule
    world.succeed(job)
    world.pump_stream()
    world.drain_queue()

    # Then three attempts carried the same webhook-id, and the job shows delivered / 3
    got = world.receiver.deliveries("/hooks/flaky")
    assert [d.answered for d in got] == [500, 500, 200]
    assert len({d.webhook_id for d in got}) == 1
    assert all(d.verified for d in got)
    hook = world.repo.get(job.id).public()["webhook"]
    assert (hook["status"], hook["attempts"], hook["last_status"]) == ("delivered", 3, 200)
    assert world.dead_letters() == []


def test_a_receiver_that_is_always_down_fails_the_webhook_and_dead_letters_the_event(world: World) -> None:
    # Given a receiver that never answers 2xx (the schedule here is 0,0,0: four attempts)
    world.receiver.script("/hooks/down", [503] * 10)
    job = world.new_job("/hooks/down")

    world.succeed(job)
    world.pump_stream()
    world.drain_queue()

    got = world.receiver.deliveries("/hooks/down")
    assert len(got) == 4 and len({d.webhook_id for d in got}) == 1
    hook = world.repo.get(job.id).public()["webhook"]
    assert (hook["status"], hook["attempts"], hook["last_status"]) == ("failed", 4, 503)
    (dead,) = world.dead_letters()
    assert dead["job_id"] == job.id and dead["type"] == "succeeded" and dead["event_id"] == got[0].webhook_id


def test_410_gone_stops_every_further_delivery_for_the_job(world: World) -> None:
    # Given a receiver that answers 410 to the first event
    world.receiver.script("/hooks/gone", [410])
    job = world.new_job("/hooks/gone", events=["started", "succeeded"])

    world.succeed(job)
    world.pump_stream()
    world.drain_queue()

    # Then started got 410, and succeeded was never sent
    got = world.receiver.deliveries("/hooks/gone")
    assert [(d.type, d.answered) for d in got] == [("video.started", 410)]
    hook = world.repo.get(job.id).public()["webhook"]
    assert hook["status"] == "stopped" and hook["last_status"] == 410


def test_a_url_that_resolves_to_a_private_address_at_delivery_is_never_called(world: World) -> None:
    # Given strict settings (no local-stack switch) and DNS that now answers the receiver's
    # loopback address for the webhook's name
    strict = world.settings.model_copy(update={"allow_insecure_downloads_for_local_stack": False})
    sender = WebhookSender(strict, resolver=world.resolver, ssl_context=world.receiver.client_context())
    job = world.new_job("/hooks/private")
    world.succeed(job)
    world.pump_stream()
    (message,) = _queued(world)
    message["job"]["webhook"]["url"] = f"https://hooks.example.com:{world.receiver.port}/hooks/private"
    world.repo.table.update_item(
        Key={"id": job.id},
        UpdateExpression="SET webhook.#u = :u",
        ExpressionAttributeNames={"#u": "url"},
        ExpressionAttributeValues={":u": message["job"]["webhook"]["url"]},
    )

    # When the delivery is attempted
    result = Deliverer(strict, world.repo, sender=sender).deliver(message, attempt=1)

    # Then the receiver (which would answer 200) was never called; the attempt is retried later
    assert result.outcome == "retry" and result.status is None and "loopback" in (result.error or "")
    assert world.receiver.deliveries("/hooks/private") == []

    # And the same delivery with the local-stack switch reaches it (the setup is not the reason)
    lenient = WebhookSender(world.settings, resolver=world.resolver, ssl_context=world.receiver.client_context())
    assert Deliverer(world.settings, world.repo, sender=lenient).deliver(message, attempt=2).outcome == "delivered"


def test_notify_killed_after_sending_is_retried_and_the_event_is_delivered_again_with_the_same_id(world: World) -> None:
    # Given a notify function that dies after its sends, before its checkpoint (once)
    deaths = []

    def dies_once(event: dict[str, Any]) -> Any:
        answer = notify(event)
        if not deaths:
            deaths.append(len(event["Records"]))
            raise InvocationFailed("Sandbox.Timedout: killed after putting the event")
        return answer

    job = world.new_job("/hooks/replay")
    world.succeed(job)

    # When the stream pump runs (Lambda retries the batch from the checkpoint)
    pump = world.pump_stream(dies_once)
    world.drain_queue()

    # Then the event was sent twice with the same id: the receiver can drop the duplicate,
    # and nothing was lost
    assert deaths and pump.invocations >= 2
    got = world.receiver.deliveries("/hooks/replay")
    assert [d.type for d in got] == ["video.succeeded", "video.succeeded"]
    assert got[0].webhook_id == got[1].webhook_id == events.event_id(job.id, "succeeded")
    assert all(d.verified for d in got)
    # (the whole batch was retried: its Started event went out twice too)
    assert [e["detail-type"] for e in world.observed()] == ["Video Job Started", "Video Job Succeeded"] * 2


def test_status_writes_that_are_not_changes_never_reach_notify(world: World) -> None:
    # Given a finished job whose webhook bookkeeping and probe figures are written afterwards
    job = world.new_job("/hooks/quiet")
    world.succeed(job)
    pump = world.stream_pump()
    while pump.step():
        pass
    world.drain_queue()
    world.observed()
    before = pump.invocations

    # When more writes land on the finished job
    world.repo.record_webhook_attempt(
        job.id, event="succeeded", terminal_event=True, status="delivered", attempts=1, last_status=200
    )
    world.repo.record_probe(job.id, VideoProbe(duration_seconds=3.0, width=320, height=180, codec="avc1"))

    # Then the stream's filter criteria (from template.yaml) keep them from the function
    while pump.step():
        pass
    assert pump.invocations == before
    assert world.observed() == []


def test_progress_events_are_sent_at_most_once_per_interval(world: World) -> None:
    job = world.new_job("/hooks/progress", events=["progress", "succeeded"])
    world.repo.start(job.id, "task_1")
    for value in (10, 20, 30, 40):
        world.repo.record_progress(job.id, value)
    world.pump_stream()
    world.drain_queue()

    # All four progress writes land within one 10-second interval: one event
    got = world.receiver.deliveries("/hooks/progress")
    assert [d.type for d in got] == ["video.progress"]
    assert got[0].payload and got[0].payload["data"]["progress"] == 10


def test_rotation_signs_with_every_key_so_old_and_new_receivers_verify(world: World) -> None:
    import boto3

    boto3.client("secretsmanager").put_secret_value(
        SecretId=WEBHOOK_SECRET_NAME, SecretString=json.dumps({"active": "v2", "v1": KEY_V1, "v2": KEY_V2})
    )
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]
    keys = signing_keys(world.settings)
    assert keys == [f"whsec_{KEY_V2}", f"whsec_{KEY_V1}"]

    job = world.new_job("/hooks/rotate")
    world.fail(job)
    world.pump_stream()
    world.drain_queue()
    (delivery,) = world.receiver.deliveries("/hooks/rotate")
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    for key in keys:
        Webhook(key).verify(delivery.body, delivery.headers)


def _queued(world: World) -> list[dict[str, Any]]:
    answer = world.sqs().receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]
