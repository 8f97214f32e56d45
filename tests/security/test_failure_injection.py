"""Failure injection on the callback path: every hostile input or fault ends in a known state.

Each case drives the real callback handler on moto and asserts the job's state and the
bucket's contents afterwards (and that no multipart upload and no store lease is left).
Cases that need the job workflow (lost callback, callback racing the poller, a transfer handed
off and failing for good) are in ``test_workflow_faults.py`` and ``tests/workflow/``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
import respx
from botocore.exceptions import ClientError

from local.dynamodb import atomic_dynamodb_requests
from tests.conftest import CALLBACK_KEYS, invoke, load_event, mp4_bytes
from tests.security.servers import NoNetwork, Resolver
from videogen import aws, observability
from videogen.models import Job
from videogen.operations.store import fail_job
from videogen.safe_http import SafeDownloader
from videogen.security import make_callback_token

TASK_ID = "task_sora2_1795312800_ab12cd"
RESULT_URL = "https://cdn.provider.test/results/ab12cd.mp4"
FORGED_URL = "https://cdn.provider.test/forged/planted.mp4"
STATUS_URL = "https://task.provider.test/api/v1/statusTask/sora-2"
MIB = 1024 * 1024


# -- the world ------------------------------------------------------------------------------


def new_job(ctx, *, bound: bool = True) -> Job:
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10, orientation="landscape")
    ctx.repo.create(job)
    if bound:
        ctx.repo.start(job.id, TASK_ID)
    return ctx.repo.get(job.id)


def task_body(state: str = "success", *, result_json: Any = None, urls: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"taskId": TASK_ID, "state": state, **extra}
    if state == "success":
        data["resultJson"] = json.dumps({"resultUrls": urls or [RESULT_URL]}) if result_json is None else result_json
    return {"code": 200, "message": "success", "data": data}


def provider_status(state: str = "success", **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=task_body(state, **kwargs))


def callback(job_id: str, body: Any = None, *, token: str | None = "valid", base64_body: bool = False) -> dict[str, Any]:
    event = load_event("callback-success")
    if token == "valid":
        token = make_callback_token(job_id, CALLBACK_KEYS)
    event["queryStringParameters"] = {"token": token} if token is not None else {}
    event["rawQueryString"] = f"token={token}" if token is not None else ""
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{job_id}"
    event["pathParameters"] = {"id": job_id}
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    if base64_body:
        event["isBase64Encoded"] = True
    return invoke("callback", event)


def objects() -> dict[str, int]:
    listing = boto3.client("s3").list_objects_v2(Bucket="videos")
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


def assert_outcome(ctx, job: Job, status: str, *, stored: bytes | None = None, error: str | None = None) -> Job:
    """The job's state, the bucket's contents, and nothing half-done left behind."""
    now = ctx.repo.get(job.id)
    assert now.status == status, now.error
    if error is not None:
        assert now.error is not None and now.error.code == error
    key = f"videos/{job.id}.mp4"
    if stored is None:
        assert objects() == {}
        assert now.video is None
    else:
        assert objects() == {key: len(stored)}
        assert boto3.client("s3").get_object(Bucket="videos", Key=key)["Body"].read() == stored
        assert now.video is not None and now.video.bytes == len(stored)
    assert boto3.client("s3").list_multipart_uploads(Bucket="videos").get("Uploads", []) == []
    assert now.store_lease_until is None
    return now


@pytest.fixture
def video() -> bytes:
    return mp4_bytes(200_000)


# -- duplicates, late and replayed callbacks --------------------------------------------------


@respx.mock
def test_duplicate_callbacks_in_sequence_store_once(ctx, video):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))

    answers = [callback(job.id) for _ in range(3)]

    assert [a["statusCode"] for a in answers] == [200, 200, 200]
    assert [a["json"]["result"] for a in answers] == [
        "succeeded",
        "ignored: job already finished",
        "ignored: job already finished",
    ]
    assert download.call_count == 1
    assert_outcome(ctx, job, "succeeded", stored=video)


@respx.mock
def test_duplicate_callbacks_at_once_store_once(ctx, video):
    # Given a download slow enough that every duplicate arrives while the first store runs
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    gate = threading.Event()

    def slow_download(request: httpx.Request) -> httpx.Response:
        gate.wait(0.5)
        return httpx.Response(200, content=video)

    download = respx.get(RESULT_URL).mock(side_effect=slow_download)

    # When eight copies of the callback arrive together
    with atomic_dynamodb_requests(), ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: callback(job.id), range(8)))
    gate.set()

    # Then all are acknowledged, exactly one stored, the rest yielded to it
    assert [a["statusCode"] for a in answers] == [200] * 8
    results = sorted(a["json"]["result"] for a in answers)
    assert results.count("succeeded") == 1
    assert set(results) <= {"succeeded", "store already running", "ignored", "ignored: job already finished"}
    assert download.call_count == 1
    assert_outcome(ctx, job, "succeeded", stored=video)


@respx.mock
def test_failed_after_success_changes_nothing(ctx, video):
    job = new_job(ctx)
    status = respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))
    assert callback(job.id)["json"]["result"] == "succeeded"
    before = ctx.repo.get(job.id)

    # When a "failed" callback follows (and even the provider now says failed)
    status.mock(return_value=provider_status("failed", failCode="CONTENT_VIOLATION", failMsg="late"))
    late = callback(job.id, task_body("failed", failCode="CONTENT_VIOLATION", failMsg="late"))

    assert late["statusCode"] == 200 and late["json"]["result"].startswith("ignored")
    assert ctx.repo.get(job.id).model_dump() == before.model_dump()
    assert_outcome(ctx, job, "succeeded", stored=video)


@respx.mock
def test_replay_after_a_terminal_state_is_a_no_op(ctx, video):
    # Given a job that already failed
    job = new_job(ctx)
    fail_job(ctx, job.id, "content_violation", "refused")
    status = respx.get(STATUS_URL).mock(return_value=provider_status())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))

    # When an old success callback is replayed
    replay = callback(job.id)

    # Then it is acknowledged and ignored: no provider call, no download, no object
    assert replay["statusCode"] == 200 and replay["json"]["status"] == "failed"
    assert not status.called and not download.called
    assert_outcome(ctx, job, "failed", error="content_violation")


# -- who may call back -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "missing",
        "",
        "v1.",
        "v1",
        "garbage",
        "active.x",
        "v1." + "A" * 43,
        "v2.whatever",
        "foreign",
        "removed-version",
        "v1." + "x" * 300,
    ],
)
@respx.mock
def test_bad_missing_and_foreign_tokens_are_401_before_anything_is_read(ctx, token):
    job = new_job(ctx)
    other = new_job(ctx)
    status = respx.get(STATUS_URL).mock(return_value=provider_status())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    value: str | None = {
        "missing": None,
        "foreign": make_callback_token(other.id, CALLBACK_KEYS),  # a real token, for another job
        "removed-version": make_callback_token(job.id, {"active": "v0", "v0": "an-old-key-no-longer-held"}),
    }.get(token, token)

    answer = callback(job.id, token=value)

    assert answer["statusCode"] == 401
    assert answer["json"]["error"] == {"code": "unauthorized", "message": "missing or invalid callback token"}
    assert not status.called and not download.called
    assert_outcome(ctx, job, "in_progress")


@pytest.mark.parametrize("body", ["{not json", "x" * 200_000, base64.b64encode(b"\xff\xfe").decode()])
def test_the_token_is_checked_before_the_body_and_the_job(ctx, body):
    # Whatever the body and whether the job exists, a wrong token learns nothing but 401.
    for job_id in (new_job(ctx).id, "f" * 32):
        assert callback(job_id, body, token="v1.wrong", base64_body=body.endswith("=")).get("statusCode") == 401


def test_tokens_rotate_without_breaking_jobs_in_flight(ctx):
    job = new_job(ctx)
    old = make_callback_token(job.id, CALLBACK_KEYS)
    secrets = boto3.client("secretsmanager")
    from videogen import context as videogen_context

    # v2 becomes active, v1 is still held: old tokens verify, new tokens are v2
    secrets.put_secret_value(
        SecretId="videogen/callback-keys", SecretString=json.dumps({"active": "v2", "v2": "k2", "v1": CALLBACK_KEYS["v1"]})
    )
    videogen_context.reset()
    with respx.mock:
        respx.get(STATUS_URL).mock(return_value=provider_status("processing"))
        assert callback(job.id, token=old)["statusCode"] == 503  # authenticated (not final yet)
    # v1 removed: the old token stops working
    secrets.put_secret_value(SecretId="videogen/callback-keys", SecretString=json.dumps({"active": "v2", "v2": "k2"}))
    videogen_context.reset()
    assert callback(job.id, token=old)["statusCode"] == 401
    assert_outcome(ctx, job, "in_progress")


@respx.mock
def test_the_token_is_never_logged(ctx, video, capsys, caplog):
    job = new_job(ctx)
    token = make_callback_token(job.id, CALLBACK_KEYS)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(side_effect=[httpx.Response(500), httpx.Response(200, content=video)])
    observability.logger.setLevel("DEBUG")
    caplog.set_level("DEBUG")
    try:
        assert callback(job.id, token=token)["statusCode"] == 502  # a logged failure path
        assert callback(job.id, token=token + "x")["statusCode"] == 401
        assert callback(job.id, "{bad", token=token)["statusCode"] == 400
        assert callback(job.id, token=token)["statusCode"] == 200
    finally:
        observability.logger.setLevel("WARNING")
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert logged, "the handlers logged nothing at DEBUG: this test would prove nothing"
    assert token.split(".", 1)[1] not in logged


@pytest.mark.parametrize("finished", [False, True], ids=["in-progress", "already-failed"])
@respx.mock
def test_task_id_mismatch_is_refused(ctx, video, finished):
    job = new_job(ctx)
    if finished:
        fail_job(ctx, job.id, "provider_error", "boom")
    status = respx.get(STATUS_URL).mock(return_value=provider_status())
    body = task_body()
    body["data"]["taskId"] = "someone-elses-task"
    answer = callback(job.id, body)
    assert answer["statusCode"] == 400 and answer["json"]["error"]["code"] == "task_mismatch"
    assert not status.called
    assert_outcome(ctx, job, "failed" if finished else "in_progress")


# -- forged success with a valid token (the callback is only a hint) -----------------------------


@respx.mock
def test_forged_success_while_the_provider_is_still_working_plants_nothing(ctx):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status("processing"))
    forged = respx.get(FORGED_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    answer = callback(job.id, task_body(urls=[FORGED_URL]))
    assert answer["statusCode"] == 503 and answer["headers"]["Retry-After"] == "30"
    assert not forged.called
    assert_outcome(ctx, job, "in_progress")


@respx.mock
def test_forged_success_stores_the_providers_result_never_the_forged_url(ctx, video):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    forged = respx.get(FORGED_URL).mock(return_value=httpx.Response(200, content=mp4_bytes(999)))
    real = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))
    assert callback(job.id, task_body(urls=[FORGED_URL]))["json"]["result"] == "succeeded"
    assert not forged.called and real.call_count == 1
    assert_outcome(ctx, job, "succeeded", stored=video)


@respx.mock
def test_forged_success_for_a_failed_task_fails_the_job_with_the_providers_error(ctx):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status("failed", failCode="CONTENT_VIOLATION", failMsg="policy"))
    forged = respx.get(FORGED_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))
    assert callback(job.id, task_body(urls=[FORGED_URL]))["json"]["result"] == "failed"
    assert not forged.called
    assert_outcome(ctx, job, "failed", error="content_violation")


# -- malformed payloads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("", "body"),
        ("null", "body"),
        ('"success"', "body"),
        ("[1, 2]", "body"),
        ("\ud800", "body"),
        (task_body(result_json={"resultUrls": [RESULT_URL]}), "data.resultJson"),  # not a string
        (task_body(result_json=12345), "data.resultJson"),
        (task_body(result_json="{not json"), "data.resultJson"),  # not JSON
        (task_body(result_json=json.dumps({"resultUrls": []})), "data.resultJson"),  # empty list
        (task_body(result_json=json.dumps({"resultUrls": [None, 7]})), "data.resultJson"),
        (task_body(result_json=json.dumps(["https://cdn.provider.test/x.mp4"])), "data.resultJson"),
        (task_body(result_json=""), "data.resultJson"),
        ({"code": 200, "data": {"taskId": TASK_ID, "state": "exploded"}}, "data.state"),
        ({"code": 200, "data": {"taskId": {"$ne": ""}, "state": "success"}}, "data.taskId"),
        ({"code": 200, "data": {"state": "success"}}, "data.taskId"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
@respx.mock
def test_malformed_payloads_are_400_and_change_nothing(ctx, body, field):
    job = new_job(ctx)
    status = respx.get(STATUS_URL).mock(return_value=provider_status())
    answer = callback(job.id, body)
    assert answer["statusCode"] == 400, answer["body"]
    assert answer["json"]["error"]["field"] == field
    assert not status.called
    assert_outcome(ctx, job, "in_progress")


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"data": "\xc3\x28"}'])
def test_bodies_that_are_not_utf8_or_base64_are_400(ctx, raw):
    job = new_job(ctx)
    assert callback(job.id, base64.b64encode(raw).decode(), base64_body=True)["statusCode"] == 400
    assert callback(job.id, "***not base64***", base64_body=True)["statusCode"] == 400
    assert_outcome(ctx, job, "in_progress")


@respx.mock
def test_a_base64_encoded_callback_is_accepted(ctx, video):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))
    encoded = base64.b64encode(json.dumps(task_body()).encode()).decode()
    assert callback(job.id, encoded, base64_body=True)["json"]["result"] == "succeeded"
    assert_outcome(ctx, job, "succeeded", stored=video)


def test_a_body_over_the_cap_is_413(ctx):
    job = new_job(ctx)
    body = task_body()
    body["pad"] = "x" * (64 * 1024)
    answer = callback(job.id, body)
    assert answer["statusCode"] == 413 and answer["json"]["error"]["code"] == "payload_too_large"
    assert_outcome(ctx, job, "in_progress")


# -- hostile result URLs (the provider's answer names them) ----------------------------------------


@pytest.fixture
def resolver(ctx) -> Resolver:
    """Names the world resolves (no DNS); the pipeline's downloader uses them."""
    table = Resolver({"internal.provider.test": ["10.0.0.7"], "metadata.provider.test": ["169.254.169.254"]})
    ctx.downloader = SafeDownloader(ctx.settings, resolver=table, network_backend=NoNetwork())  # type: ignore[arg-type]
    return table


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.provider.test/results/ab12cd.mp4",
        "file:///etc/passwd",
        "https://93.184.216.34/v.mp4",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://[::ffff:127.0.0.1]/v.mp4",
        "https://internal.provider.test/v.mp4",
        "https://metadata.provider.test/latest/meta-data/",
        "https://attacker.example/v.mp4",
    ],
)
@respx.mock
def test_unsafe_result_urls_fail_the_job_without_a_request(ctx, resolver, url):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status(urls=[url]))
    for host in ("internal.provider.test", "metadata.provider.test"):
        respx.route(host=host).pass_through()

    answer = callback(job.id, task_body(urls=[url]))

    assert answer["statusCode"] == 200 and answer["json"]["result"] == "failed"
    job_now = assert_outcome(ctx, job, "failed", error="download_failed")
    assert "refused" in job_now.error.message


