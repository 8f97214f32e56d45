"""POST /videos with Idempotency-Key: one job and one provider call per (caller, key, body)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
import respx

from local.dynamodb import atomic_dynamodb_requests
from tests.conftest import invoke, load_event

GENERATE = "https://task.provider.test/api/v1/generateTask/sora-2"
BODY = {"prompt": "a lighthouse in a storm", "route": "task", "seconds": 10, "orientation": "landscape"}


def submit(body: dict[str, Any] | str = BODY, *, key: str | None = "key-1", caller: str | None = None) -> dict[str, Any]:
    event = load_event("submit")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if key is not None:
        event["headers"]["idempotency-key"] = key
    if caller is not None:
        event["requestContext"]["authorizer"] = {"iam": {"userArn": caller}}
    return invoke("submit", event)


def accept(task_ids: list[str] | None = None) -> respx.Route:
    ids = iter(task_ids or [f"task-{n}" for n in range(1, 50)])
    return respx.post(GENERATE).mock(
        side_effect=lambda request: httpx.Response(200, json={"code": 200, "data": {"taskId": next(ids)}})
    )


def jobs(ctx) -> list:
    return ctx.repo.list(limit=100)[0]


def idempotency_records() -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName="idempotency")["Items"]


@respx.mock
def test_same_key_and_body_answers_the_first_answer_once(ctx):
    # Given a provider that accepts tasks
    generate = accept()

    # When the same request is sent twice with the same key (a client retry)
    first = submit()
    second = submit()

    # Then both answers are the first answer: one job, one provider task
    assert first["statusCode"] == second["statusCode"] == 202
    assert second["json"] == first["json"]
    assert second["headers"]["Location"] == first["headers"]["Location"]
    assert second["headers"]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first["headers"]
    assert generate.call_count == 1
    assert [job.id for job in jobs(ctx)] == [first["json"]["id"]]
    # And the record is kept in the template's table, with a TTL in the future
    (record,) = idempotency_records()
    assert record["status"]["S"] == "COMPLETED"
    assert int(record["expiration"]["N"]) > 0


@respx.mock
def test_same_key_with_reordered_json_is_the_same_request(ctx):
    generate = accept()
    first = submit('{"prompt": "a lighthouse in a storm", "route": "task", "seconds": 10, "orientation": "landscape"}')
    again = submit('{ "orientation":"landscape","seconds":10,"route":"task","prompt":"a lighthouse in a storm" }')
    assert again["json"]["id"] == first["json"]["id"]
    assert generate.call_count == 1


@respx.mock
def test_same_key_different_body_is_422_and_creates_nothing(ctx):
    generate = accept()
    first = submit()

    # When the key is reused for another prompt
    reused = submit({**BODY, "prompt": "a different video"})

    # Then a clear 422 names the header, and no second job or task exists
    assert reused["statusCode"] == 422
    error = reused["json"]["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["field"] == "Idempotency-Key"
    assert "different request body" in error["message"]
    assert generate.call_count == 1
    assert [job.id for job in jobs(ctx)] == [first["json"]["id"]]


@respx.mock
def test_different_keys_or_no_key_create_separate_jobs(ctx):
    generate = accept()
    a = submit(key="key-a")
    b = submit(key="key-b")
    c = submit(key=None)
    d = submit(key=None)
    assert len({a["json"]["id"], b["json"]["id"], c["json"]["id"], d["json"]["id"]}) == 4
    assert generate.call_count == 4
    assert len(idempotency_records()) == 2  # requests without a key leave no record


@respx.mock
def test_the_same_key_from_two_callers_does_not_collide(ctx):
    generate = accept()
    alice = submit(caller="arn:aws:iam::123456789012:user/alice")
    bob = submit(caller="arn:aws:iam::123456789012:user/bob")
    assert alice["json"]["id"] != bob["json"]["id"]
    assert generate.call_count == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tinside", "naïve"])
@respx.mock
def test_malformed_key_is_400_and_creates_nothing(ctx, key):
    generate = accept()
    response = submit(key=key)
    assert response["statusCode"] == 400
    assert response["json"]["error"]["field"] == "Idempotency-Key"
    assert not generate.called
    assert jobs(ctx) == [] and idempotency_records() == []


@respx.mock
def test_a_failed_attempt_is_not_remembered_so_the_retry_runs(ctx):
    # Given a provider that is unreachable for the first request (nothing sent), then accepts
    generate = respx.post(GENERATE).mock(
        side_effect=[httpx.ConnectError("refused")] * 3 + [httpx.Response(200, json={"code": 200, "data": {"taskId": "task-ok"}})]
    )

    # When the client retries with the same key after a 502
    failed = submit()
    retried = submit()

    # Then the retry really ran (no cached error) and produced a started job
    assert failed["statusCode"] == 502
    assert retried["statusCode"] == 202 and retried["json"]["provider_job_id"] == "task-ok"
    assert generate.call_count == 4
    assert {job.status for job in jobs(ctx)} == {"failed", "in_progress"}


@respx.mock
def test_a_concurrent_duplicate_gets_409_while_the_first_runs(ctx):
    # Given the provider call of the first request blocks until released
    entered, release = threading.Event(), threading.Event()

    def slow_accept(request: httpx.Request) -> httpx.Response:
        entered.set()
        assert release.wait(10)
        return httpx.Response(200, json={"code": 200, "data": {"taskId": "task-slow"}})

    generate = respx.post(GENERATE).mock(side_effect=slow_accept)

    with atomic_dynamodb_requests(), ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(submit)
        assert entered.wait(10)
        # When the duplicate arrives while the first is in flight
        duplicate = submit()
        release.set()
        first_answer = first.result(10)

    # Then the duplicate is told to retry (409), the first completes, one provider task exists
    assert duplicate["statusCode"] == 409
    assert duplicate["json"]["error"]["code"] == "idempotency_in_progress"
    assert first_answer["statusCode"] == 202
    assert generate.call_count == 1
    # And a later retry gets the first answer
    assert submit()["json"]["id"] == first_answer["json"]["id"]


@respx.mock
def test_without_an_idempotency_table_the_key_is_ignored(aws, monkeypatch):
    from videogen import context as videogen_context

    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    videogen_context.reset()
    generate = accept()
    assert submit()["statusCode"] == 202
    assert submit()["statusCode"] == 202
    assert generate.call_count == 2
