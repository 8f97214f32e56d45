"""The pipeline in this process, on moto's in-process mock: used by the tests and the scripts.

:func:`use_env` sets the environment the handlers read (fake credentials, resource names,
provider hosts under ``*.provider.test``, zero retry delays); call it before importing the
layer. ``mock_aws(config=MOTO_CONFIG)`` gives an empty moto world;
:func:`create_aws_resources` makes the tables, bucket and secrets as template.yaml
defines them inside a ``mock_aws()`` context; :func:`invoke` runs a real handler on an event
(``events/*.json`` are the samples ``sam local invoke -e`` uses).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import botocore.loaders
import botocore.session
from moto.core.config import default_user_config

from local.template import ROOT, bucket_lifecycle, table_kwargs

ENV = {
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
    "WEBHOOK_SECRET": "videogen/webhook-keys-base",
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
# moto's own default would drop boto3's default session at every ``mock_aws()`` start, and
# with it the service models it has loaded (JSON files read again: about 0.1 s per client).
# Keeping the session keeps only those models: moto still starts each context empty.
MOTO_CONFIG: Any = {"core": {**default_user_config["core"], "reset_boto3_session": False}}
# Standard Webhooks keys are base64 (the receiver's key is "whsec_" + this).
WEBHOOK_KEYS = {"active": "v1", "v1": "dGVzdC13ZWJob29rLWtleS12MS0zMmJ5dGVzISEhIQ=="}
CALLBACK_KEYS = {"active": "v1", "v1": "test-callback-key-v1"}
API_KEY = "sk-test-provider-key"


def use_env() -> None:
    """Set :data:`ENV` (and drop what would reach a real AWS account); put the layer on the path.

    Also shares botocore's loader of service models between sessions: the handlers' clients
    are made anew for each test (and Powertools makes a session of its own per provider),
    and each new loader would read and parse the same JSON models again (about 0.1 s a
    client). A loaded model is read-only data, as one session already shares it between clients.
    """
    botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)  # type: ignore[attr-defined]
    os.environ.update(ENV)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "STATE_MACHINE_ARN"):
        os.environ.pop(key, None)
    layer = str(ROOT / "layers" / "videogen")
    if layer not in sys.path:
        sys.path.insert(0, layer)


def mp4_bytes(size: int = 4096) -> bytes:
    """Bytes that pass the MP4 check: an ``ftyp`` box, then filler in an ``mdat`` box."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    body_len = max(0, size - len(head) - 8)
    return head + (body_len + 8).to_bytes(4, "big") + b"mdat" + b"\x00" * body_len


def create_aws_resources() -> None:
    """The tables, bucket and secrets as template.yaml defines them (inside a moto context)."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(**table_kwargs(os.environ["JOBS_TABLE"]))
    dynamodb.create_table(**table_kwargs(os.environ["IDEMPOTENCY_TABLE"], "IdempotencyTable"))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=os.environ["VIDEO_BUCKET"])
    s3.put_bucket_lifecycle_configuration(Bucket=os.environ["VIDEO_BUCKET"], LifecycleConfiguration=bucket_lifecycle())
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name=os.environ["CALLBACK_SECRET"], SecretString=json.dumps(CALLBACK_KEYS))
    sm.create_secret(Name=os.environ["WEBHOOK_SECRET"], SecretString=json.dumps(WEBHOOK_KEYS))
    for name in ("TASK_API_KEY_SECRET", "OFFICIAL_API_KEY_SECRET", "LEGACY_API_KEY_SECRET"):
        sm.create_secret(Name=os.environ[name], SecretString=json.dumps({"api_key": API_KEY}))


@dataclass
class FakeContext:
    """The Lambda context a handler receives (only what the handlers and Powertools read)."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


_HANDLERS: dict[str, ModuleType] = {}


def load_handler(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` under a unique module name (once per process)."""
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
