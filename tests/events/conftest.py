"""Events out, in process: moto AWS from template.yaml (the jobs table with its stream, the
delivery queues, the default event bus with an observing rule), the real notify and deliver
handlers driven by the local stack's own event source pumps, and a real https receiver on
loopback (trustme TLS) that verifies every delivery with ``standardwebhooks``."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local.outbox import InvocationFailed, QueuePump, StreamPump, mapping_of
from local.webhook_receiver import WebhookReceiver
from tests.conftest import FakeContext, load_handler
from videogen import context as videogen_context
from videogen.models import Job, JobError, StoredVideo, WebhookState
from videogen.repository import JobRepository
from videogen.settings import Settings, get_settings
from videogen.webhooks import Deliverer, WebhookSender

KEY_V1 = base64.b64encode(b"k" * 32).decode()
KEY_V2 = base64.b64encode(b"n" * 32).decode()
WEBHOOK_SECRET_NAME = "videogen/webhook-keys"
REGION = "us-east-1"
# Public addresses for a test name; the sender's backend is pointed at the receiver by the
# resolver only where a test says so.
PUBLIC = "93.184.215.14"


@dataclass
class World:
    settings: Settings
    repo: JobRepository
    receiver: WebhookReceiver
    queue_url: str
    queue_arn: str
    dlq_url: str
    observer_url: str
    stream_arn: str
    resolver: Callable[[str, int], list[str]]

    def sqs(self) -> Any:
        return boto3.client("sqs", region_name=REGION)

    def new_job(self, path: str = "/hooks", events: list[str] | None = None, **fields: Any) -> Job:
        job = Job.new(
            route="task",
            model="sora-2",
            prompt="a lighthouse at dusk",
            seconds=10,
            orientation="landscape",
            webhook=WebhookState(url=self.receiver.url(path), events=events or ["succeeded", "failed"]),
            **fields,
        )
        return self.repo.create(job)

    def succeed(self, job: Job) -> Job:
        self.repo.start(job.id, f"task_{job.id[:8]}")
        video = StoredVideo(bucket=self.settings.video_bucket, key=f"videos/{job.id}.mp4", bytes=1234)
        done = self.repo.succeed(job.id, video)
        assert done is not None
        return done

    def fail(self, job: Job) -> Job:
        done = self.repo.fail(job.id, JobError(code="provider_error", message="it broke"))
        assert done is not None
        return done

    # -- the event source mappings, run in this thread ---------------------------------------

    def stream_pump(self, invoke: Callable[[dict[str, Any]], Any] | None = None) -> StreamPump:
        streams = boto3.client("dynamodbstreams", region_name=REGION, config=Config(account_id_endpoint_mode="disabled"))
        return StreamPump(streams, self.sqs(), self.stream_arn, mapping_of("NotifyFunction", "DynamoDB"), invoke or notify)

    def queue_pump(self) -> QueuePump:
        return QueuePump(self.sqs(), self.queue_url, self.queue_arn, 5, deliver, name="deliver")

    def drain_queue(self, *, seconds: float = 20.0) -> None:
        """Deliver until the queue is empty (messages waiting out a delay included)."""
        pump = self.queue_pump()
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pump.step()
            attrs = self.sqs().get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
            if int(attrs["ApproximateNumberOfMessages"]) == 0 and int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0:
                return
        raise TimeoutError("the delivery queue did not drain")

    def pump_stream(self, invoke: Callable[[dict[str, Any]], Any] | None = None) -> StreamPump:
        pump = self.stream_pump(invoke)
        while pump.step():
            pass
        return pump

    def observed(self) -> list[dict[str, Any]]:
        """EventBridge events the observing rule (source videogen -> SQS) received."""
        found = []
        while True:
            answer = self.sqs().receive_message(QueueUrl=self.observer_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs().delete_message(QueueUrl=self.observer_url, ReceiptHandle=message["ReceiptHandle"])

    def dead_letters(self) -> list[dict[str, Any]]:
        answer = self.sqs().receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def _call(name: str) -> Callable[[dict[str, Any]], Any]:
    def invoke(event: dict[str, Any]) -> Any:
        try:
            return load_handler(name).lambda_handler(event, FakeContext(function_name=name))
        except Exception as exc:
            raise InvocationFailed(str(exc)) from exc

    return invoke


notify = _call("notify")
deliver = _call("deliver")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    # hooks.example.com: a public-looking name the tests' resolvers point at the receiver.
    server = WebhookReceiver(key=f"whsec_{KEY_V1}", hostnames=("127.0.0.1", "localhost", "hooks.example.com")).start()
    yield server
    server.stop()


@pytest.fixture
def world(aws: None, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.create_queue(QueueName="webhooks-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="webhooks")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    observer = sqs.create_queue(QueueName="observer")["QueueUrl"]
    observer_arn = sqs.get_queue_attributes(QueueUrl=observer, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="observe-videogen", EventPattern=json.dumps({"source": ["videogen"]}))
    events.put_targets(Rule="observe-videogen", Targets=[{"Id": "observer", "Arn": observer_arn}])
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=WEBHOOK_SECRET_NAME, SecretString=json.dumps({"active": "v1", "v1": KEY_V1})
    )
    table = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=os.environ["JOBS_TABLE"])["Table"]
    for name, value in {
        "EVENT_BUS_NAME": "default",
        "WEBHOOK_QUEUE_URL": queue,
        "WEBHOOK_DEAD_LETTER_QUEUE_URL": dlq,
        "WEBHOOK_SECRET": WEBHOOK_SECRET_NAME,
        "WEBHOOK_RETRY_SCHEDULE": "0,0,0",
        "WEBHOOK_TIMEOUT_SECONDS": "3",
        # The receiver lives on loopback: the local stack's development switch lets it through.
        "ALLOW_INSECURE_DOWNLOADS_FOR_LOCAL_STACK": "true",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    repo = JobRepository(settings.jobs_table)

    def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    load_handler("notify")._outbox = None
    load_handler("deliver")._deliverer = Deliverer(
        settings, repo, sender=WebhookSender(settings, resolver=resolver, ssl_context=receiver.client_context())
    )
    yield World(settings, repo, receiver, queue, queue_arn, dlq, observer, table["LatestStreamArn"], resolver)
    load_handler("notify")._outbox = None
    load_handler("deliver")._deliverer = None
    videogen_context.reset()
