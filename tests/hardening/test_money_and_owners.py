"""Issue 10: a paid create is sent at most once, a slow provider never fails a good job, and
jobs belong to their caller. Through the real handlers, with a fake provider (respx) that
records every create."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import respx

from tests.conftest import FakeContext, invoke, load_event
from videogen.context import get_context
from videogen.errors import ProviderUnavailable
from videogen.http import send_with_retries
from videogen.models import Job
from videogen.settings import Settings
from videogen.tasks import PollInput, poll

OFFICIAL = "https://official.provider.test/v1/videos"
VIDEO_ID = "video_69788dc4a1c8819887468fbeffdda023"


def submit(body: dict, *, user: str | None = None) -> dict:
    event = load_event("submit")
    event["body"] = json.dumps(body)
    if user is not None:
        event["requestContext"]["authorizer"] = {"iam": {"userArn": user, "accountId": "123456789012"}}
    return invoke("submit", event)


def as_user(event: dict, user: str) -> dict:
    event["requestContext"]["authorizer"] = {"iam": {"userArn": user, "accountId": "123456789012"}}
    return event


def video(status: str = "queued", **extra) -> dict:
    return {"id": VIDEO_ID, "object": "video", "model": "sora-2", "status": status, "progress": 0, **extra}


# -- at most one paid create -------------------------------------------------------------------


@respx.mock
def test_official_create_lost_in_reply_is_reconciled_to_exactly_one_provider_job(ctx):
    # Given a provider that records the video and then never answers the create
    created: list[float] = []

    def accept_then_time_out(request: httpx.Request) -> httpx.Response:
        created.append(time.time())
        raise httpx.ReadTimeout("no answer")

    create = respx.post(OFFICIAL).mock(side_effect=accept_then_time_out)
    listing = respx.get(OFFICIAL).mock(
        side_effect=lambda request: httpx.Response(
            200,
            json={
                "object": "list",
                "data": [
                    video(created_at=int(created[0]), seconds="8", size="1280x720"),
                    # an older video of the same shape is not this request's
                    {**video(created_at=int(created[0]) - 3600, seconds="8", size="1280x720"), "id": "video_old"},
                ],
            },
        )
    )

    # When a client submits once
    answer = submit({"prompt": "a dog", "route": "official", "model": "sora-2", "seconds": 8, "size": "1280x720"})

    # Then one create was sent, the listing found the video it made, and the job tracks it
    assert create.call_count == 1 and listing.call_count == 1
    assert answer["statusCode"] == 202, answer["body"]
    assert answer["json"]["provider_job_id"] == VIDEO_ID
    assert ctx.repo.get(answer["json"]["id"]).status == "in_progress"
    assert listing.calls.last.request.url.params["order"] == "desc"


@pytest.mark.parametrize(
    "listing",
    [
        httpx.Response(200, json={"object": "list", "data": []}),
        httpx.Response(404, json={"error": {"message": "not supported"}}),
        "two-candidates",
    ],
    ids=["nothing-listed", "no-list-endpoint", "ambiguous"],
)
@respx.mock
def test_an_unreconciled_create_fails_the_job_loudly_and_is_never_resent(ctx, listing):
    create = respx.post(OFFICIAL).mock(return_value=httpx.Response(502))
    if listing == "two-candidates":
        now = int(time.time())
        both = [video(created_at=now, seconds="8"), {**video(created_at=now, seconds="8"), "id": "video_other"}]
        listing = httpx.Response(200, json={"object": "list", "data": both})
    respx.get(OFFICIAL).mock(return_value=listing)
    answer = submit({"prompt": "a dog", "route": "official", "model": "sora-2", "seconds": 8})
    assert create.call_count == 1
    assert answer["statusCode"] == 502
    error = answer["json"]["error"]
    assert error["code"] == "submit_uncertain" and "may exist" in error["message"]
    job = ctx.repo.get(error["job_id"])
    assert job.status == "failed" and job.error.code == "submit_uncertain"


# -- a slow provider ---------------------------------------------------------------------------


def test_status_retries_stop_before_the_lambda_would_time_out():
    # Given a provider whose every status call takes 25 s and then fails (a fake clock)
    clock = [0.0]

    def slow_failure() -> httpx.Response:
        # Each attempt runs until the provider answers or its timeout (the time left) ends it.
        clock[0] += min(25.0, max(1.0, 55.0 - clock[0]))
        return httpx.Response(502)

    # When the poll task has 55 s left for its call (60 s function, 5 s kept in hand)
    with pytest.raises(ProviderUnavailable):
        send_with_retries(
            slow_failure, Settings(), deadline=55.0, sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0]
        )
    # Then it gave up in time for the ASL to retry it (never Sandbox.Timedout)
    assert clock[0] <= 55.0


@respx.mock
def test_a_slow_status_call_that_answers_still_completes_the_poll(ctx):
    # The call's timeout is the Lambda's time left, not a fixed 3 x 30 s.
    job = Job.new(route="official", model="sora-2", prompt="a dog", seconds=8)
    ctx.repo.create(job)
    ctx.repo.start(job.id, VIDEO_ID)
    seen: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json=video("in_progress", progress=40))

    respx.get(f"{OFFICIAL}/{VIDEO_ID}").mock(side_effect=answer)
    result = poll(ctx, PollInput(action="poll", job_id=job.id, poll_interval_seconds=15), remaining_seconds=20.0)
    assert result["phase"] == "running" and result["progress"] == 40
    assert seen and seen[0] <= 15.0  # 20 s left, 5 s kept for the answer


@respx.mock
def test_a_retry_after_on_a_status_call_becomes_the_next_wait(ctx):
    job = Job.new(route="official", model="sora-2", prompt="a dog", seconds=8)
    ctx.repo.create(job)
    ctx.repo.start(job.id, VIDEO_ID)
    respx.get(f"{OFFICIAL}/{VIDEO_ID}").mock(return_value=httpx.Response(429, headers={"Retry-After": "90"}))
    result = poll(ctx, PollInput(action="poll", job_id=job.id, poll_interval_seconds=15), remaining_seconds=60.0)
    assert result["phase"] == "pending" and result["wait_seconds"] == 90
    assert ctx.repo.get(job.id).status == "in_progress"


# -- jobs belong to their caller ----------------------------------------------------------------

ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"
ROLE_SESSION_1 = "arn:aws:sts::123456789012:assumed-role/app-role/session-1"
ROLE_SESSION_2 = "arn:aws:sts::123456789012:assumed-role/app-role/session-2"


def get_event(job_id: str, user: str) -> dict:
    event = load_event("status-get")
    event["rawPath"] = f"/videos/{job_id}"
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"] = {"id": job_id}
    return as_user(event, user)


def list_event(user: str) -> dict:
    event = load_event("status-list")
    event["queryStringParameters"] = {"limit": "100"}
    event["rawQueryString"] = "limit=100"
    return as_user(event, user)


@respx.mock
def test_another_callers_job_is_404_and_never_listed(ctx):
    respx.post(OFFICIAL).mock(return_value=httpx.Response(200, json=video()))
    job_id = submit({"prompt": "a dog", "route": "official", "seconds": 8}, user=ALICE)["json"]["id"]

    assert invoke("status", get_event(job_id, ALICE))["statusCode"] == 200
    other = invoke("status", get_event(job_id, BOB))
    assert other["statusCode"] == 404 and other["json"]["error"]["code"] == "not_found"
    assert [j["id"] for j in invoke("status", list_event(ALICE))["json"]["jobs"]] == [job_id]
    assert invoke("status", list_event(BOB))["json"]["jobs"] == []
    assert "owner" not in invoke("status", get_event(job_id, ALICE))["json"]


@respx.mock
def test_sessions_of_one_role_share_its_jobs(ctx):
    respx.post(OFFICIAL).mock(return_value=httpx.Response(200, json=video()))
    job_id = submit({"prompt": "a dog", "route": "official", "seconds": 8}, user=ROLE_SESSION_1)["json"]["id"]
    assert invoke("status", get_event(job_id, ROLE_SESSION_2))["statusCode"] == 200
    assert get_context().repo.get(job_id).owner == "arn:aws:sts::123456789012:assumed-role/app-role"


def test_unexpected_errors_say_internal_error_and_the_request_id(ctx, monkeypatch):
    from videogen.operations import jobs

    def explode(*_a, **_k):
        raise RuntimeError("detail")

    monkeypatch.setattr(jobs, "view", explode)
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10)
    ctx.repo.create(job)
    answer = invoke("status", get_event(job.id, "anonymous"))
    assert answer["statusCode"] == 500
    error = answer["json"]["error"]
    assert error["code"] == "internal_error" and error["request_id"] in error["message"]
    assert "detail" not in answer["body"]


def test_metrics_carry_route_and_code(capsys):
    from videogen import observability

    observability.job_failed("official", "timed_out")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    dims = [tuple(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for line in lines]
    assert ("service", "route", "code") in dims and ("service", "code") in dims
    assert any(line.get("route") == "official" and line.get("code") == "timed_out" for line in lines)


_ = FakeContext  # the handlers get the suite's fake Lambda context through invoke()


@respx.mock
def test_submit_and_callback_provider_calls_end_within_the_lambdas_time_left(ctx):
    from tests.conftest import CALLBACK_KEYS
    from videogen.security import make_callback_token

    timeouts: list[float] = []

    def record(answer: httpx.Response):
        def side_effect(request: httpx.Request) -> httpx.Response:
            timeouts.append(request.extensions["timeout"]["read"])
            return answer

        return side_effect

    task = "https://task.provider.test/api/v1"
    respx.post(f"{task}/generateTask/sora-2").mock(
        side_effect=record(httpx.Response(200, json={"code": 200, "data": {"taskId": "t1"}}))
    )
    status = {"code": 200, "data": {"taskId": "t1", "state": "processing"}}
    respx.get(f"{task}/statusTask/sora-2").mock(side_effect=record(httpx.Response(200, json=status)))

    event = load_event("submit")
    event["body"] = json.dumps({"prompt": "a cat", "route": "task"})
    job_id = invoke("submit", event, FakeContext(remaining_ms=12_000))["json"]["id"]
    assert timeouts[-1] <= 12.0 - 4.0  # the submit keeps 4 s in hand

    callback = load_event("callback-success")
    token = make_callback_token(job_id, CALLBACK_KEYS)
    callback.update(rawPath=f"/callbacks/{job_id}", pathParameters={"id": job_id}, queryStringParameters={"token": token})
    callback["requestContext"]["http"]["path"] = f"/callbacks/{job_id}"
    callback["body"] = json.dumps({"code": 200, "data": {"taskId": "t1", "state": "processing"}})
    answer = invoke("callback", callback, FakeContext(remaining_ms=9_000))
    assert answer["statusCode"] == 503  # not final yet
    assert timeouts[-1] <= 9.0 - 3.0  # the callback keeps 3 s in hand