@respx.mock
def test_a_redirect_to_a_private_host_fails_the_job(ctx, resolver):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(302, headers={"Location": "https://internal.provider.test/admin"}))
    respx.route(host="internal.provider.test").pass_through()

    assert callback(job.id)["json"]["result"] == "failed"

    job_now = assert_outcome(ctx, job, "failed", error="download_failed")
    assert "10.0.0.7" in job_now.error.message
    assert resolver.calls == ["internal.provider.test"]


# -- hostile or broken downloads -----------------------------------------------------------------


def _pieces(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
@respx.mock
def test_an_oversized_download_fails_the_job(ctx, monkeypatch, announced):
    from videogen import context as videogen_context

    monkeypatch.setenv("MAX_VIDEO_BYTES", str(6 * MIB))
    videogen_context.reset()
    ctx = videogen_context.get_context()
    job = new_job(ctx)
    body = mp4_bytes(12 * MIB)
    headers = {"Content-Length": str(len(body))} if announced else {}
    respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=_pieces(body), headers=headers))

    assert callback(job.id)["json"]["result"] == "failed"

    job_now = assert_outcome(ctx, job, "failed", error="download_failed")
    assert "cap" in job_now.error.message


@respx.mock
def test_html_served_as_video_mp4_fails_the_job(ctx):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    page = b"<!DOCTYPE html><html><body>Your download is ready</body></html>" * 100
    respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=page, headers={"Content-Type": "video/mp4"}))
    assert callback(job.id)["json"]["result"] == "failed"
    assert "not an MP4" in assert_outcome(ctx, job, "failed", error="download_failed").error.message


