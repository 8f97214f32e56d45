"""Each provider route end to end over real HTTP: API -> handlers -> simulator -> S3/DynamoDB."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import httpx
import pytest

from local.dev import curl_examples
from local.simulator import SAMPLE_MP4
from tests.e2e.helpers import E2E, SAMPLE_SHA256

ROUTE_REQUESTS = {
    "task": {"route": "task", "seconds": 10, "orientation": "portrait", "metadata": {"case": "e2e"}},
    "official": {"route": "official", "model": "sora-2", "seconds": 8, "size": "1280x720"},
    "legacy": {"route": "legacy", "model": "sora_video2", "orientation": "landscape"},
}


def assert_stored_once(e2e: E2E, job: dict) -> None:
    """The job's MP4 is in S3 exactly once, byte for byte the provider's, and nothing is left half-done."""
    video = job["video"]
    assert video["key"] == f"videos/{job['id']}.mp4"
    assert video["bytes"] == SAMPLE_MP4.stat().st_size
    assert [o["Key"] for o in e2e.objects_for(job["id"])] == [video["key"]]
    head = e2e.aws("s3").head_object(Bucket=video["bucket"], Key=video["key"])
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["job-id"] == job["id"]
    assert hashlib.sha256(e2e.stored_bytes(video["key"])).hexdigest() == SAMPLE_SHA256
    assert not [u for u in e2e.open_uploads() if job["id"] in u["Key"]]


@pytest.mark.parametrize("route", ["task", "official", "legacy"])
def test_route_runs_to_succeeded(e2e: E2E, route: str) -> None:
    # Given a prompt for this route
    prompt = e2e.prompt(f"A lighthouse in a storm, {route} route")

    # When it is submitted through the HTTP API
    answer = e2e.submit({"prompt": prompt, **ROUTE_REQUESTS[route]})

    # Then it is accepted with a Location, and it ends succeeded with the MP4 stored once
    assert answer.status_code == 202, answer.text
    submitted = answer.json()
    assert answer.headers["location"] == f"/videos/{submitted['id']}"
    assert submitted["route"] == route and submitted["status"] in ("queued", "in_progress")
    job = e2e.wait(submitted["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 100 and job["error"] is None and job["completed_at"]
    assert_stored_once(e2e, job)

    # And the presigned URL serves the video over HTTP
    download = httpx.get(job["video"]["url"], timeout=30)
    assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == SAMPLE_SHA256

    # And the provider saw exactly one job for the prompt, fetched once
    provider_jobs = e2e.sim_jobs(prompt)
    assert len(provider_jobs) == 1
    assert provider_jobs[0]["id"] == job["provider_job_id"]
    assert provider_jobs[0]["completed_downloads"] == 1


def test_task_route_is_finished_by_its_callback(e2e: E2E) -> None:
    # Given a task-route job
    job_id = e2e.submit({"prompt": e2e.prompt("A fox in the snow"), "route": "task"}).json()["id"]

    # When it finishes
    job = e2e.wait(job_id)

    # Then the provider's callback stored the video: answered 200 "succeeded" (with zero generation
    # time it may first outrun submit's write of the taskId: 503 not_ready, retried by the provider)
    callbacks = e2e.sim_job(job["provider_job_id"])["callbacks"]
    *early, last = callbacks
    assert last["status"] == 200 and last["body"]["result"] == "succeeded"
    assert all(c["status"] == 503 and c["body"]["error"]["code"] == "not_ready" for c in early)


def test_list_shows_the_jobs_newest_first(e2e: E2E) -> None:
    ids = [e2e.submit({"prompt": e2e.prompt(f"Listing {n}"), "route": "task"}).json()["id"] for n in range(2)]
    listing = e2e.api.get("/videos", params={"limit": 100})
    assert listing.status_code == 200
    listed = [job["id"] for job in listing.json()["jobs"]]
    assert listed.index(ids[1]) < listed.index(ids[0])
    for job_id in ids:
        e2e.wait(job_id)


def test_bad_request_is_a_clear_400_and_leaves_nothing(e2e: E2E) -> None:
    # Given the jobs so far
    before = {job["id"] for job in e2e.api.get("/videos", params={"limit": 100}).json()["jobs"]}
    prompt = e2e.prompt("Five seconds is not on the menu")

    # When a request asks the official route for a duration it does not offer
    answer = e2e.submit({"prompt": prompt, "route": "official", "model": "sora-2", "seconds": 5})

    # Then the answer names the field and the allowed values, and no job or provider call exists
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["field"] == "seconds" and error["allowed"] == [4, 8, 12]
    after = {job["id"] for job in e2e.api.get("/videos", params={"limit": 100}).json()["jobs"]}
    assert after == before
    assert e2e.sim_jobs(prompt) == [] and e2e.submit_attempts("official", prompt) == 0


def test_gateway_answers_like_api_gateway(e2e: E2E) -> None:
    assert e2e.api.get("/nowhere").status_code == 404
    assert e2e.api.get("/videos/0123456789abcdef0123456789abcdef").json()["error"]["code"] == "not_found"
    forged = e2e.api.post("/callbacks/0123456789abcdef0123456789abcdef", params={"token": "v1.forged"}, json={"code": 200})
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthorized"


def test_dev_curl_examples_work_as_written(e2e: E2E, tmp_path: Path) -> None:
    # Given the commands `make dev` prints, for this stack's API
    script = "set -euo pipefail\n" + "\n".join(command for _comment, command in curl_examples(e2e.info["api_url"]))

    # When they run, in order, in one bash shell
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    # Then every one succeeds: the job ends succeeded and video.mp4 is the MP4
    assert run.returncode == 0, run.stderr + run.stdout
    assert "succeeded" in run.stdout
    assert '"field":"seconds"' in run.stdout.replace(" ", "")
    video = tmp_path / "video.mp4"
    assert hashlib.sha256(video.read_bytes()).hexdigest() == SAMPLE_SHA256


def test_idempotency_key_over_http_returns_the_first_job(e2e: E2E) -> None:
    # Given a submit with an Idempotency-Key
    body = {"prompt": e2e.prompt("A kite over the dunes"), "route": "task"}
    key = {"Idempotency-Key": f"e2e-{body['prompt'][-8:]}"}
    first = e2e.submit(body, headers=key)
    assert first.status_code == 202, first.text

    # When the client repeats it, and then reuses the key for another body
    again = e2e.submit(body, headers=key)
    reused = e2e.submit({**body, "prompt": body["prompt"] + " at night"}, headers=key)

    # Then the repeat is the first answer (one provider job), and the reuse is refused clearly
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert reused.status_code in (409, 422) and reused.json()["error"]["code"]
    assert len(e2e.sim_jobs(body["prompt"])) == 1
    assert e2e.wait(first.json()["id"])["status"] == "succeeded"
