"""Issue 10: no client input, however hostile, gets a 5xx, and a refused request writes nothing.

Every case goes through the real handlers (submit, status, callback) with moto behind them.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CALLBACK_KEYS, invoke, load_event
from videogen.models import Job
from videogen.operations.jobs import make_cursor
from videogen.security import make_callback_token

GENERATE = "https://task.provider.test/api/v1/generateTask/sora-2"
OK = {"code": 200, "data": {"taskId": "task-1"}}
DEEP = "[" * 5000 + "]" * 5000
HUGE_INT = '{"prompt": "a cat", "seconds": ' + "9" * 5000 + "}"


def submit_event(body: str | bytes, *, content_type: str | None = "application/json", base64_encoded: bool = False) -> dict:
    event = load_event("submit")
    headers = {k: v for k, v in event["headers"].items() if k.lower() != "content-type"}
    if content_type is not None:
        headers["content-type"] = content_type
    event["headers"] = headers
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode()
        base64_encoded = True
    event["body"] = body
    event["isBase64Encoded"] = base64_encoded
    return event


def all_jobs(ctx) -> list[Job]:
    return ctx.repo.list(limit=100)[0]


def objects(bucket: str = "videos") -> list[str]:
    import boto3

    return [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x", "image/png"])
@respx.mock
def test_a_body_that_is_not_json_is_415_naming_the_type(ctx, content_type):
    create = respx.post(GENERATE).mock(return_value=httpx.Response(200, json=OK))
    answer = invoke("submit", submit_event('{"prompt": "a cat"}', content_type=content_type))
    assert answer["statusCode"] == 415
    assert answer["json"]["error"]["code"] == "unsupported_media_type"
    assert content_type.split(";")[0] in answer["json"]["error"]["message"]
    assert not create.called and all_jobs(ctx) == []


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "application/json; charset=utf-8", "application/merge+json", None])
@respx.mock
def test_json_in_any_spelling_is_accepted(ctx, content_type):
    respx.post(GENERATE).mock(return_value=httpx.Response(200, json=OK))
    answer = invoke("submit", submit_event('{"prompt": "a cat", "route": "task"}', content_type=content_type))
    assert answer["statusCode"] == 202, answer["body"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"prompt": "caf\xe9"}', "UTF-8"),
        (b"\xff\xfe{}", "UTF-8"),
        (DEEP, "nests deeper"),
        ('{"a":' * 40 + "1" + "}" * 40, "nests deeper"),
        (HUGE_INT, "number too large"),
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
    ],
    ids=["latin1", "bom-garbage", "deep-5000", "deep-40", "5000-digits", "syntax", "empty"],
)
@respx.mock
def test_unreadable_bodies_are_400_naming_the_problem_and_write_nothing(ctx, body, words):
    create = respx.post(GENERATE).mock(return_value=httpx.Response(200, json=OK))
    answer = invoke("submit", submit_event(body))
    assert answer["statusCode"] == 400, answer["body"]
    assert answer["json"]["error"]["field"] == "body" and words in answer["json"]["error"]["message"]
    assert not create.called and all_jobs(ctx) == [] and objects() == []


def test_bad_base64_flag_is_400(ctx):
    answer = invoke("submit", submit_event("not base64 at all!", base64_encoded=True))
    assert answer["statusCode"] == 400 and "base64" in answer["json"]["error"]["message"]


# -- the callback, authenticated ---------------------------------------------------------------


def callback_event(job_id: str, body: str) -> dict:
    event = load_event("callback-success")
    token = make_callback_token(job_id, CALLBACK_KEYS)
    event["queryStringParameters"] = {"token": token}
    event["rawQueryString"] = f"token={token}"
    event["rawPath"] = f"/callbacks/{job_id}"
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"] = {"id": job_id}
    event["body"] = body
    return event


@pytest.mark.parametrize("body", [DEEP, '{"data": ' * 40 + "{}" + "}" * 40, HUGE_INT], ids=["deep", "deep-40", "digits"])
def test_an_authenticated_callback_with_a_hostile_body_is_400_and_changes_nothing(ctx, body):
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10)
    ctx.repo.create(job)
    ctx.repo.start(job.id, "task-1")
    before = ctx.repo.get(job.id).model_dump()
    answer = invoke("callback", callback_event(job.id, body))
    assert answer["statusCode"] == 400, answer["body"]
    assert ctx.repo.get(job.id).model_dump() == before


# -- list cursors --------------------------------------------------------------------------------


def list_event(**params: str) -> dict:
    event = load_event("status-list")
    event["queryStringParameters"] = params
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in params.items())
    return event


def add_jobs(ctx, n: int, owner: str = "anonymous") -> None:
    for i in range(n):
        job = Job.new(route="task", model="sora-2", prompt=f"cat {i}", seconds=10, owner=owner)
        ctx.repo.create(job.model_copy(update={"created_at": f"2026-11-22T02:00:{i:02d}.000000Z"}))


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(json.dumps({"id": "x", "list_pk": "anonymous", "created_at": "z"}).encode()).decode(),
        "e30.v1.forged",
        "a" * 2000,
    ],
    ids=["empty-object", "unsigned-key", "forged-mac", "long"],
)
def test_an_edited_or_forged_cursor_is_400(ctx, token):
    add_jobs(ctx, 3)
    answer = invoke("status", list_event(limit="1", next_token=token))
    assert answer["statusCode"] == 400
    assert answer["json"]["error"]["field"] == "next_token"


def test_a_cursor_is_bound_to_its_owner_and_filter(ctx):
    add_jobs(ctx, 3)
    page = invoke("status", list_event(limit="1"))["json"]
    token = page["next_token"]
    # Another status filter, or a cursor made for another owner's listing, is refused.
    assert invoke("status", list_event(limit="1", status="failed", next_token=token))["statusCode"] == 400
    foreign = make_cursor(
        {"id": "x", "list_pk": "someone", "created_at": "z"}, {"owner": "someone", "status": None}, CALLBACK_KEYS
    )
    assert invoke("status", list_event(limit="1", next_token=foreign))["statusCode"] == 400
    # The real one continues the listing.
    assert invoke("status", list_event(limit="1", next_token=token))["statusCode"] == 200


def test_a_page_is_capped_by_bytes_as_well_as_count(ctx):
    # Worst-case prompts: 10,000 control characters, each JSON-escaped to six bytes.
    for i in range(100):
        job = Job.new(route="task", model="sora-2", prompt="\x01" * 10_000, seconds=10)
        ctx.repo.create(job.model_copy(update={"created_at": f"2026-11-22T02:{i // 60:02d}:{i % 60:02d}.000000Z"}))
    seen: set[str] = set()
    token = None
    while True:
        params = {"limit": "100", **({"next_token": token} if token else {})}
        answer = invoke("status", list_event(**params))
        assert answer["statusCode"] == 200
        assert len(answer["body"].encode()) < 6_291_456 - 100_000  # Lambda's response limit, with room for headers
        seen.update(j["id"] for j in answer["json"]["jobs"])
        token = answer["json"]["next_token"]
        if token is None:
            break
    assert len(seen) == 100  # nothing skipped at a page boundary


# -- the property: arbitrary bytes, content types and shapes ---------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_values = st.fixed_dictionaries(
    {},
    optional={
        "prompt": json_values | st.text(max_size=50),
        "route": json_values | st.sampled_from(["task", "official", "legacy", "TASK"]),
        "model": json_values,
        "seconds": json_values | st.sampled_from(["8", "-1", "1e9", 10**30]),
        "size": json_values | st.just("1280x720"),
        "orientation": json_values,
        "image_url": json_values | st.just("http://169.254.169.254/x"),
        "image_base64": json_values | st.just("!!"),
        "metadata": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    json_values.map(json.dumps),
    field_values.map(json.dumps),
)
content_types = st.one_of(
    st.none(), st.sampled_from(["application/json", "text/plain", "APPLICATION/JSON", ""]), st.text(max_size=30)
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=content_types)
@respx.mock
def test_submit_never_answers_5xx_and_a_refusal_writes_nothing(ctx, body, content_type):
    # The provider refuses everything: a request that got that far must still end in a 4xx.
    respx.post(url__regex=r".*").mock(return_value=httpx.Response(400, json={"code": 400, "msg": "no"}))
    respx.get(url__regex=r".*").mock(return_value=httpx.Response(404))
    before = {j.id for j in all_jobs(ctx)}
    answer = invoke("submit", submit_event(body, content_type=content_type))
    assert answer["statusCode"] < 500, answer["body"]
    new = [j for j in all_jobs(ctx) if j.id not in before]
    # A request refused before the provider was asked leaves no job; one the provider refused
    # leaves a failed job that says so (never a job stuck queued or in progress).
    assert all(j.status == "failed" for j in new)
    if answer["statusCode"] != 422:
        assert new == []


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["status", "limit", "next_token", "x"]), st.text(max_size=60), max_size=4))
def test_list_never_answers_5xx(ctx, params):
    event = list_event(**params)
    event["rawQueryString"] = ""
    answer = invoke("status", event)
    assert answer["statusCode"] in (200, 400), answer["body"]


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_an_authenticated_callback_never_answers_5xx(ctx, body):
    job_id = "0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b"
    if ctx.repo.find(job_id) is None:
        job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10).model_copy(update={"id": job_id})
        ctx.repo.create(job)
        ctx.repo.start(job_id, "task-1")
    text = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    event = callback_event(job_id, text)
    event["isBase64Encoded"] = isinstance(body, bytes)
    with respx.mock:
        respx.get(url__regex=r".*").mock(return_value=httpx.Response(503))
        answer = invoke("callback", event)
    assert answer["statusCode"] < 500 or (answer["statusCode"] == 503 and answer["headers"].get("Retry-After")), answer["body"]
    assert ctx.repo.get(job_id).status == "in_progress"