@pytest.mark.parametrize("status", [403, 410, 401])
@respx.mock
def test_a_result_that_is_gone_or_forbidden_fails_the_job(ctx, status):
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(return_value=httpx.Response(status, text="AccessDenied"))
    assert callback(job.id)["json"]["result"] == "failed"
    assert f"HTTP {status}" in assert_outcome(ctx, job, "failed", error="download_failed").error.message


@respx.mock
def test_a_truncated_download_stores_nothing_and_can_be_retried(ctx, video):
    # Given a result announced longer than what arrives (the connection closes early)
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    download = respx.get(RESULT_URL).mock(
        side_effect=[
            httpx.Response(200, content=_pieces(video[: len(video) // 2]), headers={"Content-Length": str(len(video))}),
            httpx.Response(200, content=video),
        ]
    )

    # When the callback arrives (no workflow to hand off to): the provider is asked to retry
    first = callback(job.id)
    assert first["statusCode"] == 502 and first["json"]["error"]["code"] == "download_failed"
    assert_outcome(ctx, job, "in_progress")

    # And the provider's retry stores the whole file
    assert callback(job.id)["json"]["result"] == "succeeded"
    assert download.call_count == 2
    assert_outcome(ctx, job, "succeeded", stored=video)


# -- provider faults while verifying ---------------------------------------------------------------


@pytest.mark.parametrize(
    "answers",
    [
        [httpx.Response(503)] * 3,
        [httpx.Response(429, headers={"Retry-After": "0"})] * 3,
        [httpx.Response(500), httpx.Response(502), httpx.Response(504)],
    ],
    ids=["503", "429", "5xx-mix"],
)
@respx.mock
def test_provider_429_and_5xx_while_verifying_leave_the_job_for_a_retry(ctx, video, answers):
    job = new_job(ctx)
    status = respx.get(STATUS_URL).mock(side_effect=[*answers, provider_status()])
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))

    first = callback(job.id)
    assert first["statusCode"] == 502 and first["json"]["error"]["code"] == "provider_unavailable"
    assert status.call_count == 3 and not download.called
    assert_outcome(ctx, job, "in_progress")

    assert callback(job.id)["json"]["result"] == "succeeded"
    assert_outcome(ctx, job, "succeeded", stored=video)


@respx.mock
def test_a_long_retry_after_is_not_cut_short(ctx):
    job = new_job(ctx)
    status = respx.get(STATUS_URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))
    answer = callback(job.id)
    assert answer["statusCode"] == 502
    assert answer["json"]["error"]["retry_after_seconds"] == 120
    assert status.call_count == 1  # not retried sooner than the provider asked
    assert_outcome(ctx, job, "in_progress")


