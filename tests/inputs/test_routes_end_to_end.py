"""All three routes x (text, image) to ``succeeded``, through the real handlers and the real ASL.

moto runs ``statemachine/job.asl.json`` (waits are zero); the providers are mocked with respx.
The legacy route runs its streaming call inside the workflow (``GenerateLegacy``, the store
function with ``action: legacy``) and its MP4 link goes straight to ``StoreVideo``.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import boto3
import httpx
import pytest
import respx

from local import stepfunctions as harness
from tests.inputs import imagefiles as img
from tests.workflow.conftest import (  # noqa: F401 - fixtures used by the tests below
    CDN,
    OFFICIAL,
    TASK,
    ctx,
    multipart_fields,
    sfn,
    stored_objects,
    submit,
    video,
)
from videogen.operations.generate import run_generation

LEGACY = "https://legacy.provider.test"
CHAT = f"{LEGACY}/v1/chat/completions"
SSE = {"content-type": "text/event-stream"}
SEED_STREAM = (Path(__file__).with_name("fixtures") / "seed001_stream.txt").read_bytes()
RESULT_URL = f"{CDN}/assets/sora/xxx.mp4"
VIDEO_ID = "video_1"
TASK_ID = "task-1"


def legacy_stream(*lines: str) -> bytes:
    """The seed's stream with its status lines replaced (and its link on our test CDN)."""
    head = SEED_STREAM.split(b"\n\n")[:2]  # the role chunk and the prompt echo
    chunks = [
        {"id": "foaicmpl-e2e", "choices": [{"index": 0, "delta": {"content": line}, "finish_reason": None}]} for line in lines
    ]
    chunks.append({"id": "foaicmpl-e2e", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"\n\n".join(head) + b"\n\n" + "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks).encode()
    return body + b"data: [DONE]\n\n"


SUCCESS_LINES = (
    "> ⌛️ Task is in queue, please wait patiently...\n\n",
    "> 🏃 Progress: 36.0%\n\n",
    "> 🏃 Progress: 78.0%\n\n",
    f"> ✅ Video generated successfully, [Click here]({RESULT_URL}) to view video~~~\n\n",
)


def mock_providers(mp4: bytes) -> dict[str, respx.Route]:
    task_data = {"taskId": TASK_ID, "state": "success", "resultJson": json.dumps({"resultUrls": [RESULT_URL]})}
    return {
        "task": respx.post(f"{TASK}/api/v1/generateTask/sora-2").mock(
            return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": TASK_ID}})
        ),
        "task-status": respx.get(f"{TASK}/api/v1/statusTask/sora-2").mock(
            return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": task_data})
        ),
        "official": respx.post(f"{OFFICIAL}/v1/videos").mock(
            return_value=httpx.Response(200, json={"id": VIDEO_ID, "object": "video", "status": "queued", "progress": 0})
        ),
        "official-status": respx.get(f"{OFFICIAL}/v1/videos/{VIDEO_ID}").mock(
            return_value=httpx.Response(200, json={"id": VIDEO_ID, "object": "video", "status": "completed", "progress": 100})
        ),
        "official-content": respx.get(f"{OFFICIAL}/v1/videos/{VIDEO_ID}/content").mock(
            return_value=httpx.Response(200, content=mp4)
        ),
        "legacy": respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=legacy_stream(*SUCCESS_LINES))),
        "cdn": respx.get(RESULT_URL).mock(return_value=httpx.Response(200, content=mp4)),
    }


BODIES = {
    "task": {"route": "task", "orientation": "portrait"},
    "official": {"route": "official", "size": "1280x720", "seconds": 4},
    "legacy": {"route": "legacy", "orientation": "landscape"},
}


@pytest.mark.parametrize("with_image", [False, True], ids=["text", "image"])
@pytest.mark.parametrize("route", ["task", "official", "legacy"])
@respx.mock
def test_every_route_and_input_reaches_succeeded(sfn, ctx, video, route, with_image):  # noqa: F811
    # Given providers that accept the job and produce the MP4
    routes = mock_providers(video)
    picture = img.png(1280, 720)
    body = {"prompt": "The scene comes alive", **BODIES[route]}
    if with_image:
        body["image_base64"] = img.b64(picture)

    # When a client submits the job and its workflow runs
    response = submit(body)
    assert response["statusCode"] == 202, response["body"]
    job_id = response["json"]["id"]
    assert sfn.wait(job_id)["status"] == "SUCCEEDED"

    # Then the job succeeded with the MP4 in S3, and the provider got the image in its own form
    job = ctx.repo.get(job_id)
    assert job.status == "succeeded" and job.progress == 100
    assert boto3.client("s3").get_object(Bucket="videos", Key=f"videos/{job_id}.mp4")["Body"].read() == video
    if route == "task":
        sent = json.loads(routes["task"].calls.last.request.content)["input"]
        assert ("image_urls" in sent) is with_image
    elif route == "official":
        assert ("input_reference" in multipart_fields(routes["official"].calls.last.request)) is with_image
    else:
        content = json.loads(routes["legacy"].calls.last.request.content)["messages"][0]["content"]
        assert [part["type"] for part in content] == (["text", "image_url"] if with_image else ["text"])
        if with_image:
            assert urlparse(content[1]["image_url"]["url"]).path.endswith(f"/inputs/{job_id}.png")
        assert job.provider_job_id == "foaicmpl-xxx"  # the id of the stream's first chunk
        assert job.cost.amount == 0.15
        assert harness.states_entered(sfn.history(job_id)) == ["Mode", "GenerateLegacy", "NextStep", "StoreVideo"]
    assert [o["Key"] for o in stored_objects() if o["Key"].startswith("videos/")] == [f"videos/{job_id}.mp4"]


