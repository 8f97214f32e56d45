"""The events the tests feed the handlers have the shapes AWS really sends.

events/samples/ holds AWS's own samples: generated offline by `sam local generate-event`
(HTTP API payload 2.0, SQS, DynamoDB stream) or copied in shape
from AWS's documentation where sam has none (HTTP API with an IAM caller, EventBridge S3
"Object Created"). Every events/*.json is classified by its shape and must be a structural
subset of its kind's samples (same keys, same JSON types) holding every key AWS always sends;
workflow task inputs must match a Task state's Parameters in the state machine definition.
Then the HTTP handlers run on the generated samples themselves, with only the request's own
fields (route, path, body) replaced.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    DynamoDBStreamModel,
    S3EventNotificationEventBridgeModel,
    SqsModel,
)

from local.template import ROOT, template
from tests.conftest import invoke, load_event

EVENTS = ROOT / "events"
SAMPLES = EVENTS / "samples"

# Per kind: its samples, the parser model AWS's shape is also checked with, the keys AWS leaves
# out when empty (every other sample key is always sent), and maps whose keys are free.
KINDS: dict[str, dict[str, Any]] = {
    "http-api": {
        "samples": ["http-api-proxy.json", "http-api-proxy-iam.json"],
        "model": APIGatewayProxyEventV2Model,
        "optional": {
            "cookies",
            "queryStringParameters",
            "pathParameters",
            "stageVariables",
            "body",
            "authentication",
            "authorizer",
        },
        "free": {"headers", "queryStringParameters", "pathParameters", "stageVariables", "claims"},
    },
    "sqs": {
        "samples": ["sqs-receive-message.json"],
        "model": SqsModel,
        "optional": set(),
        "free": {"messageAttributes", "attributes"},
    },
    "dynamodb-stream": {
        "samples": ["dynamodb-update.json"],
        "model": DynamoDBStreamModel,
        "optional": {"OldImage", "NewImage"},
        "free": {"Keys", "NewImage", "OldImage"},
    },
    "eventbridge-s3": {
        "samples": ["eventbridge-s3-object-created.json"],
        "model": S3EventNotificationEventBridgeModel,
        "optional": {"version-id", "sequencer", "deletion-type", "source-storage-class"},
        "free": set(),
    },
}


def kind_of(event: dict[str, Any]) -> str | None:
    if event.get("version") == "2.0" and "routeKey" in event:
        return "http-api"
    records = event.get("Records") or [{}]
    if records[0].get("eventSource") == "aws:sqs":
        return "sqs"
    if records[0].get("eventSource") == "aws:dynamodb":
        return "dynamodb-stream"
    if "detail-type" in event:
        return "eventbridge-s3" if event.get("source") == "aws.s3" else None
    return None


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null"
    )


def shape_errors(ours: Any, theirs: list[Any], spec: dict[str, Any], path: str = "") -> list[str]:
    """Where ``ours`` differs in shape from every one of ``theirs`` (AWS samples)."""
    theirs = [t for t in theirs if t is not None]
    if not theirs:
        return []
    types = {json_type(t) for t in theirs}
    if json_type(ours) not in types and not (ours is None and path.rsplit(".", 1)[-1] in spec["optional"]):
        return [f"{path or '$'}: {json_type(ours)}, AWS sends {sorted(types)}"]
    errors: list[str] = []
    if isinstance(ours, dict):
        objects = [t for t in theirs if isinstance(t, dict)]
        if path.rsplit(".", 1)[-1] in spec["free"]:
            return errors
        known = set().union(*(t.keys() for t in objects))
        for key, value in ours.items():
            if key not in known:
                errors.append(f"{path}.{key}: AWS never sends this key")
                continue
            errors += shape_errors(value, [t.get(key) for t in objects], spec, f"{path}.{key}")
        always = set.intersection(*(set(t) for t in objects)) - spec["optional"]
        errors += [f"{path}.{key}: AWS always sends this key" for key in sorted(always - ours.keys())]
    elif isinstance(ours, list) and ours:
        items = [item for t in theirs if isinstance(t, list) for item in t]
        for index, item in enumerate(ours):
            errors += shape_errors(item, items, spec, f"{path}[{index}]")
    return errors


def task_parameters() -> list[set[str]]:
    """The key sets the state machine's Task states pass to their Lambda functions."""
    machine = template()["Resources"]["JobStateMachine"]["Properties"]
    definition = json.loads((ROOT / machine["DefinitionUri"]).read_text())
    found: list[set[str]] = []

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            if state.get("Type") == "Task" and "Parameters" in state:
                params = state["Parameters"].get("Payload", state["Parameters"])
                found.append({key.removesuffix(".$") for key in params})
            for branch in state.get("Branches", []):
                walk(branch["States"])
            if "Iterator" in state:
                walk(state["Iterator"]["States"])

    walk(definition["States"])
    return found