# -- AWS faults ------------------------------------------------------------------------------------


@respx.mock
def test_s3_failing_mid_upload_leaves_no_partial_object_and_no_orphan_upload(ctx, monkeypatch):
    # Given an 11 MiB video and an S3 that refuses the second part once
    from videogen import context as videogen_context

    monkeypatch.setenv("PART_SIZE_BYTES", str(5 * MIB))
    videogen_context.reset()
    ctx = videogen_context.get_context()
    job = new_job(ctx)
    body = mp4_bytes(11 * MIB)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    respx.get(RESULT_URL).mock(side_effect=lambda request: httpx.Response(200, content=_pieces(body)))
    s3 = aws.client("s3")
    real_upload_part = s3.upload_part
    failures = []

    def flaky_upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2 and not failures:
            failures.append(kwargs["UploadId"])
            raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error."}}, "UploadPart")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", flaky_upload_part)

    # When the callback stores it: the upload fails half-way and is aborted
    first = callback(job.id)
    assert first["statusCode"] == 502 and first["json"]["error"]["code"] == "download_failed"
    assert failures and assert_outcome(ctx, job, "in_progress")

    # Then the provider's retry stores the whole video, once
    assert callback(job.id)["json"]["result"] == "succeeded"
    assert_outcome(ctx, job, "succeeded", stored=body)