@respx.mock
def test_legacy_progress_is_recorded_and_throttled(sfn, ctx, video, monkeypatch):  # noqa: F811
    # Given a stream with many progress lines (they arrive well within one throttle interval)
    mock_providers(video)
    lines = [f"> 🏃 Progress: {p}.0%\n\n" for p in range(5, 100, 5)]
    respx.post(CHAT).mock(
        return_value=httpx.Response(200, headers=SSE, content=legacy_stream(*lines, f"> ✅ [Click here]({RESULT_URL})\n\n"))
    )
    written: list[int] = []
    record = ctx.repo.record_progress
    monkeypatch.setattr(ctx.repo, "record_progress", lambda job_id, p: (written.append(p), record(job_id, p))[1])

    job_id = submit({"prompt": "cat", "route": "legacy"})["json"]["id"]
    assert sfn.wait(job_id)["status"] == "SUCCEEDED"

    # Then one DynamoDB write for 19 progress lines (the throttle), and the job ends at 100
    assert written == [5]
    assert ctx.repo.get(job_id).progress == 100


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (
            httpx.Response(
                200, headers=SSE, content=legacy_stream("> ❌ Generation failed: the image contains a real person\n\n")
            ),
            "content_violation",
            "❌ Generation failed: the image contains a real person",
        ),
        (
            httpx.Response(
                400, json={"error": {"message": "Your prompt was flagged by moderation", "type": "invalid_request_error"}}
            ),
            "content_violation",
            "Your prompt was flagged by moderation",
        ),
        (
            httpx.Response(401, json={"error": {"message": "Invalid token", "type": "authentication_error"}}),
            "provider_rejected",
            "Invalid token",
        ),
        (
            httpx.Response(200, headers=SSE, content=legacy_stream("> 🏃 Progress: 50.0%\n\n")[: -len(b"data: [DONE]\n\n")]),
            "provider_error",
            "ended without a video link",
        ),
        (httpx.Response(503, text="overloaded", headers={"Retry-After": "0"}), "provider_unavailable", "never reached"),
        (httpx.Response(502, text="bad gateway"), "submit_uncertain", "may exist"),
    ],
    ids=["failure-text", "moderation-400", "auth-401", "no-link", "down", "ambiguous-502"],
)
@respx.mock
def test_legacy_failures_fail_the_job_with_the_providers_words(sfn, ctx, video, answer, code, words):  # noqa: F811
    routes = mock_providers(video)
    routes["legacy"].mock(return_value=answer)

    job_id = submit({"prompt": "cat", "route": "legacy", "image_base64": img.b64(img.png())})["json"]["id"]

    assert sfn.wait(job_id)["status"] == "SUCCEEDED"  # the workflow ended cleanly: the job is terminal
    job = ctx.repo.get(job_id)
    assert job.status == "failed" and job.error.code == code and words in job.error.message
    assert harness.states_entered(sfn.history(job_id)) == ["Mode", "GenerateLegacy", "NextStep", "Finished"]
    assert not routes["cdn"].called and stored_objects() == [o for o in stored_objects() if o["Key"].startswith("inputs/")]


@respx.mock
def test_legacy_non_streamed_answer_succeeds(sfn, ctx, video):  # noqa: F811
    routes = mock_providers(video)
    answer = {
        "id": "chatcmpl-json",
        "choices": [{"message": {"content": f"> ✅ [Click here]({RESULT_URL})"}, "finish_reason": "stop"}],
    }
    routes["legacy"].mock(return_value=httpx.Response(200, json=answer))
    job_id = submit({"prompt": "cat", "route": "legacy"})["json"]["id"]
    assert sfn.wait(job_id)["status"] == "SUCCEEDED"
    assert ctx.repo.get(job_id).status == "succeeded"


@respx.mock
def test_legacy_call_is_never_made_twice_for_a_job(sfn, ctx, video):  # noqa: F811
    # Given a legacy job whose first run died mid-stream (the job is in progress, no video)
    routes = mock_providers(video)
    job_id = submit({"prompt": "cat", "route": "legacy"})["json"]["id"]
    assert sfn.wait(job_id)["status"] == "SUCCEEDED"
    assert routes["legacy"].call_count == 1

    # When the legacy task runs again for it (a retried invocation)
    outcome = run_generation(ctx, job_id, deadline=0.0)

    # Then it is a no-op on the finished job, and the chat call is not repeated
    assert outcome.phase == "succeeded" and routes["legacy"].call_count == 1


@respx.mock
def test_interrupted_legacy_job_fails_instead_of_paying_twice(sfn, ctx, video):  # noqa: F811
    from videogen.models import Job, JobStatus

    routes = mock_providers(video)
    job = Job.new(route="legacy", model="sora_video2", prompt="cat", seconds=10, size="704x1280", orientation="portrait")
    ctx.repo.create(job)
    ctx.repo.update(job.id, expect=(JobStatus.QUEUED,), status="in_progress")  # an earlier run claimed it, then died

    sfn.start(job.id, job_id=job.id, route="legacy")
    assert sfn.wait(job.id)["status"] == "SUCCEEDED"

    stored = ctx.repo.get(job.id)
    assert stored.status == "failed" and "cannot be resumed" in stored.error.message
    assert not routes["legacy"].called
