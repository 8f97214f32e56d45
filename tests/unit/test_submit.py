"""POST /videos on the task route: validation, provider call, job states."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import respx

from tests.conftest import API_KEY, CALLBACK_KEYS, invoke, load_event
from videogen.security import verify_callback_token

TASK_BASE = "https://task.provider.test"
GENERATE = f"{TASK_BASE}/api/v1/generateTask/sora-2"


def submit(body: dict | None = None, raw: str | None = None) -> dict:
    event = load_event("submit")
    if body is not None:
        event["body"] = json.dumps(body)
    if raw is not None:
        event["body"] = raw
    return invoke("submit", event)


def stored_jobs(ctx) -> list:
    jobs, _ = ctx.repo.list(limit=100)
    return jobs


@respx.mock
def test_submit_sample_event_starts_task_and_answers_202(ctx):
    # Given a provider that accepts the task
    route = respx.post(GENERATE).mock(
        return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "task-1"}})
    )

    # When the sample submit event is handled
    response = submit()

    # Then the job is in progress with the provider's id, and the provider got a callback URL
    assert response["statusCode"] == 202
    job = response["json"]
    assert job["status"] == "in_progress"
    assert job["provider_job_id"] == "task-1"
    assert response["headers"]["Location"] == f"/videos/{job['id']}"
    assert job["seconds"] == 10 and job["orientation"] == "landscape" and job["metadata"] == {"campaign": "autumn"}

    sent = json.loads(route.calls.last.request.content)
    assert route.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent["request_type"] == "callback"
    assert sent["provider"] == "official"
    assert sent["input"] == {
        "mode": "text-to-video",
        "prompt": job["prompt"],
        "duration": 10,
        "aspect_ratio": "landscape",
        "remove_watermark": True,
    }
    callback = urlparse(sent["callback_url"])
    assert callback.scheme == "https"
    assert callback.netloc == "abc123.execute-api.us-east-1.amazonaws.com"
    assert callback.path == f"/callbacks/{job['id']}"
    token = parse_qs(callback.query)["token"][0]
    assert verify_callback_token(job["id"], token, CALLBACK_KEYS)
    assert ctx.repo.get(job["id"]).status == "in_progress"


@respx.mock
def test_public_base_url_overrides_request_domain(aws, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://videos.example.com/")
    from videogen import context as videogen_context

    videogen_context.reset()
    route = respx.post(GENERATE).mock(return_value=httpx.Response(200, json={"code": 200, "data": {"taskId": "t"}}))
    assert submit()["statusCode"] == 202
    assert json.loads(route.calls.last.request.content)["callback_url"].startswith("https://videos.example.com/callbacks/")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 10001}, "prompt"),
        ({"prompt": "cat", "route": "fax"}, "route"),
        ({"prompt": "cat", "seconds": 8}, "seconds"),
        ({"prompt": "cat", "seconds": "eight"}, "seconds"),
        ({"prompt": "cat", "orientation": "diagonal"}, "orientation"),
        ({"prompt": "cat", "model": "no-such-model"}, "model"),
        ({"prompt": "cat", "image_url": "http://insecure.example/cat.png"}, "image_url"),
        ({"prompt": "cat", "metadata": {"blob": "x" * 5000}}, "metadata"),
        ({"prompt": "cat", "unknown": 1}, "unknown"),
    ],
)
@respx.mock
def test_bad_requests_get_400_naming_the_field_and_leave_nothing(ctx, body, field):
    route = respx.post(GENERATE).mock(return_value=httpx.Response(200, json={"code": 200, "data": {"taskId": "t"}}))
    response = submit({"route": "task", **body} if "route" not in body else body)
    assert response["statusCode"] == 400, response["body"]
    error = response["json"]["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == field
    assert not route.called
    assert stored_jobs(ctx) == []


def test_allowed_values_are_named(ctx):
    response = submit({"prompt": "cat", "route": "task", "seconds": 8})
    assert response["json"]["error"]["allowed"] == [10, 15]
    response = submit({"prompt": "cat", "route": "task", "model": "nope"})
    assert "sora-2" in response["json"]["error"]["allowed"]


def test_malformed_json_body(ctx):
    response = submit(raw="{not json")
    assert response["statusCode"] == 400
    assert response["json"]["error"]["code"] == "invalid_request"
    assert stored_jobs(ctx) == []


@respx.mock
def test_provider_4xx_fails_the_job_with_its_message(ctx):
    respx.post(GENERATE).mock(return_value=httpx.Response(400, json={"code": 400, "msg": "prompt flagged by moderation"}))
    response = submit()
    assert response["statusCode"] == 422
    error = response["json"]["error"]
    assert "prompt flagged by moderation" in error["message"]
    job = ctx.repo.get(error["job_id"])
    assert job.status == "failed"
    assert job.error.code == "content_violation"  # a moderation refusal is named so (issue 5)
    assert "prompt flagged" in job.error.message


@respx.mock
def test_provider_code_in_body_is_honoured(ctx):
    respx.post(GENERATE).mock(return_value=httpx.Response(200, json={"code": 401, "msg": "invalid api key"}))
    response = submit()
    assert response["statusCode"] == 422
    assert ctx.repo.get(response["json"]["error"]["job_id"]).status == "failed"


@respx.mock
def test_create_is_resent_only_when_the_provider_did_not_take_it(ctx):
    # 503 with Retry-After and 429 say "not processed": resending cannot start a second job.
    route = respx.post(GENERATE).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "0"}),
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"code": 200, "data": {"taskId": "task-after-retries"}}),
        ]
    )
    response = submit()
    assert response["statusCode"] == 202
    assert response["json"]["provider_job_id"] == "task-after-retries"
    assert route.call_count == 3


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="boom"),
        httpx.Response(502),
        httpx.Response(503),  # no Retry-After: a proxy may have passed the request on
        httpx.Response(504),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("connection dropped"),
    ],
    ids=["500", "502", "503-no-hint", "504", "read-timeout", "dropped"],
)
@respx.mock
def test_an_ambiguous_create_failure_is_never_resent_and_fails_loudly(ctx, failure):
    # Given a provider that may have started the task but whose answer was lost
    effect = failure if isinstance(failure, Exception) else None
    route = respx.post(GENERATE).mock(side_effect=effect, return_value=None if effect else failure)
    response = submit()
    # Then exactly one create was sent, and the job says a provider job may exist
    assert route.call_count == 1
    assert response["statusCode"] == 502
    error = response["json"]["error"]
    assert error["code"] == "submit_uncertain" and "may exist" in error["message"]
    job = ctx.repo.get(error["job_id"])
    assert job.status == "failed" and job.error.code == "submit_uncertain"
    assert "may exist" in job.error.message


@respx.mock
def test_provider_unreachable_job_ends_failed(ctx):
    respx.post(GENERATE).mock(side_effect=httpx.ConnectError("refused"))
    response = submit()
    assert response["statusCode"] == 502
    assert [j.status for j in stored_jobs(ctx)] == ["failed"]


@respx.mock
def test_provider_answer_without_task_id_fails_job(ctx):
    respx.post(GENERATE).mock(return_value=httpx.Response(200, json={"code": 200, "data": {}}))
    response = submit()
    assert response["statusCode"] == 502
    assert [j.status for j in stored_jobs(ctx)] == ["failed"]


def test_unexpected_error_answers_500_json_and_fails_the_job(ctx, monkeypatch):
    from videogen.providers.task import TaskProvider

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret detail that must not leak")

    monkeypatch.setattr(TaskProvider, "create", explode)
    response = submit()
    assert response["statusCode"] == 500
    assert response["json"]["error"]["code"] == "internal_error"
    assert "secret detail" not in response["body"]
    assert [(j.status, j.error.code) for j in stored_jobs(ctx)] == [("failed", "provider_error")]
