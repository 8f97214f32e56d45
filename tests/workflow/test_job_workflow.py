"""The job workflow: the real statemachine/job.asl.json run by moto, the real handlers behind it.

Each test drives a job through the HTTP handlers or the ctx, lets the state machine run
(waits are zero or one second), and checks the job row, the S3 bucket and the execution history.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import pytest
import respx

from local import stepfunctions as harness
from tests.conftest import API_KEY, CALLBACK_KEYS, load_event, load_handler, mp4_bytes
from tests.workflow.conftest import CDN, OFFICIAL, TASK, multipart_fields, open_uploads, stored_objects, submit
from videogen.models import Job
from videogen.operations.store import store_video
from videogen.security import make_callback_token
from videogen.workflow import start_workflow

VIDEO_ID = "video_69788dc4a1c8819887468fbeffdda023"
TASK_ID = "task_sora2_1795312800_ab12cd"
RESULT_URL = f"{CDN}/results/ab12cd.mp4"
STATUS_URL = f"{TASK}/api/v1/statusTask/sora-2"
CREATE_URL = f"{OFFICIAL}/v1/videos"
VIDEO_URL = f"{OFFICIAL}/v1/videos/{VIDEO_ID}"
CONTENT_URL = f"{VIDEO_URL}/content"


# -- provider answers -----------------------------------------------------------------------


def video_answer(status: str, progress: int | None = None, *, headers: dict[str, str] | None = None, **extra) -> httpx.Response:
    body = {"id": VIDEO_ID, "object": "video", "model": "sora-2", "status": status, "created_at": 1795312800, **extra}
    if progress is not None:
        body["progress"] = progress
    return httpx.Response(200, json=body, headers=headers)


def task_answer(state: str, **data) -> httpx.Response:
    body = {"taskId": TASK_ID, "state": state, **data}
    if state == "success":
        body.setdefault("resultJson", json.dumps({"resultUrls": [RESULT_URL]}))
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": body})


def submit_official(video: bytes) -> tuple[dict, respx.Route]:
    """POST /videos on the official route against a provider that accepts it."""
    create = respx.post(CREATE_URL).mock(return_value=video_answer("queued", 0, seconds="8", size="1280x720"))
    response = submit({"prompt": "A golden retriever on a beach", "route": "official", "seconds": 8, "size": "1280x720"})
    assert response["statusCode"] == 202, response["body"]
    return response["json"], create


def task_job(ctx, *, provider_job_id: str | None = TASK_ID, created_ago: float = 0.0) -> Job:
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10, orientation="landscape")
    if created_ago:
        created = (datetime.now(UTC) - timedelta(seconds=created_ago)).isoformat(timespec="microseconds").replace("+00:00", "Z")
        job = job.model_copy(update={"created_at": created, "updated_at": created})
    ctx.repo.create(job)
    if provider_job_id:
        ctx.repo.start(job.id, provider_job_id)
    return ctx.repo.get(job.id)


def callback(job_id: str) -> dict:
    event = load_event("callback-success")
    token = make_callback_token(job_id, CALLBACK_KEYS)
    event["queryStringParameters"] = {"token": token}
    event["rawQueryString"] = f"token={token}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{job_id}"
    event["pathParameters"] = {"id": job_id}
    return harness.invoke("callback", event)


def wait_until(condition, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- official route -------------------------------------------------------------------------


@respx.mock
def test_official_job_succeeds_with_the_mp4_in_s3(sfn, ctx, video):
    # Given an official provider that reports progress twice, then completion, and serves the MP4
    status = respx.get(VIDEO_URL).mock(
        side_effect=[video_answer("queued", 0), video_answer("in_progress", 45), video_answer("completed", 100)]
    )
    content = respx.get(CONTENT_URL).mock(return_value=httpx.Response(200, content=video, headers={"content-type": "video/mp4"}))

    # When a client submits an official-route job
    job, create = submit_official(video)

    # Then submit recorded the video id, the job is in progress, and its workflow runs to the end
    assert job["status"] == "in_progress" and job["provider_job_id"] == VIDEO_ID
    assert sfn.wait(job["id"])["status"] == "SUCCEEDED"

    # The create call was multipart, seconds as a string, with the bearer key
    request = create.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    fields = multipart_fields(request)
    assert fields == {"model": b"sora-2", "prompt": b"A golden retriever on a beach", "seconds": b"8", "size": b"1280x720"}

    # The job succeeded with the MP4 in S3 under videos/{id}.mp4, downloaded with the key
    stored = ctx.repo.get(job["id"])
    assert stored.status == "succeeded" and stored.progress == 100 and stored.completed_at
    assert stored.video.key == f"videos/{job['id']}.mp4" and stored.video.bytes == len(video)
    body = boto3.client("s3").get_object(Bucket="videos", Key=stored.video.key)
    assert body["Body"].read() == video
    assert body["Metadata"]["job-id"] == job["id"]
    assert content.call_count == 1 and content.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    assert status.call_count == 3

    # Progress was recorded on the job at each poll; the path through the ASL is the expected one
    events = sfn.history(job["id"])
    polls = [o for o in harness.task_outputs(events) if "phase" in o]
    assert [(p["phase"], p["progress"]) for p in polls] == [("pending", 0), ("running", 45), ("succeeded", 45)]
    assert harness.states_entered(events) == [
        "Mode",
        "FirstWait",
        "Poll",
        "NextStep",
        "WaitForNextPoll",
        "Poll",
        "NextStep",
        "WaitForNextPoll",
        "Poll",
        "NextStep",
        "StoreVideo",
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."}, "content_violation"),
        ({"code": "internal_error", "message": "Video generation failed."}, "provider_error"),
        (None, "provider_error"),
    ],
)
@respx.mock
def test_official_failure_fails_the_job_with_the_providers_error(sfn, ctx, video, error, code):
    # Given a provider that fails the video
    respx.get(VIDEO_URL).mock(side_effect=[video_answer("in_progress", 10), video_answer("failed", 10, error=error)])
    content = respx.get(CONTENT_URL).mock(return_value=httpx.Response(200, content=video))

    # When the job runs
    job, _ = submit_official(video)
    assert sfn.wait(job["id"])["status"] == "SUCCEEDED"

    # Then the job failed with the provider's error, mapped; nothing was downloaded or stored
    stored = ctx.repo.get(job["id"])
    assert stored.status == "failed" and stored.error.code == code
    assert stored.error.message == (error["message"] if error else "the provider reported a failed video")
    assert not content.called and stored_objects() == []
    assert harness.states_entered(sfn.history(job["id"]))[-1] == "Finished"


@respx.mock
def test_expired_video_fails_the_job_as_expired(sfn, ctx, video):
    respx.get(VIDEO_URL).mock(return_value=video_answer("expired", 100))
    content = respx.get(CONTENT_URL).mock(return_value=httpx.Response(200, content=video))

    job, _ = submit_official(video)
    assert sfn.wait(job["id"])["status"] == "SUCCEEDED"

    stored = ctx.repo.get(job["id"])
    assert stored.status == "failed" and stored.error.code == "expired"
    assert not content.called and stored_objects() == []


@respx.mock
def test_deadline_reached_fails_the_job_timed_out(sfn, ctx, video, monkeypatch):
    # Given a two-second workflow deadline, a 10-second poll interval, and a video that never finishes
    monkeypatch.setenv("WORKFLOW_DEADLINE_SECONDS", "2")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "10")
    monkeypatch.setenv("POLL_MAX_INTERVAL_SECONDS", "120")
    from videogen import context as videogen_context

    videogen_context.reset()
    status = respx.get(VIDEO_URL).mock(return_value=video_answer("in_progress", 50))

    # When the job runs
    job, _ = submit_official(video)
    assert sfn.wait(job["id"])["status"] == "SUCCEEDED"

    # Then the job failed with timed_out; no wait went past the deadline
    stored = ctx.repo.get(job["id"])
    assert stored.status == "failed" and stored.error.code == "timed_out"
    assert "within 2 seconds" in stored.error.message
    polls = [o for o in harness.task_outputs(sfn.history(job["id"])) if "phase" in o]
    assert polls[-1]["phase"] == "failed"
    assert all(p["wait_seconds"] <= 2 for p in polls)
    assert status.call_count <= 3


@respx.mock
def test_5xx_while_polling_is_retried_with_full_jitter(sfn, ctx, video):
    # Given a provider whose status API fails three times in a row (one poll's in-process attempts)
    respx.get(VIDEO_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(502), httpx.Response(500), video_answer("completed", 100)]
    )
    respx.get(CONTENT_URL).mock(return_value=httpx.Response(200, content=video))

    job, _ = submit_official(video)
    assert sfn.wait(job["id"])["status"] == "SUCCEEDED"

    # Then the ASL retried the poll once (a jittered delay within IntervalSeconds) and the job succeeded
    events = sfn.history(job["id"])
    assert harness.task_errors(events) == ["ProviderUnavailable"]
    assert len(sfn.retry_sleeps) == 1 and 0 <= sfn.retry_sleeps[0] <= 5
    assert ctx.repo.get(job["id"]).status == "succeeded"
    assert len(stored_objects()) == 1


@respx.mock
def test_content_not_ready_yet_counts_as_not_ready(sfn, ctx, video):
    # Given a provider that says completed while /content still answers 404 once
    respx.get(VIDEO_URL).mock(return_value=video_answer("completed", 100))
    content = respx.get(CONTENT_URL).mock(
        side_effect=[
            httpx.Response(
                404, json={"error": {"message": "Video is not ready yet", "type": "invalid_request_error", "code": None}}
            ),
            httpx.Response(200, content=video),
        ]
    )

    job, _ = submit_official(video)
    assert sfn.wait(job["id"])["status"] == "SUCCEEDED"

    # Then the store was retried and the job succeeded; the failed attempt left nothing behind
    assert harness.task_errors(sfn.history(job["id"])) == ["VideoNotReady"]
    assert content.call_count == 2
    assert ctx.repo.get(job["id"]).status == "succeeded"
    assert len(stored_objects()) == 1 and open_uploads() == []


@respx.mock
def test_provider_refusing_the_poll_fails_the_job_through_the_catch(sfn, ctx, video):
    # Given a provider that no longer knows the video
    respx.get(VIDEO_URL).mock(
        return_value=httpx.Response(
            404,
            json={"error": {"message": "Video not found", "type": "invalid_request_error", "param": "id", "code": "not_found"}},
        )
    )

    job, _ = submit_official(video)
    described = sfn.wait(job["id"])

    # Then the Catch ran the fail task: the job is failed with the provider's words, never stuck
    stored = ctx.repo.get(job["id"])
    assert stored.status == "failed" and stored.error.code == "provider_error"
    assert "Video not found" in stored.error.message
    assert described["status"] == "FAILED"
    assert harness.states_entered(sfn.history(job["id"]))[-2:] == ["FailJob", "WorkflowFailed"]


# -- task route: fallback, races, hand-off ----------------------------------------------------


@respx.mock
def test_lost_callback_is_completed_by_the_fallback(sfn, ctx, video):
    # Given a task-route provider that accepts the job but never calls back
    respx.post(f"{TASK}/api/v1/generateTask/sora-2").mock(
        return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": TASK_ID}})
    )
    status = respx.get(STATUS_URL).mock(side_effect=[task_answer("processing"), task_answer("success")])
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))

    # When the job is submitted and its callback is lost
    response = submit({"prompt": "a cat", "route": "task"})
    assert response["statusCode"] == 202
    job_id = response["json"]["id"]
    assert sfn.wait(job_id)["status"] == "SUCCEEDED"

    # Then the workflow polled statusTask and stored the result through the same store path
    job = ctx.repo.get(job_id)
    assert job.status == "succeeded" and job.video.bytes == len(video)
    assert status.call_count == 2 and download.call_count == 1
    assert [o["Key"] for o in stored_objects()] == [f"videos/{job_id}.mp4"]
    assert harness.states_entered(sfn.history(job_id))[-1] == "StoreVideo"


@respx.mock
def test_callback_arriving_while_the_workflow_polls_stores_once(sfn, ctx, video):
    # Given a task job whose workflow is polling a still-processing task (1-second interval)
    job = task_job(ctx)
    finished = threading.Event()
    status = respx.get(STATUS_URL).mock(side_effect=lambda request: task_answer("success" if finished.is_set() else "processing"))
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))
    load_handler("callback")
    sfn.start(job.id, job_id=job.id, route="task", poll_interval_seconds=2)
    wait_until(lambda: status.call_count >= 1)

    # When the task finishes and its callback arrives while the workflow waits to poll again
    finished.set()
    answer = callback(job.id)

    # Then the callback stored the video; the workflow found the job finished: one store, one object
    assert answer["statusCode"] == 200 and answer["json"]["result"] == "succeeded"
    assert sfn.wait(job.id)["status"] == "SUCCEEDED"
    stored = ctx.repo.get(job.id)
    assert stored.status == "succeeded"
    assert download.call_count == 1 and len(stored_objects()) == 1
    # (a workflow store attempt, had a poll raced the callback, could only have been a no-op)
    assert all(call.result == {"result": "ignored", "status": "succeeded"} for call in sfn.router.calls("store"))
    # The execution ended on a poll that found the job done, or on that no-op store.
    last = harness.task_outputs(sfn.history(job.id))[-1]
    assert last.get("phase") == "done" or last == {"result": "ignored", "status": "succeeded"}


@respx.mock
def test_workflow_yields_to_a_store_already_running(sfn, ctx, video):
    # Given a task job whose callback is storing the video right now (it holds the store lease)
    job = task_job(ctx)
    assert ctx.repo.claim_store(job.id, 600)
    respx.get(STATUS_URL).mock(return_value=task_answer("success"))
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))

    # When the workflow finds the task finished and tries to store too
    sfn.start(job.id, job_id=job.id, route="task", poll_interval_seconds=1)
    wait_until(lambda: any(c.error == "StoreBusy" for c in sfn.router.calls("store")))
    # ... while the callback's store completes
    ctx.repo.release_store(job.id)
    assert store_video(ctx, job, RESULT_URL, deadline=None, handoff=True) == "succeeded"

    # Then the workflow backed off, looked again, and ended: one download, one object
    assert sfn.wait(job.id)["status"] == "SUCCEEDED"
    states = harness.states_entered(sfn.history(job.id))
    assert states[states.index("StoreVideo") + 1] == "WaitForNextPoll" and states[-1] == "Finished"
    assert download.call_count == 1 and len(stored_objects()) == 1
    assert ctx.repo.get(job.id).status == "succeeded"


class SlowStream(httpx.SyncByteStream):
    """A response body arriving slowly: ``chunks`` pieces, ``delay`` seconds apart."""

    def __init__(self, data: bytes, chunks: int, delay: float) -> None:
        self.data, self.chunks, self.delay = data, chunks, delay

    def __iter__(self) -> Iterator[bytes]:
        step = -(-len(self.data) // self.chunks)
        for start in range(0, len(self.data), step):
            time.sleep(self.delay)
            yield self.data[start : start + step]


@respx.mock
def test_store_handoff_completes_a_large_transfer(sfn, ctx, monkeypatch):
    # Given a 12 MB video that downloads slowly the first time, and a short callback budget
    monkeypatch.setenv("CALLBACK_BUDGET_SECONDS", "1")
    monkeypatch.setenv("PART_SIZE_BYTES", str(5 * 1024 * 1024))
    from videogen import context as videogen_context

    videogen_context.reset()
    ctx = videogen_context.get_context()
    big = mp4_bytes(12 * 1024 * 1024)
    job = task_job(ctx)
    respx.get(STATUS_URL).mock(return_value=task_answer("success"))
    downloads: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        downloads.append("slow" if not downloads else "fast")
        if downloads[-1] == "slow":
            return httpx.Response(200, stream=SlowStream(big, chunks=40, delay=0.05), headers={"content-length": str(len(big))})
        return httpx.Response(200, content=big)

    respx.get(RESULT_URL).mock(side_effect=serve)

    # When the callback arrives and cannot finish the transfer in its budget
    answer = callback(job.id)

    # Then it still answers 2xx, handing the store to the workflow, which completes it
    assert answer["statusCode"] == 200 and answer["json"]["result"] == "handed off"
    assert sfn.executions() == [f"{job.id}-store"]
    assert sfn.wait(f"{job.id}-store")["status"] == "SUCCEEDED"
    stored = ctx.repo.get(job.id)
    assert stored.status == "succeeded" and stored.video.bytes == len(big)
    objects = stored_objects()
    assert [(o["Key"], o["Size"]) for o in objects] == [(f"videos/{job.id}.mp4", len(big))]
    assert open_uploads() == []
    assert downloads == ["slow", "fast"]
    assert harness.states_entered(sfn.history(f"{job.id}-store")) == ["Mode", "HandOff", "StoreVideo"]


@respx.mock
def test_store_that_keeps_failing_fails_the_job_download_failed(sfn, ctx):
    # Given a finished task whose result URL keeps answering 500
    job = task_job(ctx)
    respx.get(STATUS_URL).mock(return_value=task_answer("success"))
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(500, text="upstream error"))

    sfn.start(job.id, job_id=job.id, route="task")
    assert sfn.wait(job.id)["status"] == "FAILED"

    # Then the store was retried (jittered), then the catch failed the job: no object, no open upload
    assert download.call_count == 3 and len(sfn.retry_sleeps) == 2
    assert all(0 <= s <= 20 for s in sfn.retry_sleeps)
    stored = ctx.repo.get(job.id)
    assert stored.status == "failed" and stored.error.code == "download_failed"
    assert "HTTP 500" in stored.error.message
    assert stored_objects() == [] and open_uploads() == []
    assert harness.states_entered(sfn.history(job.id))[-2:] == ["FailJob", "WorkflowFailed"]


@respx.mock
def test_result_that_is_not_a_video_fails_the_job_without_retrying(sfn, ctx):
    # Given a finished task whose result URL serves something that is not an MP4
    job = task_job(ctx)
    respx.get(STATUS_URL).mock(return_value=task_answer("success"))
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=b"<html>not a video</html>"))

    sfn.start(job.id, job_id=job.id, route="task")
    assert sfn.wait(job.id)["status"] == "SUCCEEDED"

    # Then the store path failed the job at once (retrying cannot help)
    assert download.call_count == 1 and sfn.retry_sleeps == []
    stored = ctx.repo.get(job.id)
    assert stored.status == "failed" and stored.error.code == "download_failed"
    assert "not an MP4" in stored.error.message
    assert stored_objects() == [] and open_uploads() == []


@respx.mock
def test_submit_interrupted_job_is_failed_by_the_workflow(sfn, ctx):
    # Given a job whose submit died before the provider call: queued, no provider id, 10 minutes old
    job = task_job(ctx, provider_job_id=None, created_ago=600)
    provider = respx.route(host="task.provider.test")

    # When its workflow checks it
    start_workflow(ctx.settings, job, first_wait_seconds=0)
    assert sfn.wait(job.id)["status"] == "SUCCEEDED"

    # Then the job is failed with submit_interrupted, and the provider was never asked
    stored = ctx.repo.get(job.id)
    assert stored.status == "failed" and stored.error.code == "submit_interrupted"
    assert not provider.called


@respx.mock
def test_workflow_start_is_idempotent_per_job(sfn, ctx):
    job = task_job(ctx, provider_job_id=None, created_ago=600)
    start_workflow(ctx.settings, job, first_wait_seconds=0)
    start_workflow(ctx.settings, job, first_wait_seconds=0)
    sfn.wait(job.id)
    assert sfn.executions() == [job.id]
    started = json.loads(sfn.history(job.id)[0]["executionStartedEventDetails"]["input"])
    assert started == {
        "job_id": job.id,
        "route": "task",
        "mode": "run",
        "first_wait_seconds": 0,
        "poll_interval_seconds": 0,
        "deadline_seconds": 3600,
    }
