"""Shared fixtures: moto AWS built from template.yaml, the real handlers, sample events."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "videogen"))

TEST_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "JOBS_TABLE": "jobs",
    "VIDEO_BUCKET": "videos",
    "TASK_API_BASE_URL": "https://task.provider.test",
    "OFFICIAL_API_BASE_URL": "https://official.provider.test",
    "LEGACY_API_BASE_URL": "https://legacy.provider.test",
    "TASK_API_KEY_SECRET": "videogen/task-api-key",
    "OFFICIAL_API_KEY_SECRET": "videogen/official-api-key",
    "LEGACY_API_KEY_SECRET": "videogen/legacy-api-key",
    "CALLBACK_SECRET": "videogen/callback-keys",
    "IDEMPOTENCY_TABLE": "idempotency",
    # The test world's result files live on the providers' CDN hosts (cdn.provider.test).
    "DOWNLOAD_ALLOWED_HOSTS": "*.provider.test",
    "RETRY_BASE_DELAY_SECONDS": "0",
    "RETRY_MAX_DELAY_SECONDS": "0",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "VideoGen",
    "POWERTOOLS_SERVICE_NAME": "videogen",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
for _key, _value in TEST_ENV.items():
    os.environ[_key] = _value
for _key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "STATE_MACHINE_ARN"):
    os.environ.pop(_key, None)

from moto import mock_aws  # noqa: E402

from tests.template import bucket_lifecycle, table_kwargs  # noqa: E402
from videogen import context as videogen_context  # noqa: E402

# Every AWS call a handler makes is checked against its role from template.yaml.
pytest_plugins = ["tests.permissions.plugin"]

CALLBACK_KEYS = {"active": "v1", "v1": "test-callback-key-v1"}
API_KEY = "sk-test-provider-key"


def mp4_bytes(size: int = 4096) -> bytes:
    """Bytes that pass the MP4 check: an ``ftyp`` box, then filler in an ``mdat`` box."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    body_len = max(0, size - len(head) - 8)
    return head + (body_len + 8).to_bytes(4, "big") + b"mdat" + b"\x00" * body_len


def create_aws_resources() -> None:
    """The table, bucket and secrets as template.yaml defines them (inside a moto context)."""
    import boto3

    boto3.client("dynamodb").create_table(**table_kwargs(os.environ["JOBS_TABLE"]))
    boto3.client("dynamodb").create_table(**table_kwargs(os.environ["IDEMPOTENCY_TABLE"], "IdempotencyTable"))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=os.environ["VIDEO_BUCKET"])
    s3.put_bucket_lifecycle_configuration(Bucket=os.environ["VIDEO_BUCKET"], LifecycleConfiguration=bucket_lifecycle())
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name=os.environ["CALLBACK_SECRET"], SecretString=json.dumps(CALLBACK_KEYS))
    for name in ("TASK_API_KEY_SECRET", "OFFICIAL_API_KEY_SECRET", "LEGACY_API_KEY_SECRET"):
        sm.create_secret(Name=os.environ[name], SecretString=json.dumps({"api_key": API_KEY}))


@pytest.fixture
def aws() -> Iterator[None]:
    """moto AWS with the project's resources; caches reset around each test."""
    videogen_context.reset()
    with mock_aws():
        create_aws_resources()
        yield
    videogen_context.reset()


@pytest.fixture
def ctx(aws: None) -> videogen_context.Context:
    return videogen_context.get_context()


@dataclass
class FakeContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


_HANDLERS: dict[str, ModuleType] = {}


def load_handler(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` under a unique module name."""
    if name not in _HANDLERS:
        path = ROOT / "functions" / name / "app.py"
        spec = importlib.util.spec_from_file_location(f"functions_{name}_app", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _HANDLERS[name] = module
    return _HANDLERS[name]


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/`` (the same files ``sam local invoke -e`` uses)."""
    return json.loads((ROOT / "events" / f"{name}.json").read_text())


def invoke(function: str, event: dict[str, Any], context: FakeContext | None = None) -> dict[str, Any]:
    """Run a real handler on an event; parse a JSON body for convenience."""
    response = load_handler(function).lambda_handler(event, context or FakeContext())
    if isinstance(response, dict) and isinstance(response.get("body"), str):
        try:
            response["json"] = json.loads(response["body"])
        except ValueError:
            response["json"] = None
    return response
