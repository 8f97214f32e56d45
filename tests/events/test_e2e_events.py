"""Events out end to end: the local stack over real HTTP, a real https receiver on loopback.

The stack pumps the jobs table's stream into the notify function, runs the delivery queue into
the deliver function (the test profile's schedule: 1 s between attempts) and routes the bucket's
Object Created events through the template's rule to the probe function. The receiver trusts
nothing but the ``standardwebhooks`` signature made with the key ``GET /webhooks/secret`` gives.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from local.stack import StackProcess, launch
from local.webhook_receiver import WebhookReceiver


class Stack:
    def __init__(self, process: StackProcess, receiver: WebhookReceiver, api: httpx.Client) -> None:
        self.process, self.receiver, self.api = process, receiver, api

    @property
    def info(self) -> dict[str, Any]:
        return self.process.info

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.info["aws_endpoint"],
            region_name=self.info["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 2}),
        )

    def submit(self, path: str, **body: Any) -> dict[str, Any]:
        request = {"prompt": f"a lighthouse {path}", "route": "official", "seconds": 4, "size": "1280x720"}
        request.update(body)
        request.setdefault("webhook_url", self.receiver.url(path))
        answer = self.api.post("/videos", json=request)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    def wait_for(self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.api.get(f"/videos/{job_id}").json()
            if done(job):
                return dict(job)
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} not done: {json.dumps(job)[:1500]}\n--- log ---\n{self.process.log_tail()}")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    receiver = WebhookReceiver(directory=tmp_path_factory.mktemp("receiver")).start()
    log = Path(tmp_path_factory.mktemp("events-stack") / "stack.log")
    try:
        with (
            launch("test", log_path=log, timeout=240, args=("--trust-ca", str(receiver.ca_file))) as process,
            httpx.Client(base_url=process.info["api_url"], timeout=60) as api,
        ):
            key = api.get("/webhooks/secret")
            assert key.status_code == 200, key.text
            receiver.key = key.json()["key"]
            yield Stack(process, receiver, api)
    finally:
        receiver.stop()


def _webhook_settled(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed") and job["webhook"]["status"] != "pending"


def test_a_job_is_delivered_signed_put_on_eventbridge_and_probed(stack: Stack) -> None:
    # Given a rule on the stack's default bus that sends videogen events to a queue
    sqs, events = stack.aws("sqs"), stack.aws("events")
    queue = sqs.create_queue(QueueName="observe-videogen")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="observe-videogen", EventPattern=json.dumps({"source": ["videogen"]}))
    events.put_targets(Rule="observe-videogen", Targets=[{"Id": "q", "Arn": arn}])

    # When a job asking for started events runs to the end
    job = stack.submit("/hooks/happy", webhook_events=["started"], seconds=4, size="1280x720")
    done = stack.wait_for(job["id"], lambda j: _webhook_settled(j) and bool(j["video"] and j["video"]["poster_url"]))

    # Then the receiver verified video.started and video.succeeded with the library (the job's
    # webhook status may already read "delivered" after the first event: wait for the second)
    deadline = time.monotonic() + 30
    while len(stack.receiver.deliveries("/hooks/happy")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    got = stack.receiver.deliveries("/hooks/happy")
    assert [d.type for d in got] == ["video.started", "video.succeeded"]
    assert all(d.verified for d in got), [d.error for d in got]
    assert got[1].payload and got[1].payload["data"]["video"]["url"]
    assert done["webhook"]["status"] == "delivered" and done["webhook"]["attempts"] == 1

    # And EventBridge carried Started and Succeeded for the job
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            seen.append(json.loads(message["Body"]))
    mine = [e["detail-type"] for e in seen if e["detail"]["id"] == job["id"]]
    assert mine == ["Video Job Started", "Video Job Succeeded"]

    # And the probe's figures match the sample video (3 s, 320x180, H.264), with a poster
    video = done["video"]
    assert (video["duration_seconds"], video["width"], video["height"], video["codec"]) == (3.0, 320, 180, "avc1")
    assert "size 320x180 differs from the 1280x720 ordered" in video["warnings"]
    poster = httpx.get(video["poster_url"], timeout=10)
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"


def test_500_twice_then_200_is_delivered_with_3_attempts_and_one_webhook_id(stack: Stack) -> None:
    stack.receiver.script("/hooks/flaky", [500, 500])
    job = stack.submit("/hooks/flaky")
    done = stack.wait_for(job["id"], lambda j: _webhook_settled(j))
    got = stack.receiver.deliveries("/hooks/flaky")
    assert [d.answered for d in got] == [500, 500, 200]
    assert len({d.webhook_id for d in got}) == 1 and all(d.verified for d in got)
    assert (done["webhook"]["status"], done["webhook"]["attempts"], done["webhook"]["last_status"]) == ("delivered", 3, 200)


def test_410_stops_deliveries(stack: Stack) -> None:
    stack.receiver.script("/hooks/gone", [410])
    job = stack.submit("/hooks/gone", webhook_events=["started"])
    stack.wait_for(job["id"], lambda j: j["webhook"]["status"] == "stopped")
    stack.wait_for(job["id"], lambda j: j["status"] == "succeeded")
    time.sleep(2)  # the succeeded event had its chance to go out
    got = stack.receiver.deliveries("/hooks/gone")
    assert [(d.type, d.answered) for d in got] == [("video.started", 410)]
    assert stack.api.get(f"/videos/{job['id']}").json()["webhook"]["status"] == "stopped"


def test_a_receiver_that_is_down_fails_after_the_schedule_and_the_event_is_dead_lettered(stack: Stack) -> None:
    # Given a URL where nothing listens (connection refused)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    job = stack.submit("/hooks/down", webhook_url=f"https://127.0.0.1:{port}/hooks/down")

    # When the schedule (1 s x 7 in the test profile) is spent
    done = stack.wait_for(job["id"], lambda j: j["webhook"]["status"] == "failed", timeout=90)

    # Then the job shows failed after 8 attempts, and the event is in the dead-letter queue
    assert done["webhook"]["attempts"] == 8 and done["webhook"]["last_status"] is None
    sqs = stack.aws("sqs")
    dead = sqs.receive_message(QueueUrl=stack.info["queues"]["WebhookDeadLetterQueue"], MaxNumberOfMessages=10)
    bodies = [json.loads(m["Body"]) for m in dead.get("Messages", [])]
    assert [(b["job_id"], b["type"]) for b in bodies] == [(job["id"], "succeeded")]
