"""Worst-case figures for AWS limits, computed from template.yaml and Settings.

Shared by tests/deploy/test_limits.py (which asserts them) and scripts/deploy_report.py (which
prints them for docs/deploy.md), so the documented figures are the tested ones.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from local.template import resource, template
from videogen.limits import LAMBDA_SYNC_PAYLOAD_BYTES
from videogen.models import MAX_METADATA_BYTES
from videogen.settings import Settings

ENVIRONMENT_LIMIT_BYTES = 4 * 1024
# Unzipped function code plus all its layers.
UNZIPPED_CODE_LIMIT_BYTES = 262_144_000
# API Gateway HTTP API: request line and headers together at most 10,240 bytes; the rest of the
# payload 2.0 envelope (requestContext with an IAM caller) is allowed 6 KB more.
ENVELOPE_ALLOWANCE_BYTES = 10_240 + 6_144
MAX_PROMPT_CHARS = 10_000
# The character whose JSON escape is longest: an astral code point is a surrogate pair,
# "\ud83c\udfac", 12 bytes in an ASCII JSON body, 14 once the Lambda response escapes it again.
WORST_CHAR = "\U0001f3ac"

# Worst-case physical names: CloudFormation names a resource "{stack}-{logical id}-{random}"
# truncated to the service's limit; stack names have at most 128 characters.
STACK_NAME_MAX = 128
LONGEST_PARTITION = "aws-iso-b"
LONGEST_REGION = "ap-southeast-5"
NAME_LIMITS = {
    "AWS::DynamoDB::Table": 255,
    "AWS::S3::Bucket": 63,
    "AWS::StepFunctions::StateMachine": 80,
    "AWS::SQS::Queue": 80,
    "AWS::SNS::Topic": 256,
    "AWS::Lambda::Function": 64,
    "AWS::Serverless::Function": 64,
    "AWS::Events::EventBus": 256,
    "AWS::SecretsManager::Secret": 512,
    "AWS::SSM::Parameter": 1011,
}


def worst_physical_name(logical_id: str) -> str:
    kind = resource(logical_id)["Type"]
    name = f"{'s' * STACK_NAME_MAX}-{logical_id}-{'R' * 13}"[: NAME_LIMITS.get(kind, 128)]
    arn = f"arn:{LONGEST_PARTITION}:{{}}:{LONGEST_REGION}:123456789012:{{}}"
    if kind == "AWS::SecretsManager::Secret":
        # Secrets get "{logical id}-{random}" and the ARN adds "-" and six more characters.
        return arn.format("secretsmanager", f"secret:{logical_id}-{'R' * 12}-RRRRRR")
    if kind in ("AWS::StepFunctions::StateMachine", "AWS::Serverless::StateMachine"):
        return arn.format("states", f"stateMachine:{logical_id}-{'R' * 12}")
    if kind == "AWS::SNS::Topic":
        return arn.format("sns", name)
    if kind == "AWS::SQS::Queue":
        return f"https://sqs.{LONGEST_REGION}.amazonaws.com/123456789012/{name}"
    return name


class UnboundedParameter(ValueError):
    pass


def worst_parameter_value(name: str) -> str:
    spec = template()["Parameters"][name]
    if "AllowedValues" in spec:
        return max((str(v) for v in spec["AllowedValues"]), key=len)
    if spec["Type"] == "Number":
        return str(spec.get("MaxValue", 10**10 - 1))
    if "MaxLength" not in spec:
        raise UnboundedParameter(f"parameter {name} reaches a function environment but has no MaxLength")
    return "x" * int(spec["MaxLength"])


def function_environment(logical_id: str) -> dict[str, Any]:
    merged = dict(template().get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(resource(logical_id)["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def resolve_worst(value: Any) -> str:
    """A template environment value at its longest."""
    if isinstance(value, str | int | float):
        return str(value)
    if "Ref" in value:
        name = value["Ref"]
        return worst_parameter_value(name) if name in template().get("Parameters", {}) else worst_physical_name(name)
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        base = worst_physical_name(logical_id)
        return base if attribute in ("Arn", "Name", "TopicArn", "QueueUrl") else f"{base}/{attribute}"
    if "Fn::Sub" in value:
        return str(value["Fn::Sub"]) + "x" * 256
    if "Fn::If" in value:  # either branch may be chosen: the longer one
        _condition, when_true, when_false = value["Fn::If"]
        return max(resolve_worst(when_true), resolve_worst(when_false), key=len)
    raise ValueError(f"cannot bound environment value {value!r}")


def resolve_default(value: Any) -> str:
    """A template environment value with parameter defaults (what Settings sees by default)."""
    if isinstance(value, str | int | float):
        return str(value)
    if "Ref" in value and value["Ref"] in template().get("Parameters", {}):
        return str(template()["Parameters"][value["Ref"]].get("Default", ""))
    return "placeholder"


def environment_bytes(logical_id: str) -> int:
    """Bytes of ``logical_id``'s environment with every value at its longest (JSON, as Lambda stores it)."""
    env = {key: resolve_worst(value) for key, value in function_environment(logical_id).items()}
    return len(json.dumps(env, separators=(",", ":")).encode())


