"""The webhook contract at submit and GET /webhooks/secret: 400s naming the field, nothing written."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from standardwebhooks import Webhook

from tests.conftest import invoke, load_event
from videogen.errors import InvalidRequest
from videogen.models import CreateVideoRequest
from videogen.settings import Settings
from videogen.webhooks import check_webhook_url, requested_webhook, signed_headers

PUBLIC = ["93.184.215.14"]


def _submit(body: dict[str, Any]) -> dict[str, Any]:
    event = load_event("submit")
    event["body"] = json.dumps(body)
    event["isBase64Encoded"] = False
    return invoke("submit", event)


def _jobs() -> int:
    return int(boto3.client("dynamodb").scan(TableName="jobs", Select="COUNT")["Count"])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/x", "https"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com/" + "a" * 2100, "2048"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.8/x", "global"),
    ],
)
def test_a_bad_webhook_url_is_a_400_naming_the_field_and_writes_nothing(aws: None, url: str, words: str) -> None:
    answer = _submit({"prompt": "a cat", "route": "task", "webhook_url": url})
    assert answer["statusCode"] == 400, answer["body"]
    error = answer["json"]["error"]
    assert error["field"] == "webhook_url" and words in error["message"]
    assert _jobs() == 0


def test_an_unknown_webhook_event_is_a_400_listing_the_allowed_ones(aws: None) -> None:
    answer = _submit({"prompt": "a cat", "webhook_url": "https://hooks.example.com/x", "webhook_events": ["finished"]})
    assert answer["statusCode"] == 400
    error = answer["json"]["error"]
    assert error["field"].startswith("webhook_events")
    for name in ("started", "progress", "succeeded", "failed"):
        assert name in error["allowed"]
    assert _jobs() == 0


def test_a_name_resolving_to_a_private_address_is_refused_at_submit() -> None:
    settings = Settings()
    with pytest.raises(InvalidRequest) as caught:
        check_webhook_url("https://hooks.example.com/x", settings, resolver=lambda host, port: ["192.168.1.20"])
    assert caught.value.details["field"] == "webhook_url" and "192.168.1.20" in caught.value.message
    check_webhook_url("https://hooks.example.com/x", settings, resolver=lambda host, port: PUBLIC)


def test_succeeded_and_failed_are_always_asked_for_in_the_contract_order() -> None:
    request = CreateVideoRequest(prompt="x", webhook_url="https://hooks.example.com/x", webhook_events=["progress"])
    hook = requested_webhook(request, Settings(), resolver=lambda host, port: PUBLIC)
    assert hook is not None
    assert hook.model_dump() == {
        "url": "https://hooks.example.com/x",
        "events": ["progress", "succeeded", "failed"],
        "status": "pending",
        "attempts": 0,
        "last_status": None,
        "last_attempt_at": None,
    }
    default = requested_webhook(
        CreateVideoRequest(prompt="x", webhook_url="https://h.example.com/"), Settings(), resolver=lambda h, p: PUBLIC
    )
    assert default is not None and default.events == ["succeeded", "failed"]
    assert requested_webhook(CreateVideoRequest(prompt="x"), Settings()) is None


def test_webhooks_secret_route_answers_the_active_key(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from videogen import context as videogen_context

    key = base64.b64encode(b"s" * 32).decode()
    boto3.client("secretsmanager").create_secret(Name="videogen/webhooks", SecretString=json.dumps({"active": "v1", "v1": key}))
    monkeypatch.setenv("WEBHOOK_SECRET", "videogen/webhooks")
    videogen_context.reset()
    event = load_event("status-get")
    event.update(rawPath="/webhooks/secret", routeKey="GET /webhooks/secret", pathParameters=None)
    event["requestContext"]["http"]["path"] = "/webhooks/secret"
    event["requestContext"]["routeKey"] = "GET /webhooks/secret"
    answer = invoke("webhooks", event)
    assert answer["statusCode"] == 200
    assert answer["json"] == {"key": f"whsec_{key}"}
    assert answer["headers"]["Cache-Control"] == "no-store"
    # The key a receiver gets verifies what the pipeline signs
    body = '{"type":"video.failed"}'
    Webhook(answer["json"]["key"]).verify(body, signed_headers([answer["json"]["key"]], "msg_1", body))
