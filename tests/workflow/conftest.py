"""Fixtures for the workflow tests: the real ASL in moto, the real handlers behind its tasks.

Waits come from the execution input; the pipeline's settings make them zero here (first
wait, fallback wait, poll interval, poll cap), so every test runs in about a second. ASL ``Retry``
sleeps are recorded instead of slept (``sfn.retry_sleeps``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from local import stepfunctions as harness
from tests.conftest import create_aws_resources, load_event, mp4_bytes
from videogen import context as videogen_context

OFFICIAL = "https://official.provider.test"
TASK = "https://task.provider.test"
CDN = "https://cdn.provider.test"

# Expected generation times of zero: the first wait (and the task route's fallback wait,
# which adds FALLBACK_WAIT_SECONDS to it) is then zero too.
ZERO_WAIT_CATALOG = {
    "routes": {
        "task": {"models": {"sora-2": {"expected_generation_seconds": 0}}},
        "official": {"models": {"sora-2": {"expected_generation_seconds": 0}, "sora-2-pro": {"expected_generation_seconds": 0}}},
    }
}


@dataclass
class Workflow:
    """The running state machine and what its tasks did."""

    arn: str
    router: harness.LambdaRouter
    retry_sleeps: list[float] = field(default_factory=list)

    def execution(self, name: str) -> str:
        return harness.execution_arn(self.arn, name)

    def wait(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return harness.wait_for(self.execution(name), timeout=timeout)

    def history(self, name: str) -> list[dict[str, Any]]:
        return harness.history(self.execution(name))

    def start(self, name: str, **payload: Any) -> str:
        """Start an execution by hand (the pipeline normally does it)."""
        defaults = {"mode": "run", "first_wait_seconds": 0, "poll_interval_seconds": 0, "deadline_seconds": 3600}
        boto3.client("stepfunctions").start_execution(
            stateMachineArn=self.arn, name=name, input=json.dumps({**defaults, **payload})
        )
        return self.execution(name)

    def executions(self) -> list[str]:
        answer = boto3.client("stepfunctions").list_executions(stateMachineArn=self.arn)
        return sorted(e["name"] for e in answer["executions"])


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workflow]:
    """moto AWS (with Step Functions executing) + the job state machine + zero waits."""
    for name, value in {
        "OFFICIAL_FIRST_WAIT_SECONDS": "0",
        "FALLBACK_WAIT_SECONDS": "0",
        "POLL_INTERVAL_SECONDS": "0",
        # Waits the poll task estimates (progress rate, growing intervals) are capped at zero too.
        "POLL_MAX_INTERVAL_SECONDS": "0",
        "CATALOG_JSON": json.dumps(ZERO_WAIT_CATALOG),
    }.items():
        monkeypatch.setenv(name, value)
    videogen_context.reset()
    router = harness.LambdaRouter(harness.task_functions())
    router.warm_up()
    workflow: Workflow | None = None
    with mock_aws(config=harness.MOTO_CONFIG), router.installed():
        create_aws_resources()
        arn = harness.create_state_machine(router.functions)
        monkeypatch.setenv("STATE_MACHINE_ARN", arn)
        videogen_context.reset()
        workflow = Workflow(arn, router)
        with harness.instant_retries(workflow.retry_sleeps):
            try:
                yield workflow
            finally:
                # Never leave moto while an execution thread still runs against it.
                harness.wait_all(arn)
    videogen_context.reset()


@pytest.fixture
def ctx(sfn: Workflow) -> videogen_context.Context:
    return videogen_context.get_context()


@pytest.fixture
def video() -> bytes:
    return mp4_bytes(64 * 1024)


def stored_objects() -> list[dict[str, Any]]:
    answer = boto3.client("s3").list_objects_v2(Bucket="videos")
    return list(answer.get("Contents", []))


def open_uploads() -> list[dict[str, Any]]:
    return list(boto3.client("s3").list_multipart_uploads(Bucket="videos").get("Uploads", []))


def submit(body: dict[str, Any]) -> dict[str, Any]:
    """POST /videos through the real submit handler, with the sample event's envelope."""
    event = load_event("submit")
    event["body"] = json.dumps(body)
    return harness.invoke("submit", event)


def multipart_fields(request: httpx.Request) -> dict[str, bytes]:
    """The fields of a multipart/form-data request, by name."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser().parsebytes(head + request.content)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in message.get_payload()}
