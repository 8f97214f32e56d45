"""Faults that end in the job workflow: the real ASL on moto, the real handlers behind it.

Reuses the workflow suite's fixtures (``tests/workflow/conftest.py``). The lost callback and
the callback racing the poller are ``test_lost_callback_is_completed_by_the_fallback`` and
``test_callback_arriving_while_the_workflow_polls_stores_once`` in
``tests/workflow/test_job_workflow.py``; the cases here add what the safe downloader and the
store path must guarantee once the workflow has the job. ``sfn`` (moto running the state
machine) and ``ctx`` are the workflow suite's fixtures, imported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import respx
from botocore.exceptions import ClientError

from tests.conftest import CALLBACK_KEYS, invoke, load_event, mp4_bytes
from tests.workflow.conftest import ctx, open_uploads, sfn, stored_objects  # noqa: F401 - fixtures
from videogen import aws
from videogen.models import Job
from videogen.security import make_callback_token

TASK_ID = "task_sora2_1795312800_ab12cd"
RESULT_URL = "https://cdn.provider.test/results/ab12cd.mp4"
STATUS_URL = "https://task.provider.test/api/v1/statusTask/sora-2"
MIB = 1024 * 1024


def task_job(pipe) -> Job:
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10, orientation="landscape")
    pipe.repo.create(job)
    pipe.repo.start(job.id, TASK_ID)
    return pipe.repo.get(job.id)


def status(state: str = "success", url: str = RESULT_URL) -> httpx.Response:
    data: dict[str, Any] = {"taskId": TASK_ID, "state": state}
    if state == "success":
        data["resultJson"] = json.dumps({"resultUrls": [url]})
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": data})


def callback(job_id: str) -> dict[str, Any]:
    event = load_event("callback-success")
    token = make_callback_token(job_id, CALLBACK_KEYS)
    event["queryStringParameters"] = {"token": token}
    event["rawQueryString"] = f"token={token}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{job_id}"
    event["pathParameters"] = {"id": job_id}
    return invoke("callback", event)


def truncated(body: bytes) -> httpx.Response:
    def half() -> Iterator[bytes]:
        yield body[: len(body) // 2]

    return httpx.Response(200, content=half(), headers={"Content-Length": str(len(body))})


@respx.mock
def test_a_download_that_stays_truncated_ends_failed_with_an_empty_bucket(sfn, ctx):  # noqa: F811
    # Given a result that always arrives cut short
    job = task_job(ctx)
    video = mp4_bytes(300_000)
    respx.get(STATUS_URL).mock(return_value=status())
    download = respx.get(RESULT_URL).mock(side_effect=lambda request: truncated(video))

    # When the callback cannot store it: it hands the store to the workflow and answers 2xx
    answer = callback(job.id)
    assert answer["statusCode"] == 200 and answer["json"]["result"] == "handed off"

    # Then the workflow retries, gives up, and fails the job: nothing in the bucket
    assert sfn.wait(f"{job.id}-store")["status"] in ("SUCCEEDED", "FAILED")
    stored = ctx.repo.get(job.id)
    assert stored.status == "failed" and stored.error.code == "download_failed"
    assert "truncated" in stored.error.message
    assert download.call_count > 1
    assert stored_objects() == [] and open_uploads() == []


@respx.mock
def test_s3_failing_mid_upload_in_the_callback_is_completed_by_the_workflow(sfn, ctx, monkeypatch):  # noqa: F811
    # Given an S3 that refuses one part of the callback's multipart upload
    monkeypatch.setenv("PART_SIZE_BYTES", str(5 * MIB))
    from videogen import context as videogen_context

    videogen_context.reset()
    ctx = videogen_context.get_context()
    job = task_job(ctx)
    video = mp4_bytes(11 * MIB)
    respx.get(STATUS_URL).mock(return_value=status())
    respx.get(RESULT_URL).mock(side_effect=lambda request: httpx.Response(200, content=video))
    s3 = aws.client("s3")
    real = s3.upload_part
    refused: list[str] = []

    def upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2 and not refused:
            refused.append(kwargs["UploadId"])
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "UploadPart")
        return real(**kwargs)

    monkeypatch.setattr(s3, "upload_part", upload_part)

    # When the callback's upload fails half-way
    answer = callback(job.id)
    assert answer["statusCode"] == 200 and answer["json"]["result"] == "handed off"

    # Then the aborted upload left nothing, and the workflow's store wrote the one object
    assert sfn.wait(f"{job.id}-store")["status"] == "SUCCEEDED"
    stored = ctx.repo.get(job.id)
    assert refused and stored.status == "succeeded" and stored.video.bytes == len(video)
    assert [(o["Key"], o["Size"]) for o in stored_objects()] == [(f"videos/{job.id}.mp4", len(video))]
    assert open_uploads() == []


@respx.mock
def test_an_unsafe_url_found_by_the_poller_fails_the_job_without_retries(sfn, ctx):  # noqa: F811
    # Given a lost callback, and a provider whose status answer names the metadata service
    job = task_job(ctx)
    poll = respx.get(STATUS_URL).mock(return_value=status(url="https://169.254.169.254/latest/meta-data/"))

    # When the workflow polls and tries to store it
    sfn.start(job.id, job_id=job.id, route="task")
    sfn.wait(job.id)

    # Then the safe downloader refused it once and the job failed at once: nothing stored
    stored = ctx.repo.get(job.id)
    assert stored.status == "failed" and stored.error.code == "download_failed"
    assert "refused" in stored.error.message
    assert poll.called and sfn.retry_sleeps == []
    assert stored_objects() == [] and open_uploads() == []