@respx.mock
def test_a_conditional_conflict_during_the_store_keeps_the_other_writers_state(ctx, video):
    # Given a job that is failed by someone else (the workflow's deadline) while its video downloads
    job = new_job(ctx)
    respx.get(STATUS_URL).mock(return_value=provider_status())

    def download(request: httpx.Request) -> httpx.Response:
        assert fail_job(ctx, job.id, "timed_out", "the workflow's deadline passed")
        return httpx.Response(200, content=video)

    respx.get(RESULT_URL).mock(side_effect=download)

    # When the store finishes and its conditional write loses
    answer = callback(job.id)

    # Then the terminal state stands, and the object written for it is removed again
    assert answer["statusCode"] == 200 and answer["json"]["result"] == "ignored"
    assert_outcome(ctx, job, "failed", error="timed_out")


@respx.mock
def test_a_store_lease_held_elsewhere_makes_the_callback_yield(ctx, video):
    job = new_job(ctx)
    assert ctx.repo.claim_store(job.id, 600)
    respx.get(STATUS_URL).mock(return_value=provider_status())
    download = respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=video))
    answer = callback(job.id)
    assert answer["statusCode"] == 200 and answer["json"]["result"] == "store already running"
    assert not download.called
    assert ctx.repo.get(job.id).status == "in_progress" and objects() == {}


def test_conditional_writes_never_move_a_terminal_job(ctx):
    from videogen.models import StoredVideo

    job = new_job(ctx)
    assert ctx.repo.succeed(job.id, StoredVideo(bucket="videos", key=f"videos/{job.id}.mp4", bytes=1)) is not None
    assert ctx.repo.fail(job.id, __import__("videogen.models", fromlist=["JobError"]).JobError(code="x", message="y")) is None
    assert ctx.repo.start(job.id, "another-task") is None
    assert ctx.repo.record_progress(job.id, 5) is None
    assert not ctx.repo.claim_store(job.id, 60)
    assert ctx.repo.get(job.id).status == "succeeded"
