"""State rules of the repository, callback tokens, task payload parsing, retry policy."""

from __future__ import annotations

import json

import httpx
import pytest

from videogen.errors import InvalidRequest, ProviderUnavailable
from videogen.http import backoff_delay, retry_after_seconds, send_with_retries
from videogen.models import Job, JobError, JobStatus, StoredVideo
from videogen.providers.task import outcome_of, parse_task_payload, result_urls
from videogen.security import make_callback_token, verify_callback_token
from videogen.settings import Settings

KEYS = {"active": "v2", "v2": "new", "v1": "old"}


def new_job(ctx) -> Job:
    job = Job.new(route="task", model="sora-2", prompt="p", seconds=10)
    ctx.repo.create(job)
    return job


def test_terminal_states_never_change(ctx):
    job = new_job(ctx)
    assert ctx.repo.start(job.id, "t1") is not None
    assert ctx.repo.fail(job.id, JobError(code="provider_error", message="x")) is not None
    assert ctx.repo.succeed(job.id, StoredVideo(bucket="b", key="k", bytes=1)) is None
    assert ctx.repo.fail(job.id, JobError(code="other", message="y")) is None
    assert ctx.repo.record_progress(job.id, 50) is None
    stored = ctx.repo.get(job.id)
    assert stored.status == JobStatus.FAILED and stored.error.code == "provider_error"


def test_start_only_from_queued(ctx):
    job = new_job(ctx)
    assert ctx.repo.start(job.id, "t1").provider_job_id == "t1"
    assert ctx.repo.start(job.id, "t2") is None
    assert ctx.repo.get(job.id).provider_job_id == "t1"


def test_create_never_overwrites(ctx):
    job = new_job(ctx)
    with pytest.raises(Exception, match="ConditionalCheckFailed"):
        ctx.repo.create(job)


def test_store_lease_is_exclusive_until_released(ctx):
    job = new_job(ctx)
    assert ctx.repo.claim_store(job.id, 60) is False  # queued jobs are not stored
    ctx.repo.start(job.id, "t1")
    assert ctx.repo.claim_store(job.id, 60) is True
    assert ctx.repo.claim_store(job.id, 60) is False
    ctx.repo.release_store(job.id)
    assert ctx.repo.claim_store(job.id, 60) is True


def test_expired_lease_can_be_taken_over(ctx):
    job = new_job(ctx)
    ctx.repo.start(job.id, "t1")
    assert ctx.repo.claim_store(job.id, -1) is True
    assert ctx.repo.claim_store(job.id, 60) is True


def test_progress_is_clamped(ctx):
    job = new_job(ctx)
    ctx.repo.start(job.id, "t1")
    assert ctx.repo.record_progress(job.id, 250).progress == 100


def test_ttl_is_set(ctx):
    job = new_job(ctx)
    item = ctx.repo.table.get_item(Key={"id": job.id})["Item"]
    assert int(item["expires_at"]) > 0


def test_tokens_verify_under_any_held_key_version():
    token = make_callback_token("job-1", KEYS)
    assert token.startswith("v2.")
    assert verify_callback_token("job-1", token, KEYS)
    assert not verify_callback_token("job-2", token, KEYS)
    old = make_callback_token("job-1", {"active": "v1", "v1": "old"})
    assert verify_callback_token("job-1", old, KEYS)
    assert not verify_callback_token("job-1", old, {"active": "v2", "v2": "new"})
    for bad in (None, "", "v2", "v2.", "active.x", "v2." + "A" * 300, "v2.ünïcode"):
        assert not verify_callback_token("job-1", bad, KEYS)


def task_body(**data) -> dict:
    return {"code": 200, "message": "success", "data": {"taskId": "t1", "state": "success", **data}}


def test_result_json_is_parsed_a_second_time():
    task = parse_task_payload(task_body(resultJson=json.dumps({"resultUrls": ["https://a/x.mp4", "https://a/y.mp4"]})))
    assert result_urls(task) == ["https://a/x.mp4", "https://a/y.mp4"]
    assert outcome_of(task).result_url == "https://a/x.mp4"


@pytest.mark.parametrize(
    "result_json",
    [None, "", "not json", json.dumps([]), json.dumps({}), json.dumps({"resultUrls": []}), json.dumps({"resultUrls": [1]})],
)
def test_bad_result_json_is_rejected(result_json):
    task = parse_task_payload(task_body(resultJson=result_json))
    with pytest.raises(InvalidRequest):
        outcome_of(task)


def test_result_json_must_be_a_string():
    with pytest.raises(InvalidRequest):
        parse_task_payload(task_body(resultJson={"resultUrls": ["https://a/x.mp4"]}))


def test_pending_and_processing_are_not_final():
    assert outcome_of(parse_task_payload(task_body(state="pending"))).phase == "pending"
    assert outcome_of(parse_task_payload(task_body(state="processing"))).phase == "running"


def test_retry_after_forms():
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_seconds(httpx.Response(429)) is None


def test_backoff_is_capped_and_honours_hints():
    settings = Settings(retry_base_delay_seconds=1, retry_max_delay_seconds=4)
    assert all(0 <= backoff_delay(n, settings) <= 4 for n in range(10))
    assert backoff_delay(0, settings, hint=2.5) == 2.5
    assert backoff_delay(0, settings, hint=100) == 4


def test_send_with_retries_sleeps_between_attempts_and_gives_up():
    settings = Settings(submit_max_attempts=3, retry_base_delay_seconds=0.1, retry_max_delay_seconds=1)
    sleeps: list[float] = []
    answers = iter([httpx.Response(429, headers={"Retry-After": "0.5"}), httpx.Response(502), httpx.Response(503)])
    with pytest.raises(ProviderUnavailable, match="3 attempts"):
        send_with_retries(lambda: next(answers), settings, sleep=sleeps.append)
    assert sleeps[0] == 0.5 and len(sleeps) == 2


def test_send_with_retries_returns_4xx_without_retrying():
    calls = []

    def send() -> httpx.Response:
        calls.append(1)
        return httpx.Response(400)

    assert send_with_retries(send, Settings(), sleep=lambda _: None).status_code == 400
    assert len(calls) == 1
