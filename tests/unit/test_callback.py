"""POST /callbacks/{id}: token first, payload checks, store, duplicates and late callbacks."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest
import respx

from tests.conftest import CALLBACK_KEYS, invoke, load_event, mp4_bytes
from videogen.models import Job
from videogen.security import make_callback_token

JOB_ID = "0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b"
TASK_ID = "task_sora2_1795312800_ab12cd"
RESULT_URL = "https://cdn.provider.test/results/ab12cd.mp4"
STATUS_URL = "https://task.provider.test/api/v1/statusTask/sora-2"


def make_job(ctx, *, provider_job_id: str | None = TASK_ID, job_id: str = JOB_ID) -> Job:
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10, orientation="landscape")
    job = job.model_copy(update={"id": job_id})
    ctx.repo.create(job)
    if provider_job_id:
        ctx.repo.start(job_id, provider_job_id)
    return ctx.repo.get(job_id)


def callback_event(
    case: str = "callback-success", *, token: str | None = "valid", body: str | None = None, job_id: str = JOB_ID
) -> dict:
    event = load_event(case)
    if token == "valid":
        token = make_callback_token(job_id, CALLBACK_KEYS)
    event["queryStringParameters"] = {"token": token} if token is not None else {}
    event["rawQueryString"] = f"token={token}" if token is not None else ""
    if body is not None:
        event["body"] = body
    event["rawPath"] = f"/callbacks/{job_id}"
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"] = {"id": job_id}
    return event


def status_answer(state: str = "success", **data) -> httpx.Response:
    body = {"taskId": TASK_ID, "state": state, **data}
    if state == "success":
        body.setdefault("resultJson", json.dumps({"resultUrls": [RESULT_URL]}))
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": body})


def objects() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket="videos")
    return [o["Key"] for o in listing.get("Contents", [])]


def open_uploads() -> list:
    return boto3.client("s3").list_multipart_uploads(Bucket="videos").get("Uploads", [])


@respx.mock
def test_success_callback_stores_mp4_and_succeeds_job(ctx):
    # Given a task job in progress, and a provider that confirms success and serves the MP4
    make_job(ctx)
    video = mp4_bytes(100_000)
    respx.get(STATUS_URL).mock(return_value=status_answer())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))

    # When the provider's callback arrives
    response = invoke("callback", callback_event())

    # Then it is acknowledged, the MP4 is in S3 under videos/{id}.mp4, the job succeeded
    assert response["statusCode"] == 200, response["body"]
    assert response["json"]["result"] == "succeeded"
    assert download.call_count == 1
    job = ctx.repo.get(JOB_ID)
    assert job.status == "succeeded"
    assert job.video.key == f"videos/{JOB_ID}.mp4" and job.video.bytes == len(video)
    assert job.progress == 100 and job.completed_at
    head = boto3.client("s3").head_object(Bucket="videos", Key=f"videos/{JOB_ID}.mp4")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["job-id"] == JOB_ID
    assert boto3.client("s3").get_object(Bucket="videos", Key=f"videos/{JOB_ID}.mp4")["Body"].read() == video


@respx.mock
def test_failed_callback_fails_job_with_mapped_code(ctx):
    make_job(ctx)
    respx.get(STATUS_URL).mock(
        return_value=status_answer("failed", failCode="CONTENT_VIOLATION", failMsg="The prompt violates the content policy.")
    )
    response = invoke("callback", callback_event("callback-failed"))
    assert response["statusCode"] == 200
    job = ctx.repo.get(JOB_ID)
    assert job.status == "failed"
    assert job.error.code == "content_violation"
    assert job.error.message == "The prompt violates the content policy."
    assert objects() == []


@pytest.mark.parametrize(
    ("fail_code", "expected"),
    [("INVALID_IMAGE_URL", "invalid_image_url"), ("SOMETHING_ELSE", "provider_error"), (None, "provider_error")],
)
@respx.mock
def test_fail_codes_are_mapped(ctx, fail_code, expected):
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer("failed", failCode=fail_code, failMsg="nope"))
    body = json.dumps(
        {"code": 200, "msg": "success", "data": {"taskId": TASK_ID, "state": "failed", "failCode": fail_code, "failMsg": "nope"}}
    )
    assert invoke("callback", callback_event(body=body))["statusCode"] == 200
    assert ctx.repo.get(JOB_ID).error.code == expected


@respx.mock
def test_bare_data_form_is_accepted(ctx):
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    bare = json.loads(load_event("callback-success")["body"])["data"]
    assert invoke("callback", callback_event(body=json.dumps(bare)))["statusCode"] == 200
    assert ctx.repo.get(JOB_ID).status == "succeeded"


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("", 401), ("garbage", 401), ("v1.AAAA", 401), ("v9.abc", 401), ("other-job", 401)],
)
@respx.mock
def test_bad_tokens_are_refused_and_touch_nothing(ctx, token, status):
    make_job(ctx)
    status_route = respx.get(STATUS_URL).mock(return_value=status_answer())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    if token == "other-job":
        token = make_callback_token("another-job-id", CALLBACK_KEYS)
    response = invoke("callback", callback_event(token=token))
    assert response["statusCode"] == status
    assert response["json"]["error"]["code"] == "unauthorized"
    assert not status_route.called and not download.called
    assert ctx.repo.get(JOB_ID).status == "in_progress"


def test_rotated_key_still_verifies_old_tokens(ctx, monkeypatch):
    import boto3 as _boto3

    from videogen import context as videogen_context

    make_job(ctx)
    old_token = make_callback_token(JOB_ID, CALLBACK_KEYS)
    _boto3.client("secretsmanager").put_secret_value(
        SecretId="videogen/callback-keys", SecretString=json.dumps({"active": "v2", "v2": "new-key", "v1": CALLBACK_KEYS["v1"]})
    )
    videogen_context.reset()
    with respx.mock:
        respx.get(STATUS_URL).mock(return_value=status_answer())
        respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
        assert invoke("callback", callback_event(token=old_token))["statusCode"] == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[]", "body"),
        ('{"code": 200, "data": {"state": "success"}}', "data.taskId"),
        ('{"code": 200, "data": {"taskId": "x"}}', "data.state"),
        (json.dumps({"data": {"taskId": TASK_ID, "state": "exploded"}}), "data.state"),
    ],
)
def test_malformed_payloads_get_400_and_change_nothing(ctx, body, field):
    make_job(ctx)
    response = invoke("callback", callback_event(body=body))
    assert response["statusCode"] == 400
    assert response["json"]["error"]["field"] == field
    assert ctx.repo.get(JOB_ID).status == "in_progress"


def test_body_over_the_cap_is_refused(ctx):
    make_job(ctx)
    response = invoke(
        "callback", callback_event(body=json.dumps({"data": {"taskId": TASK_ID, "state": "success", "pad": "x" * 70_000}}))
    )
    assert response["statusCode"] == 413
    assert ctx.repo.get(JOB_ID).status == "in_progress"


def test_task_id_mismatch_is_refused(ctx):
    make_job(ctx)
    body = json.dumps({"code": 200, "data": {"taskId": "someone-elses-task", "state": "failed", "failCode": "X"}})
    response = invoke("callback", callback_event(body=body))
    assert response["statusCode"] == 400
    assert response["json"]["error"]["code"] == "task_mismatch"
    assert ctx.repo.get(JOB_ID).status == "in_progress"


def test_unknown_job_with_valid_token_is_404(ctx):
    response = invoke("callback", callback_event(job_id="f" * 32))
    assert response["statusCode"] == 404


def test_callback_before_task_is_bound_asks_for_retry(ctx):
    make_job(ctx, provider_job_id=None)
    response = invoke("callback", callback_event())
    assert response["statusCode"] == 503
    assert ctx.repo.get(JOB_ID).status == "queued"


@respx.mock
def test_duplicate_callback_is_a_2xx_no_op(ctx):
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    first = invoke("callback", callback_event())
    stored = ctx.repo.get(JOB_ID)
    second = invoke("callback", callback_event())
    assert first["statusCode"] == second["statusCode"] == 200
    assert second["json"]["result"].startswith("ignored")
    assert download.call_count == 1
    assert ctx.repo.get(JOB_ID).model_dump() == stored.model_dump()
    assert objects() == [f"videos/{JOB_ID}.mp4"]


@respx.mock
def test_late_failed_callback_after_success_changes_nothing(ctx):
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    invoke("callback", callback_event())
    stored = ctx.repo.get(JOB_ID)
    response = invoke("callback", callback_event("callback-failed"))
    assert response["statusCode"] == 200
    assert ctx.repo.get(JOB_ID).model_dump() == stored.model_dump()


@respx.mock
def test_forged_success_is_checked_against_the_provider(ctx):
    # A success callback whose task the provider still reports as processing plants nothing.
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer("processing"))
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    response = invoke("callback", callback_event())
    assert response["statusCode"] == 503
    assert not download.called
    assert ctx.repo.get(JOB_ID).status == "in_progress"


@respx.mock
def test_transfer_failing_half_way_leaves_no_object_and_no_upload(ctx, monkeypatch):
    # Given a download that breaks after several MiB (more than one part was uploaded)
    monkeypatch.setenv("PART_SIZE_BYTES", str(5 * 1024 * 1024))
    from videogen import context as videogen_context

    videogen_context.reset()
    ctx = videogen_context.get_context()
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer())

    def broken_stream():
        yield mp4_bytes(6 * 1024 * 1024)
        yield b"\x00" * (4 * 1024 * 1024)
        raise httpx.ReadError("connection reset")

    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=broken_stream()))

    # When the callback arrives (no workflow configured to hand off to)
    response = invoke("callback", callback_event())

    # Then the provider is told to retry, no object or upload remains, the job is not succeeded
    assert response["statusCode"] == 502
    assert objects() == []
    assert open_uploads() == []
    job = ctx.repo.get(JOB_ID)
    assert job.status == "in_progress"
    assert job.store_lease_until is None


@respx.mock
def test_non_mp4_result_is_not_stored(ctx):
    make_job(ctx)
    respx.get(STATUS_URL).mock(return_value=status_answer())
    respx.get(RESULT_URL).mock(
        return_value=httpx.Response(200, content=b"<html>" + b"x" * 5000, headers={"content-type": "video/mp4"})
    )
    response = invoke("callback", callback_event())
    # Retrying cannot turn HTML into a video: the job fails now and the callback is acknowledged.
    assert response["statusCode"] == 200
    assert response["json"]["result"] == "failed"
    assert objects() == [] and open_uploads() == []
    job = ctx.repo.get(JOB_ID)
    assert job.status == "failed" and job.error.code == "download_failed"
