"""POST /videos with every input the seeds allow: each route x (text, image URL, uploaded image),
every invalid combination (4xx naming the allowed values, nothing left behind), costs, and a
catalog that gains models with no code change."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import boto3
import httpx
import pytest
import respx

from tests.conftest import invoke, load_event
from tests.inputs import imagefiles as img
from tests.workflow.conftest import multipart_fields

TASK = "https://task.provider.test"
OFFICIAL = "https://official.provider.test"
LEGACY = "https://legacy.provider.test"
IMAGES = "https://images.example.com"
MB = 1024 * 1024


@pytest.fixture
def workflow(aws, monkeypatch):
    """A state machine to start executions in (not executed here: tests/inputs/test_routes_end_to_end runs it)."""
    from videogen import context as videogen_context

    arn = boto3.client("stepfunctions").create_state_machine(
        name="jobs",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    videogen_context.reset()
    return arn


@pytest.fixture
def providers():
    """The three providers, accepting everything; the routes record what they were sent."""
    with respx.mock(assert_all_called=False) as mock:
        routes = {
            "task": mock.post(url__regex=rf"{TASK}/api/v1/generateTask/.+").mock(
                return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "task-1"}})
            ),
            "official": mock.post(f"{OFFICIAL}/v1/videos").mock(
                return_value=httpx.Response(200, json={"id": "video_1", "object": "video", "status": "queued", "progress": 0})
            ),
            "legacy": mock.post(f"{LEGACY}/v1/chat/completions"),
        }
        yield mock, routes


def submit(body: dict) -> dict:
    event = load_event("submit")
    event["body"] = json.dumps(body)
    return invoke("submit", event)


def jobs(ctx) -> list:
    return ctx.repo.list(limit=100)[0]


def inputs_in_bucket() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket="videos", Prefix="inputs/")
    return [o["Key"] for o in listing.get("Contents", [])]


def executions(arn: str) -> list[dict]:
    sfn = boto3.client("stepfunctions")
    return [
        sfn.describe_execution(executionArn=e["executionArn"]) for e in sfn.list_executions(stateMachineArn=arn)["executions"]
    ]


# -- each route x (text, image by URL, uploaded image) ----------------------------------------

ROUTE_BODIES = {
    "task": {"route": "task", "seconds": 10, "orientation": "landscape"},
    "official": {"route": "official", "model": "sora-2", "seconds": 8, "size": "1280x720"},
    "legacy": {"route": "legacy", "orientation": "landscape"},
}


@pytest.mark.parametrize("image", ["none", "url", "upload"])
@pytest.mark.parametrize("route", ["task", "official", "legacy"])
def test_every_route_takes_text_and_images(ctx, workflow, providers, route, image):
    mock, routes = providers
    picture = img.jpeg(1280, 720)
    body = {"prompt": "The scene comes alive", **ROUTE_BODIES[route]}
    if image == "url":
        mock.get(f"{IMAGES}/frame.jpg").mock(
            return_value=httpx.Response(200, content=picture, headers={"content-type": "image/jpeg"})
        )
        body["image_url"] = f"{IMAGES}/frame.jpg"
    elif image == "upload":
        body["image_base64"] = img.data_url(picture, "image/jpeg")

    response = submit(body)

    assert response["statusCode"] == 202, response["body"]
    job = response["json"]
    stored = ctx.repo.get(job["id"])
    if image == "none":
        assert job["input_image"] is None and inputs_in_bucket() == []
    else:
        # The checked image is kept at inputs/{id}.jpg and described on the job
        key = f"inputs/{job['id']}.jpg"
        assert job["input_image"] == {
            "bucket": "videos",
            "key": key,
            "bytes": len(picture),
            "content_type": "image/jpeg",
            "width": 1280,
            "height": 720,
            "source": image,
        }
        obj = boto3.client("s3").get_object(Bucket="videos", Key=key)
        assert obj["Body"].read() == picture and obj["ContentType"] == "image/jpeg"
        assert obj["Metadata"]["job-id"] == job["id"]

    if route == "task":
        assert stored.status == "in_progress" and stored.provider_job_id == "task-1"
        sent = json.loads(routes["task"].calls.last.request.content)["input"]
        assert sent["mode"] == ("text-to-video" if image == "none" else "image-to-video")
        if image != "none":
            # The provider fetches our checked copy through a presigned https GET URL
            (url,) = sent["image_urls"]
            parsed = urlparse(url)
            assert parsed.scheme == "https" and parsed.path.endswith(f"/inputs/{job['id']}.jpg")
            query = parse_qs(parsed.query)
            assert "Signature" in query or "X-Amz-Signature" in query
    elif route == "official":
        assert stored.status == "in_progress" and stored.provider_job_id == "video_1"
        fields = multipart_fields(routes["official"].calls.last.request)
        assert fields["model"] == b"sora-2" and fields["seconds"] == b"8" and fields["size"] == b"1280x720"
        if image == "none":
            assert "input_reference" not in fields
        else:
            assert fields["input_reference"] == picture
            assert f'filename="{job["id"]}.jpg"'.encode() in routes["official"].calls.last.request.content
    else:
        # Legacy: recorded and handed to the workflow, whose legacy task makes the streaming call
        assert stored.status == "queued" and stored.provider_job_id is None
        assert not routes["legacy"].called
        (execution,) = executions(workflow)
        assert execution["name"] == job["id"]
        assert json.loads(execution["input"])["route"] == "legacy"
        assert job["size"] == "1280x704" and job["orientation"] == "landscape"


def test_legacy_route_needs_the_workflow(ctx, providers):
    response = submit({"prompt": "cat", "route": "legacy"})
    assert response["statusCode"] == 500
    assert response["json"]["error"]["code"] == "not_configured"
    assert jobs(ctx) == []


# -- every invalid combination the seeds imply: 4xx naming the allowed values, nothing left behind --


def _served(mock, path: str, data: bytes) -> str:
    mock.get(f"{IMAGES}/{path}").mock(return_value=httpx.Response(200, content=data))
    return f"{IMAGES}/{path}"


INVALID = [
    # (case id, body, field, expected details subset)
    ("task-seconds-8", {"route": "task", "seconds": 8}, "seconds", {"allowed": [10, 15], "route": "task", "model": "sora-2"}),
    ("task-seconds-4", {"route": "task", "seconds": 4}, "seconds", {"allowed": [10, 15]}),
    ("official-seconds-10", {"route": "official", "seconds": 10}, "seconds", {"allowed": [4, 8, 12], "model": "sora-2"}),
    ("legacy-seconds-8", {"route": "legacy", "seconds": 8}, "seconds", {"allowed": [10, 15], "model": "sora_video2"}),
    (
        "sora-2-hd-size",
        {"route": "official", "model": "sora-2", "size": "1792x1024"},
        "size",
        {"allowed": ["720x1280", "1280x720"], "model": "sora-2"},
    ),
    (
        "pro-odd-size",
        {"route": "official", "model": "sora-2-pro", "size": "1920x1080"},
        "size",
        {"allowed": ["720x1280", "1280x720", "1024x1792", "1792x1024"]},
    ),
    ("legacy-size", {"route": "legacy", "size": "1280x720"}, "size", {"allowed": ["704x1280", "1280x704"]}),
    ("task-size", {"route": "task", "size": "1280x720"}, "size", {"allowed_orientations": ["landscape", "portrait"]}),
    (
        "size-vs-orientation",
        {"route": "official", "size": "1280x720", "orientation": "portrait"},
        "orientation",
        {"allowed": ["landscape"]},
    ),
    ("official-model", {"route": "official", "model": "sora_video2"}, "model", {"allowed": ["sora-2", "sora-2-pro"]}),
    ("legacy-model", {"route": "legacy", "model": "sora-2"}, "model", {"allowed": ["sora_video2"]}),
    ("two-images", {"route": "task", "image_url": f"{IMAGES}/a.png", "image_base64": "AAAA"}, "body", {}),
]


@pytest.mark.parametrize(("case", "body", "field", "details"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_combinations_are_400_naming_allowed_values(ctx, workflow, providers, case, body, field, details):
    _mock, routes = providers
    response = submit({"prompt": "cat", **body})
    assert response["statusCode"] == 400, response["body"]
    error = response["json"]["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == field
    assert details.items() <= error.items()
    assert jobs(ctx) == [] and inputs_in_bucket() == []
    assert not any(route.called for route in routes.values())


@pytest.mark.parametrize(
    ("case", "route_body", "image", "field", "details"),
    [
        (
            "official-image-size-differs",
            {"route": "official", "size": "1280x720"},
            ("url", img.png(720, 1280)),
            "image_url",
            {"allowed": ["1280x720"], "image_size": "720x1280"},
        ),
        (
            "official-upload-size-differs",
            {"route": "official", "model": "sora-2-pro", "size": "1792x1024"},
            ("upload", img.webp(1280, 720)),
            "image_base64",
            {"allowed": ["1792x1024"], "image_size": "1280x720"},
        ),
        ("gif-url", {"route": "task"}, ("url", img.gif()), "image_url", {"allowed": ["jpeg", "png", "webp"]}),
        ("gif-upload", {"route": "legacy"}, ("upload", img.gif()), "image_base64", {"allowed": ["jpeg", "png", "webp"]}),
        ("not-an-image", {"route": "task"}, ("url", b"<html>hello</html>"), "image_url", {"allowed": ["jpeg", "png", "webp"]}),
        ("11mb-url", {"route": "task"}, ("url", img.padded(img.png(), 11 * MB)), "image_url", {"max_bytes": 10 * MB}),
        (
            "11mb-upload",
            {"route": "official"},
            ("upload", img.padded(img.png(720, 1280), 11 * MB)),
            "image_base64",
            {"max_bytes": 3_000_000},
        ),
        ("5mb-upload", {"route": "task"}, ("upload", img.padded(img.png(), 5 * MB)), "image_base64", {"max_bytes": 3_000_000}),
    ],
    ids=lambda v: v if isinstance(v, str) and "-" in v else "",
)
def test_invalid_images_are_400_naming_the_rule(ctx, workflow, providers, case, route_body, image, field, details):
    mock, routes = providers
    kind, data = image
    body = {"prompt": "cat", **route_body}
    if kind == "url":
        body["image_url"] = _served(mock, "picture", data)
    else:
        body["image_base64"] = img.b64(data)
    response = submit(body)
    assert response["statusCode"] == 400, response["body"]
    error = response["json"]["error"]
    assert error["field"] == field
    assert details.items() <= error.items()
    assert error["route"] == route_body["route"]
    assert jobs(ctx) == [] and inputs_in_bucket() == []
    assert not any(route.called for route in routes.values())


def test_oversized_download_stops_at_the_cap(ctx, workflow, providers):
    mock, _routes = providers
    # Given a server that announces nothing and streams 11 MB
    sent = []

    def endless():
        for _ in range(11):
            sent.append(MB)
            yield img.padded(img.png(), MB) if not sent[1:] else b"\x00" * MB

    mock.get(f"{IMAGES}/big").mock(return_value=httpx.Response(200, content=endless()))
    response = submit({"prompt": "cat", "route": "task", "image_url": f"{IMAGES}/big"})
    assert response["statusCode"] == 400 and response["json"]["error"]["max_bytes"] == 10 * MB
    assert len(sent) <= 11 and jobs(ctx) == []


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        (f"{IMAGES}/missing.png", httpx.Response(404)),
        (f"{IMAGES}/unreachable.png", httpx.ConnectError("refused")),
        ("https://169.254.169.254/latest/meta-data/iam.png", None),
        ("https://127.0.0.1/internal.png", None),
        ("https://user:pass@images.example.com/x.png", None),
    ],
    ids=["404", "unreachable", "metadata-ip", "loopback", "credentials"],
)
def test_unusable_image_urls_are_invalid_image_url(ctx, workflow, providers, url, answer):
    mock, routes = providers
    if answer is not None:
        mock.get(url).mock(side_effect=answer) if isinstance(answer, Exception) else mock.get(url).mock(return_value=answer)
    response = submit({"prompt": "cat", "route": "task", "image_url": url})
    assert response["statusCode"] == 400, response["body"]
    error = response["json"]["error"]
    assert error["code"] == "invalid_image_url" and error["field"] == "image_url"
    assert jobs(ctx) == [] and not routes["task"].called


def test_http_image_url_is_refused_by_validation(ctx, providers):
    response = submit({"prompt": "cat", "route": "task", "image_url": "http://images.example.com/a.png"})
    assert response["statusCode"] == 400 and response["json"]["error"]["field"] == "image_url"


# -- a provider's refusal of the image becomes a clear job error ------------------------------


def test_official_refusal_of_a_face_is_a_content_violation(ctx, workflow, providers):
    _mock, routes = providers
    refusal = {"error": {"message": "Input image contains a real human face", "type": "invalid_request_error", "code": None}}
    routes["official"].mock(return_value=httpx.Response(400, json=refusal))
    response = submit({"prompt": "cat", "route": "official", "size": "1280x720", "image_base64": img.b64(img.png(1280, 720))})
    assert response["statusCode"] == 422
    job = ctx.repo.get(response["json"]["error"]["job_id"])
    assert job.status == "failed" and job.error.code == "content_violation"
    assert "real human face" in job.error.message


def test_task_refusal_with_moderation_words_is_a_content_violation(ctx, workflow, providers):
    _mock, routes = providers
    routes["task"].mock(return_value=httpx.Response(200, json={"code": 400, "msg": "image flagged by content moderation"}))
    response = submit({"prompt": "cat", "route": "task", "image_base64": img.b64(img.png())})
    job = ctx.repo.get(response["json"]["error"]["job_id"])
    assert job.error.code == "content_violation" and "moderation" in job.error.message


# -- costs recorded on each job -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "cost"),
    [
        ({"route": "official", "model": "sora-2", "size": "1280x720", "seconds": 8}, 0.8),
        ({"route": "official", "model": "sora-2", "seconds": 12}, 1.2),
        ({"route": "official", "model": "sora-2-pro", "size": "1280x720", "seconds": 4}, 1.2),
        ({"route": "official", "model": "sora-2-pro", "size": "1792x1024", "seconds": 12}, 6.0),
        ({"route": "legacy", "seconds": 15}, 0.15),
        ({"route": "legacy"}, 0.15),
    ],
)
def test_each_job_records_its_catalog_cost(ctx, workflow, providers, body, cost):
    response = submit({"prompt": "cat", **body})
    assert response["statusCode"] == 202, response["body"]
    assert response["json"]["cost"] == {
        "amount": cost,
        "currency": "USD",
        "basis": f"catalog:{body['route']}/{response['json']['model']}",
    }


def test_task_route_cost_is_unknown_until_configured(ctx, workflow, providers, monkeypatch):
    from videogen import context as videogen_context

    assert submit({"prompt": "cat", "route": "task"})["json"]["cost"] is None
    monkeypatch.setenv("CATALOG_JSON", json.dumps({"routes": {"task": {"models": {"sora-2": {"price": {"per_call": 0.2}}}}}}))
    videogen_context.reset()
    assert submit({"prompt": "cat", "route": "task"})["json"]["cost"]["amount"] == 0.2


# -- the catalog gains a model with no code change ------------------------------------------------

SUCCESSOR = {
    "routes": {
        "official": {
            "models": {
                "sora-3": {
                    "seconds": [5, 10, 20],
                    "default_seconds": 10,
                    "sizes": ["1280x720", "1920x1080", "1080x1920"],
                    "default_size": "1920x1080",
                    "image": {"must_match_size": True},
                    "price": {"per_second": {"1280x720": 0.2, "1920x1080": 0.4, "1080x1920": 0.4}},
                }
            }
        },
        "task": {
            "models": {
                "veo-4": {
                    "seconds": [8],
                    "default_seconds": 8,
                    "orientations": ["landscape", "portrait"],
                    "default_orientation": "landscape",
                    "image": None,
                    "price": {"per_call": 0.5},
                }
            }
        },
    }
}


@pytest.mark.parametrize("how", ["CATALOG_JSON", "CATALOG_FILE"])
def test_a_successor_model_is_one_catalog_entry(ctx, workflow, providers, monkeypatch, tmp_path, how):
    from videogen import context as videogen_context

    _mock, routes = providers
    if how == "CATALOG_JSON":
        monkeypatch.setenv("CATALOG_JSON", json.dumps(SUCCESSOR))
    else:
        path = tmp_path / "catalog.json"
        path.write_text(json.dumps(SUCCESSOR))
        monkeypatch.setenv("CATALOG_FILE", str(path))
    videogen_context.reset()

    # The new official model: its sizes, durations, image rule and prices apply
    response = submit(
        {"prompt": "cat", "route": "official", "model": "sora-3", "seconds": 20, "image_base64": img.b64(img.png(1920, 1080))}
    )
    assert response["statusCode"] == 202, response["body"]
    job = response["json"]
    assert (job["model"], job["size"], job["seconds"]) == ("sora-3", "1920x1080", 20)
    assert job["cost"]["amount"] == 8.0
    assert multipart_fields(routes["official"].calls.last.request)["model"] == b"sora-3"
    # ... and its errors name its own allowed values
    error = submit({"prompt": "cat", "route": "official", "model": "sora-3", "seconds": 4})["json"]["error"]
    assert error["allowed"] == [5, 10, 20]
    error = submit({"prompt": "cat", "route": "official", "model": "nope"})["json"]["error"]
    assert error["allowed"] == ["sora-2", "sora-2-pro", "sora-3"]

    # The new task model is addressed in the path; it takes no image
    assert submit({"prompt": "cat", "route": "task", "model": "veo-4"})["statusCode"] == 202
    assert routes["task"].calls.last.request.url.path == "/api/v1/generateTask/veo-4"
    error = submit({"prompt": "cat", "route": "task", "model": "veo-4", "image_base64": img.b64(img.png())})["json"]["error"]
    assert error["field"] == "image_base64" and "takes no image" in error["message"]

    # The built-in models are still there, unchanged
    assert submit({"prompt": "cat", "route": "official", "model": "sora-2", "size": "1792x1024"})["json"]["error"]["allowed"] == [
        "720x1280",
        "1280x720",
    ]


def test_a_default_model_switch_is_configuration(ctx, workflow, providers, monkeypatch):
    from videogen import context as videogen_context

    monkeypatch.setenv("CATALOG_JSON", json.dumps(SUCCESSOR))
    monkeypatch.setenv("DEFAULT_OFFICIAL_MODEL", "sora-3")
    videogen_context.reset()
    job = submit({"prompt": "cat", "route": "official"})["json"]
    assert (job["model"], job["size"], job["seconds"]) == ("sora-3", "1920x1080", 10)