TEST_EVENTS = sorted(p.name for p in EVENTS.glob("*.json"))


def test_the_samples_are_what_aws_documents():
    # Every sample parses with Powertools' model of that AWS event (an independent description).
    for kind, spec in KINDS.items():
        for name in spec["samples"]:
            spec["model"].model_validate(sample(name)), (kind, name)


@pytest.mark.parametrize("name", TEST_EVENTS)
def test_every_test_event_has_the_shape_aws_sends(name):
    event = json.loads((EVENTS / name).read_text())
    kind = kind_of(event)
    if kind is None:
        # A workflow task input: exactly the keys some Task state of the definition passes.
        assert set(event) in task_parameters(), f"{name} is neither an AWS event nor a workflow task input"
        return
    spec = KINDS[kind]
    errors = shape_errors(event, [sample(s) for s in spec["samples"]], spec)
    assert not errors, f"{name} ({kind}): " + "; ".join(errors)
    spec["model"].model_validate(event)


def http_functions() -> list[tuple[str, str, str]]:
    """(function dir, method, path) for every HttpApi event of the template."""
    found = []
    for res in template()["Resources"].values():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                found.append((Path(res["Properties"]["CodeUri"]).name, props["Method"], props["Path"]))
    return sorted(found)


def on_sample(sample_name: str, method: str, route: str, path: str, body: str | None, query: dict[str, str] | None = None):
    """The generated sample with only the request's own fields replaced (everything else as AWS sends it)."""
    event = sample(sample_name)
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event["queryStringParameters"] = query
    if query is None:
        event.pop("queryStringParameters")
    params = {}
    if "{id}" in route:
        params = {"id": path.rsplit("/", 1)[-1]}
    event["pathParameters"] = params
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    else:
        # As the generated sample does: the body base64-encoded by API Gateway.
        event["body"] = base64.b64encode(body.encode()).decode()
        event["isBase64Encoded"] = True
        event["headers"]["content-type"] = "application/json"
    return event


@pytest.mark.parametrize("sample_name", KINDS["http-api"]["samples"])
@respx.mock
def test_the_http_handlers_answer_the_generated_samples(ctx, context, sample_name):
    # Every HTTP route of the template is served from the sample envelope: the handlers accept
    # cookies, stage variables, an authorizer block and a base64 body as AWS sends them.
    generate = respx.post("https://task.provider.test/api/v1/generateTask/sora-2").mock(
        return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "task-1"}})
    )
    # POST /videos first: the listing below then has one job to show
    served = sorted(http_functions(), key=lambda f: ((f[1], f[2]) != ("POST", "/videos"), f))
    assert served
    for function, method, route in served:
        if (method, route) == ("POST", "/videos"):
            body = load_event("submit")["body"]
            answer = invoke(function, on_sample(sample_name, method, route, route, body), context)
            assert answer["statusCode"] == 202, answer
            # The callback URL comes from the sample's requestContext.domainName.
            callback = json.loads(generate.calls.last.request.content)["callback_url"]
            assert callback.startswith(f"https://{sample(sample_name)['requestContext']['domainName']}/callbacks/")
        elif (method, route) == ("POST", "/callbacks/{id}"):
            answer = invoke(function, on_sample(sample_name, method, route, "/callbacks/nope", "{}", {"token": "x"}), context)
            assert answer["statusCode"] == 401, answer
        elif route == "/webhooks/secret":
            answer = invoke(function, on_sample(sample_name, method, route, route, None), context)
            assert answer["statusCode"] == 200 and answer["json"]["key"].startswith("whsec_"), answer
        elif route == "/models":
            answer = invoke(function, on_sample(sample_name, method, route, route, None), context)
            assert answer["statusCode"] == 200 and "routes" in answer["json"], answer
        elif "{id}" in route:
            path = "/videos/0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b"
            answer = invoke(function, on_sample(sample_name, method, route, path, None), context)
            assert answer["statusCode"] == 404, answer
        else:
            answer = invoke(function, on_sample(sample_name, method, route, route, None, {"limit": "5"}), context)
            assert answer["statusCode"] == 200, answer
            assert len(answer["json"]["jobs"]) == 1  # the job submitted above


def test_the_shape_check_catches_what_aws_would_not_send():
    spec = KINDS["http-api"]
    samples = [sample(s) for s in spec["samples"]]
    good = load_event("status-get")
    assert shape_errors(good, samples, spec) == []
    # A payload 1.0 key, a missing always-sent key, a wrong type
    bad = {**good, "httpMethod": "GET", "isBase64Encoded": "false"}
    del bad["rawQueryString"]
    errors = shape_errors(bad, samples, spec)
    assert any(".httpMethod: AWS never sends" in e for e in errors)
    assert any(".rawQueryString: AWS always sends" in e for e in errors)
    assert any(".isBase64Encoded: string" in e for e in errors)
