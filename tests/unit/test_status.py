"""GET /videos/{id} and GET /videos: the job JSON, presigned URLs, newest-first pages."""

from __future__ import annotations

import json
import time

import boto3

from tests.conftest import invoke, load_event
from videogen.models import Job, JobError, StoredVideo

JOB_ID = "0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b"


def get_event(job_id: str) -> dict:
    event = load_event("status-get")
    event["rawPath"] = f"/videos/{job_id}"
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"] = {"id": job_id}
    return event


def list_event(**params: str) -> dict:
    event = load_event("status-list")
    event["queryStringParameters"] = params
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in params.items())
    return event


def add_job(ctx, job_id: str | None = None, **fields) -> Job:
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10, **fields)
    if job_id:
        job = job.model_copy(update={"id": job_id})
    ctx.repo.create(job)
    time.sleep(0.002)  # distinct created_at values
    return job


def test_sample_event_returns_succeeded_job_with_presigned_url(ctx):
    add_job(ctx, JOB_ID)
    ctx.repo.start(JOB_ID, "task-1")
    boto3.client("s3").put_object(Bucket="videos", Key=f"videos/{JOB_ID}.mp4", Body=b"data")
    ctx.repo.succeed(JOB_ID, StoredVideo(bucket="videos", key=f"videos/{JOB_ID}.mp4", bytes=4))

    response = invoke("status", load_event("status-get"))

    assert response["statusCode"] == 200
    job = response["json"]
    assert job["id"] == JOB_ID and job["status"] == "succeeded" and job["progress"] == 100
    assert job["video"]["key"] == f"videos/{JOB_ID}.mp4" and job["video"]["bytes"] == 4
    assert f"videos/{JOB_ID}.mp4" in job["video"]["url"] and "Signature" in job["video"]["url"]
    assert job["video"]["url_expires_at"].endswith("Z")
    assert "store_lease_until" not in job and "expires_at" not in job
    for field in (
        "route",
        "model",
        "prompt",
        "seconds",
        "size",
        "provider_job_id",
        "created_at",
        "updated_at",
        "completed_at",
        "error",
        "cost",
        "metadata",
    ):
        assert field in job


def test_unknown_job_is_404(ctx):
    response = invoke("status", get_event("nope"))
    assert response["statusCode"] == 404
    assert response["json"]["error"]["code"] == "not_found"


def test_failed_job_shows_its_error(ctx):
    job = add_job(ctx)
    ctx.repo.fail(job.id, JobError(code="content_violation", message="no"))
    body = invoke("status", get_event(job.id))["json"]
    assert (
        body["status"] == "failed" and body["error"] == {"code": "content_violation", "message": "no"} and body["video"] is None
    )


def test_list_is_newest_first_and_paginates(ctx):
    ids = [add_job(ctx).id for _ in range(5)]
    first = invoke("status", list_event(limit="2"))["json"]
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    second = invoke("status", list_event(limit="2", next_token=first["next_token"]))["json"]
    third = invoke("status", list_event(limit="2", next_token=second["next_token"]))["json"]
    seen = [j["id"] for page in (first, second, third) for j in page["jobs"]]
    assert seen == ids[::-1]


def test_list_filters_by_status(ctx):
    a = add_job(ctx)
    b = add_job(ctx)
    ctx.repo.fail(a.id, JobError(code="provider_error", message="x"))
    failed = invoke("status", list_event(status="failed"))["json"]["jobs"]
    queued = invoke("status", list_event(status="queued"))["json"]["jobs"]
    assert [j["id"] for j in failed] == [a.id]
    assert [j["id"] for j in queued] == [b.id]


def test_sample_list_event(ctx):
    response = invoke("status", load_event("status-list"))
    assert response["statusCode"] == 200
    assert response["json"] == {"jobs": [], "next_token": None}


def test_bad_list_parameters_are_400(ctx):
    for params, field in (
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"next_token": "!!"}, "next_token"),
    ):
        response = invoke("status", list_event(**params))
        assert response["statusCode"] == 400, params
        assert response["json"]["error"]["field"] == field


def test_models_lists_the_catalog_with_the_deployments_defaults(aws, monkeypatch):
    # Given a deployment that adds a model through CatalogJson and makes it the official default
    from videogen import context as videogen_context

    extra = {"routes": {"official": {"models": {"successor-1": {"seconds": [5], "default_seconds": 5, "sizes": ["1920x1080"]}}}}}
    monkeypatch.setenv("CATALOG_JSON", json.dumps(extra))
    monkeypatch.setenv("DEFAULT_OFFICIAL_MODEL", "successor-1")
    videogen_context.reset()

    # When a client asks for the models
    response = invoke("status", load_event("status-models"))

    # Then it sees every route's models with what a request may ask for, and the defaults in force
    assert response["statusCode"] == 200
    catalog = response["json"]
    assert catalog["default_route"] == "task"
    assert set(catalog["routes"]) == {"task", "official", "legacy"}
    official = catalog["routes"]["official"]
    assert official["default_model"] == "successor-1"
    assert official["models"]["successor-1"]["seconds"] == [5]
    assert official["models"]["sora-2"]["seconds"] == [4, 8, 12]
    assert official["models"]["sora-2"]["sizes"] == ["720x1280", "1280x720"]
    assert catalog["routes"]["task"]["models"]["sora-2"]["orientations"] == ["landscape", "portrait"]
    # And not the provider-side model names
    assert all("provider_models" not in m for r in catalog["routes"].values() for m in r["models"].values())