def functions() -> list[str]:
    return sorted(k for k, v in template()["Resources"].items() if v["Type"] == "AWS::Serverless::Function")


def timeout_of(logical_id: str) -> int:
    return int(resource(logical_id)["Properties"].get("Timeout", template()["Globals"]["Function"].get("Timeout", 3)))


def function_settings(logical_id: str) -> Settings:
    env = {key.upper(): resolve_default(value) for key, value in function_environment(logical_id).items()}
    return Settings.from_env({k: v for k, v in env.items() if k.lower() in Settings.model_fields})


def worst_provider_seconds(settings: Settings) -> float:
    """One provider call at its worst: every attempt hits the connect and read timeouts, every
    backoff its cap (send_with_retries: attempts, then capped full-jitter backoffs)."""
    attempts = settings.submit_max_attempts
    per_attempt = settings.connect_timeout_seconds + settings.read_timeout_seconds
    return attempts * per_attempt + (attempts - 1) * settings.retry_max_delay_seconds


def largest_submit_body(settings: Settings) -> str:
    """The largest POST /videos body submit accepts: the biggest inline image, the longest prompt
    in its longest escape, metadata at its cap, every other field at its longest."""
    image = base64.b64encode(b"\0" * settings.max_inline_image_bytes).decode()
    body = {
        "prompt": WORST_CHAR * MAX_PROMPT_CHARS,
        "route": "official",
        "model": "m" * 100,
        "seconds": 15,
        "size": "1792x1024",
        "image_base64": "data:image/webp;base64," + image,
        "metadata": {"k": "v" * (MAX_METADATA_BYTES - 10)},
    }
    return json.dumps(body)  # ensure_ascii: the prompt as 12-byte escapes


def submit_event_bytes(settings: Settings, sample_event: dict[str, Any]) -> dict[str, int]:
    """The largest submit's event size, as sent (JSON text) and base64-encoded by API Gateway."""
    body = largest_submit_body(settings)
    figures = {"body": len(body)}
    for label, encoded, as_base64 in (("event", body, False), ("event_base64", base64.b64encode(body.encode()).decode(), True)):
        event = {**sample_event, "body": encoded, "isBase64Encoded": as_base64}
        figures[label] = len(json.dumps(event).encode()) + ENVELOPE_ALLOWANCE_BYTES
    return figures


def max_inline_image_bytes_that_fit(sample_event: dict[str, Any]) -> int:
    """The largest inline image whose largest submit still fits when API Gateway base64-encodes it."""
    rest = submit_event_bytes(Settings(max_inline_image_bytes=0), sample_event)["event_base64"]
    # Each image byte costs 4/3 (base64 in JSON) x 4/3 (base64 by API Gateway) = 16/9 bytes.
    return math.floor((LAMBDA_SYNC_PAYLOAD_BYTES - rest) * 9 / 16)
