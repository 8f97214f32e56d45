"""The workflow's Lambda tasks one at a time, fed the sample events in events/poll-*.json and
events/store-*.json (the same files ``sam local invoke -e`` would use), plus the official
route's submit and the ASL's own rules."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import pytest
import respx

from local import stepfunctions as harness
from tests.conftest import API_KEY, invoke, load_event, mp4_bytes
from tests.template import resource
from tests.workflow.conftest import multipart_fields, submit
from videogen import context as videogen_context
from videogen.errors import InvalidRequest, ProviderUnavailable
from videogen.models import Job
from videogen.operations.store import fail_job
from videogen.providers import ReferenceImage

OFFICIAL_JOB = "6c1e4b0a9f2d4c8e8a3b7d5f1e2c4a60"
TASK_JOB = "0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b"
VIDEO_ID = "video_69788dc4a1c8819887468fbeffdda023"
TASK_ID = "task_sora2_1795312800_ab12cd"
VIDEO_URL = f"https://official.provider.test/v1/videos/{VIDEO_ID}"
STATUS_URL = "https://task.provider.test/api/v1/statusTask/sora-2"
RESULT_URL = "https://cdn.provider.test/results/ab12cd.mp4"


@pytest.fixture
def tasks(aws) -> videogen_context.Context:
    """Plain moto AWS (no state machine): the task handlers are invoked directly."""
    return videogen_context.get_context()


def make_job(ctx, route: str, job_id: str, provider_job_id: str | None) -> Job:
    if route == "official":
        job = Job.new(route="official", model="sora-2", prompt="a dog", seconds=8, size="1280x720", orientation="landscape")
    else:
        job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10, orientation="landscape")
    ctx.repo.create(job.model_copy(update={"id": job_id}))
    if provider_job_id:
        ctx.repo.start(job_id, provider_job_id)
    return ctx.repo.get(job_id)


def poll_event(name: str, *, started_ago: float = 0.0) -> dict:
    """A sample poll event, its execution start time moved to ``started_ago`` seconds ago."""
    event = load_event(name)
    event["started_at"] = (datetime.now(UTC) - timedelta(seconds=started_ago)).isoformat()
    return event


def video(status: str, progress: int = 0, headers: dict | None = None, **extra) -> httpx.Response:
    return httpx.Response(
        200, json={"id": VIDEO_ID, "object": "video", "status": status, "progress": progress, **extra}, headers=headers
    )


# -- poll ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "wait"),
    [(None, 15), ("30000", 30), ("2000", 15), ("999999999", 120), ("soon", 15), ("-5", 15)],
)
@respx.mock
def test_poll_official_running_records_progress_and_honours_the_poll_hint(tasks, hint, wait):
    # Given an official job in progress, and a provider answering 45% with an optional poll hint
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    route = respx.get(VIDEO_URL).mock(return_value=video("in_progress", 45, {"openai-poll-after-ms": hint} if hint else None))

    # When the poll task runs on the sample event (interval 15 s)
    answer = invoke("poll", poll_event("poll-official"))

    # Then it says "running", waits the interval or the longer hint (capped at 120 s), records progress
    assert abs(answer.pop("polled_at") - time.time()) < 60  # the next poll's rate estimate starts from it
    assert answer == {"phase": "running", "status": "in_progress", "progress": 45, "wait_seconds": wait, "result_url": None}
    assert route.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    assert tasks.repo.get(OFFICIAL_JOB).progress == 45


@respx.mock
def test_poll_official_completed_points_at_the_content(tasks):
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(VIDEO_URL).mock(return_value=video("completed", 100))
    answer = invoke("poll", poll_event("poll-official"))
    assert answer["phase"] == "succeeded" and answer["result_url"] == f"{VIDEO_URL}/content"
    assert answer["wait_seconds"] == 15
    assert tasks.repo.get(OFFICIAL_JOB).status == "in_progress"


@respx.mock
def test_poll_past_the_deadline_fails_the_job_timed_out(tasks):
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(VIDEO_URL).mock(return_value=video("in_progress", 99))
    answer = invoke("poll", poll_event("poll-official", started_ago=3601))
    assert answer["phase"] == "failed" and answer["error"] == "timed_out"
    job = tasks.repo.get(OFFICIAL_JOB)
    assert job.status == "failed" and job.error.code == "timed_out"


@respx.mock
def test_poll_wait_never_passes_the_deadline(tasks):
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(VIDEO_URL).mock(return_value=video("in_progress", 50))
    answer = invoke("poll", poll_event("poll-official", started_ago=3600 - 4.5))
    assert answer["phase"] == "running" and answer["wait_seconds"] == 5


@respx.mock
def test_poll_unknown_video_status_is_a_provider_error(tasks):
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(VIDEO_URL).mock(return_value=video("melting"))
    with pytest.raises(ProviderUnavailable, match="unknown video status 'melting'"):
        invoke("poll", poll_event("poll-official"))


@respx.mock
def test_poll_task_processing_asks_status_task(tasks):
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    route = respx.get(STATUS_URL).mock(
        return_value=httpx.Response(200, json={"code": 200, "data": {"taskId": TASK_ID, "state": "processing"}})
    )
    answer = invoke("poll", poll_event("poll-task"))
    assert answer["phase"] == "running" and answer["wait_seconds"] == 15
    assert route.calls.last.request.url.params["taskId"] == TASK_ID


@respx.mock
def test_poll_task_failed_fails_the_job_with_the_providers_words(tasks):
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    respx.get(STATUS_URL).mock(
        return_value=httpx.Response(
            200,
            json={
                "code": 200,
                "data": {"taskId": TASK_ID, "state": "failed", "failCode": "CONTENT_VIOLATION", "failMsg": "nope"},
            },
        )
    )
    answer = invoke("poll", poll_event("poll-task"))
    assert answer["phase"] == "failed" and answer["error"] == "content_violation"
    assert tasks.repo.get(TASK_JOB).error.message == "nope"


@respx.mock
def test_poll_of_a_finished_job_is_done_without_asking_the_provider(tasks):
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    fail_job(tasks, TASK_JOB, "provider_error", "already over")
    provider = respx.route(host="task.provider.test")
    answer = invoke("poll", poll_event("poll-task"))
    assert answer["phase"] == "done" and answer["status"] == "failed"
    assert not provider.called


@respx.mock
def test_poll_of_a_job_still_in_submit_waits(tasks):
    # A queued job without a provider id, seconds old: submit is probably still calling the provider
    make_job(tasks, "task", TASK_JOB, None)
    answer = invoke("poll", poll_event("poll-task"))
    assert answer["phase"] == "pending" and answer["wait_seconds"] == 15
    assert tasks.repo.get(TASK_JOB).status == "queued"


@pytest.mark.parametrize(
    "event",
    [
        {"action": "poll"},
        {"action": "poll", "job_id": ""},
        {"action": "poll", "job_id": TASK_JOB, "poll_interval_seconds": -1},
        {"action": "explode", "job_id": TASK_JOB},
        ["not", "an", "object"],
    ],
)
def test_poll_rejects_bad_input_by_name(tasks, event):
    with pytest.raises(InvalidRequest):
        invoke("poll", event)


# -- fail ---------------------------------------------------------------------------------------


def test_fail_event_fails_the_job_with_the_caught_error(tasks):
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    answer = invoke("poll", load_event("poll-fail"))
    assert answer == {"phase": "failed", "changed": True, "error": "download_failed"}
    job = tasks.repo.get(TASK_JOB)
    assert job.status == "failed" and job.error.code == "download_failed"
    assert job.error.message == "download answered HTTP 403"
    # A second catch (a retried fail task) changes nothing
    assert invoke("poll", load_event("poll-fail"))["changed"] is False


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        ({"Error": "States.Timeout", "Cause": ""}, "timed_out", "workflow step failed (States.Timeout)"),
        (
            {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 900.00 seconds"},
            "timed_out",
            "Sandbox.Timedout: Task timed out",
        ),
        (
            {"Error": "ProviderUnavailable", "Cause": json.dumps({"errorMessage": "statusTask unavailable"})},
            "provider_error",
            "statusTask",
        ),
        ({"Error": "VideoNotReady", "Cause": json.dumps({"errorMessage": "not ready"})}, "download_failed", "not ready"),
        ({}, "provider_error", "workflow step failed (States.TaskFailed)"),
    ],
)
def test_fail_maps_error_names_to_job_codes(tasks, error, code, message):
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    invoke("poll", {"action": "fail", "job_id": OFFICIAL_JOB, "error": error})
    job = tasks.repo.get(OFFICIAL_JOB)
    assert job.error.code == code and job.error.message.startswith(message)


# -- store --------------------------------------------------------------------------------------


@respx.mock
def test_store_official_event_streams_the_content_with_the_key(tasks):
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    content = respx.get(f"{VIDEO_URL}/content").mock(return_value=httpx.Response(200, content=mp4_bytes(50_000)))
    answer = invoke("store", load_event("store-official"))
    assert answer == {"result": "succeeded", "status": "succeeded"}
    assert content.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    assert tasks.repo.get(OFFICIAL_JOB).video.bytes == 50_000


@respx.mock
def test_store_official_content_not_ready_raises_video_not_ready(tasks):
    from videogen.tasks import VideoNotReady

    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(f"{VIDEO_URL}/content").mock(return_value=httpx.Response(404, json={"error": {"message": "not ready"}}))
    with pytest.raises(VideoNotReady):
        invoke("store", load_event("store-official"))
    assert tasks.repo.get(OFFICIAL_JOB).store_lease_until is None


@respx.mock
def test_store_handoff_event_stores_the_result_url(tasks):
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes(70_000)))
    answer = invoke("store", load_event("store-handoff"))
    assert answer == {"result": "succeeded", "status": "succeeded"} and download.call_count == 1
    head = boto3.client("s3").head_object(Bucket="videos", Key=f"videos/{TASK_JOB}.mp4")
    assert head["ContentLength"] == 70_000
    # A repeat (a duplicate hand-off) is a no-op
    assert invoke("store", load_event("store-handoff")) == {"result": "ignored", "status": "succeeded"}
    assert download.call_count == 1


def test_store_while_another_store_runs_raises_store_busy(tasks):
    from videogen.tasks import StoreBusy

    make_job(tasks, "task", TASK_JOB, TASK_ID)
    assert tasks.repo.claim_store(TASK_JOB, 600)
    with pytest.raises(StoreBusy):
        invoke("store", load_event("store-handoff"))


@pytest.mark.parametrize(
    "event", [{"action": "store"}, {"action": "store", "job_id": TASK_JOB}, {"action": "shred", "job_id": TASK_JOB}]
)
def test_store_rejects_bad_input_by_name(tasks, event):
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    with pytest.raises(InvalidRequest):
        invoke("store", event)


# -- official submit ----------------------------------------------------------------------------


@respx.mock
def test_official_submit_refused_answers_422_with_the_providers_error(tasks):
    respx.post("https://official.provider.test/v1/videos").mock(
        return_value=httpx.Response(
            400,
            json={
                "error": {
                    "message": "Invalid size 640x480",
                    "type": "invalid_request_error",
                    "param": "size",
                    "code": "invalid_value",
                }
            },
        )
    )
    response = submit({"prompt": "a dog", "route": "official", "size": "1280x720"})
    assert response["statusCode"] == 422
    error = response["json"]["error"]
    assert (
        "Invalid size 640x480" in error["message"]
        and error["provider_param"] == "size"
        and error["provider_code"] == "invalid_value"
    )
    job = tasks.repo.get(error["job_id"])
    assert job.status == "failed" and job.error.code == "provider_rejected"


@respx.mock
def test_official_submit_sends_defaults_from_the_catalog(tasks):
    create = respx.post("https://official.provider.test/v1/videos").mock(return_value=video("queued"))
    response = submit({"prompt": "a dog", "route": "official"})
    assert response["statusCode"] == 202 and response["json"]["provider_job_id"] == VIDEO_ID
    assert multipart_fields(create.calls.last.request) == {
        "model": b"sora-2",
        "prompt": b"a dog",
        "seconds": b"4",
        "size": b"720x1280",
    }


@respx.mock
def test_official_client_sends_an_input_reference_file(tasks):
    create = respx.post("https://official.provider.test/v1/videos").mock(return_value=video("queued"))
    image = ReferenceImage(content=b"\x89PNG\r\n\x1a\nfake", content_type="image/png", filename="ref.png")
    video_id = tasks.provider("official").api.create("sora-2-pro", prompt="a dog", seconds=12, size="1792x1024", image=image)
    assert video_id == VIDEO_ID
    request = create.calls.last.request
    assert multipart_fields(request)["input_reference"] == image.content
    assert b'filename="ref.png"' in request.content and b"Content-Type: image/png" in request.content


@respx.mock
def test_official_client_rejects_an_answer_without_a_video(tasks):
    respx.post("https://official.provider.test/v1/videos").mock(return_value=httpx.Response(200, json={"object": "list"}))
    with pytest.raises(ProviderUnavailable):
        tasks.provider("official").api.create("sora-2", prompt="a dog", seconds=4, size="720x1280")


# -- the ASL itself -----------------------------------------------------------------------------


def test_every_task_retries_with_full_jitter_and_catches_everything():
    asl = json.loads(harness.ASL_PATH.read_text())
    tasks = {name: state for name, state in asl["States"].items() if state["Type"] == "Task"}
    assert {"Poll", "StoreVideo", "FailJob"} <= set(tasks)
    for name, state in tasks.items():
        assert state["Retry"], name
        assert all(r["JitterStrategy"] == "FULL" for r in state["Retry"]), name
        assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"]), name
    waits = [s for s in asl["States"].values() if s["Type"] == "Wait"]
    assert waits and all("SecondsPath" in s for s in waits)


def test_asl_placeholders_match_the_templates_substitutions():
    functions = harness.task_functions()
    assert set(functions) == {"PollFunctionArn", "StoreFunctionArn", "GenerateFunctionArn"}
    assert {f.handler for f in functions.values()} == {"poll", "store", "generate"}
    assert functions["StoreFunctionArn"].timeout == 900
    text = harness.definition(functions)
    assert "${" not in text
    props = resource("JobStateMachine")["Properties"]
    assert props["DefinitionUri"] == "statemachine/job.asl.json" and props["Type"] == "STANDARD"
