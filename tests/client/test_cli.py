"""The command line: argument parsing, request bodies, error rendering, retries and exit codes.

The API is mocked with respx (nothing leaves the process); the e2e tests run the installed
``videogen`` against the local stack.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import respx
from click.testing import CliRunner
from videogen_client import api as api_module
from videogen_client import cli as cli_module
from videogen_client.api import ApiClient, ApiError, Backoff, WaitTimeout, wait_for
from videogen_client.cli import cli
from videogen_client.display import error_line

from tests.conftest import mp4_bytes

API = "http://api.test"
JOB_ID = "0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b"
VIDEO_URL = "http://s3.test/videos/clip.mp4?X-Amz-Signature=abc"
MP4 = mp4_bytes(300_000)


def job(status: str = "in_progress", progress: int = 0, **fields) -> dict:
    body = {"id": JOB_ID, "status": status, "progress": progress, "route": "official", "model": "sora-2", "prompt": "p"}
    body.update(error=None, video=None, created_at="2026-12-02T09:00:00.000000Z")
    if status == "succeeded":
        body["video"] = {"bucket": "b", "key": f"videos/{JOB_ID}.mp4", "bytes": len(MP4), "url": VIDEO_URL}
    body.update(fields)
    return body


def run(*args: str, env: dict | None = None):
    """Run a command with the API given by flag; --no-sign unless the test says otherwise."""
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """No real sleeping: zero backoff, and waits that do not pause."""
    monkeypatch.setattr(api_module, "Backoff", lambda: Backoff(base=0.0, sleep=lambda _s: None))
    monkeypatch.setattr(api_module.time, "sleep", lambda _s: None)
    monkeypatch.delenv("VIDEOGEN_API_URL", raising=False)


@pytest.fixture
def api():
    with respx.mock(assert_all_called=False) as mock:
        yield mock


# ---- argument parsing -------------------------------------------------------------------


def test_create_sends_the_options_as_the_contracts_body(api, tmp_path: Path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nrest-of-png")
    route = api.post(f"{API}/videos").respond(202, json=job("queued"))

    result = run(
        "create", "A cat", "--route", "official", "--model", "sora-2", "--seconds", "8", "--size", "1280x720",
        "--image", str(image), "--metadata", '{"campaign": "autumn"}', "--idempotency-key", "k-1",
        "--webhook-url", "https://hooks.example.com/v", "--api", API, "--no-sign",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    sent = route.calls.last.request
    assert json.loads(sent.content) == {
        "prompt": "A cat",
        "route": "official",
        "model": "sora-2",
        "seconds": 8,
        "size": "1280x720",
        "image_base64": base64.b64encode(image.read_bytes()).decode(),
        "metadata": {"campaign": "autumn"},
        "webhook_url": "https://hooks.example.com/v",
    }
    assert sent.headers["idempotency-key"] == "k-1"
    assert "authorization" not in sent.headers
    assert JOB_ID in result.stdout and f"videogen wait {JOB_ID}" in result.stderr


def test_an_image_url_is_sent_as_image_url_and_only_given_fields_are_sent(api):
    route = api.post(f"{API}/videos").respond(202, json=job("queued"))
    result = run(
        "create", "A cat", "--image", "https://img.example.com/cat.png", "--orientation", "portrait", "--api", API, "--no-sign"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(route.calls.last.request.content) == {
        "prompt": "A cat",
        "orientation": "portrait",
        "image_url": "https://img.example.com/cat.png",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "1280x720", "--orientation", "portrait"], "--size or --orientation"),
        (["--metadata", "{not json"], "not JSON"),
        (["--metadata", "[1, 2]"], "JSON object"),
        (["--image", "/no/such/file.png"], "no such file"),
        (["--seconds", "eight"], "eight"),
        (["--out", "clip.mp4"], "--out needs --wait"),
        (["--wait", "--out", "/no/such/folder/clip.mp4"], "does not exist"),
        (["--api", "api.test"], "http(s) URL"),
        (["--api", API, "--stack", "videogen"], "not both"),
    ],
)
def test_usage_errors_exit_2_before_any_request(api, args: list[str], message: str):
    route = api.post(f"{API}/videos").respond(202, json=job("queued"))
    argv = ["create", "A cat", *args]
    if "--api" not in args:
        argv += ["--api", API]
    result = run(*argv, "--no-sign")
    assert result.exit_code == 2
    assert message in result.stderr
    assert not route.called


def test_the_api_comes_from_the_environment_or_is_asked_for(api):
    api.get(f"{API}/videos/{JOB_ID}").respond(200, json=job("queued"))
    assert run("get", JOB_ID, "--no-sign", env={"VIDEOGEN_API_URL": API}).exit_code == 0
    missing = run("get", JOB_ID, "--no-sign")
    assert missing.exit_code == 2 and "VIDEOGEN_API_URL" in missing.stderr


def test_an_oversized_image_file_is_refused_locally(api, tmp_path: Path):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * cli_module.MAX_IMAGE_UPLOAD_BYTES)
    result = run("create", "A cat", "--image", str(big), "--api", API, "--no-sign")
    assert result.exit_code == 2 and "https URL" in result.stderr


# ---- error rendering ----------------------------------------------------------------------

BAD_SECONDS = {
    "error": {
        "code": "invalid_request",
        "message": "seconds must be one of [4, 8, 12] for sora-2 on route official",
        "field": "seconds",
        "allowed": [4, 8, 12],
        "route": "official",
        "model": "sora-2",
    }
}


def test_a_4xx_is_one_line_with_the_message_field_and_allowed_values(api):
    api.post(f"{API}/videos").respond(400, json=BAD_SECONDS)

    result = run("create", "A cat", "--seconds", "5", "--api", API, "--no-sign")

    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "Error: seconds must be one of [4, 8, 12] for sora-2 on route official "
        "(field: seconds; allowed: 4, 8, 12) [HTTP 400 invalid_request]"
    ]
    assert result.stdout == ""


def test_a_4xx_with_json_is_one_document_on_stdout(api):
    api.post(f"{API}/videos").respond(400, json=BAD_SECONDS)
    result = run("create", "A cat", "--seconds", "5", "--api", API, "--no-sign", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"error": BAD_SECONDS["error"], "http_status": 400}


def test_gateway_refusals_get_a_hint_about_signing(api):
    api.get(f"{API}/videos").respond(403, json={"message": "Forbidden"})
    result = run("list", "--api", API, "--no-sign")
    assert result.exit_code == 2
    assert "Forbidden [HTTP 403 http_403]" in result.stderr and "drop --no-sign" in result.stderr


def test_a_provider_refusal_at_submit_is_a_failed_job_exit_1(api):
    refusal = {"error": {"code": "provider_rejected", "message": "content policy", "job_id": JOB_ID}}
    api.post(f"{API}/videos").respond(422, json=refusal)
    result = run("create", "A cat", "--api", API, "--no-sign")
    assert result.exit_code == 1 and f"job: {JOB_ID}" in result.stderr


def test_error_line_without_field_and_non_json_bodies():
    assert (
        error_line(ApiError(404, {"code": "not_found", "message": "job x not found"})) == "job x not found [HTTP 404 not_found]"
    )
    gateway = ApiError.from_response(httpx.Response(504, text="<html>Gateway Timeout</html>"), signed=True)
    assert gateway.code == "http_504" and "Gateway Timeout" in gateway.message


# ---- retries ------------------------------------------------------------------------------


def test_reads_are_retried_on_429_and_5xx_then_succeed(api):
    route = api.get(f"{API}/videos/{JOB_ID}")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
        httpx.ConnectError("reset"),
        httpx.Response(200, json=job("queued")),
    ]
    result = run("get", JOB_ID, "--api", API, "--no-sign", "--json")
    assert result.exit_code == 0, result.output
    assert route.call_count == 4 and json.loads(result.stdout)["id"] == JOB_ID


def test_reads_give_up_after_the_retries(api):
    route = api.get(f"{API}/videos").respond(500, json={"error": {"code": "internal_error", "message": "internal error"}})
    result = run("list", "--api", API, "--no-sign")
    assert result.exit_code == 2 and route.call_count == Backoff().retries + 1


def test_create_is_never_retried(api):
    route = api.post(f"{API}/videos").respond(503, json={"error": {"code": "internal_error", "message": "try later"}})
    result = run("create", "A cat", "--api", API, "--no-sign")
    assert result.exit_code == 2 and route.call_count == 1


def test_create_network_error_is_not_retried_and_says_what_to_check(api):
    route = api.post(f"{API}/videos").mock(side_effect=httpx.ConnectError("refused"))
    result = run("create", "A cat", "--idempotency-key", "k-9", "--api", API, "--no-sign")
    assert result.exit_code == 2 and route.call_count == 1
    assert "videogen list" in result.stderr and "same --idempotency-key" in result.stderr


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after():
    backoff = Backoff(base=1.0, cap=8.0)
    assert all(0 <= backoff.delay(n) <= min(8.0, 2**n) for n in range(6) for _ in range(20))
    assert backoff.delay(0, "5") >= 5.0
    assert backoff.delay(0, "120") == 8.0
    assert backoff.delay(0, "Wed, 21 Oct 2026 07:28:00 GMT") <= 1.0


# ---- wait, download, list, models: exit codes ---------------------------------------------


def test_wait_follows_to_succeeded_and_downloads(api, tmp_path: Path):
    api.get(f"{API}/videos/{JOB_ID}").side_effect = [
        httpx.Response(200, json=job("in_progress", 0)),
        httpx.Response(200, json=job("in_progress", 50)),
        httpx.Response(200, json=job("succeeded", 100)),
    ]
    api.get(VIDEO_URL).respond(200, content=MP4, headers={"Content-Length": str(len(MP4))})
    out = tmp_path / "clip.mp4"

    result = run("wait", JOB_ID, "--out", str(out), "--api", API, "--no-sign")

    assert result.exit_code == 0, result.output
    assert out.read_bytes() == MP4
    assert "50%" in result.stderr  # a line per change when stderr is not a terminal
    assert f"saved {out}" in result.stdout
    assert not list(tmp_path.glob(".*.part"))


def test_wait_on_a_failed_job_exits_1_with_its_error_code(api):
    failed = job("failed", 40, error={"code": "content_violation", "message": "refused by the provider"})
    api.get(f"{API}/videos/{JOB_ID}").respond(200, json=failed)
    result = run("wait", JOB_ID, "--api", API, "--no-sign")
    assert result.exit_code == 1 and "content_violation" in result.stderr


def test_wait_times_out_with_exit_3_and_says_how_to_resume(api):
    api.get(f"{API}/videos/{JOB_ID}").respond(200, json=job("in_progress", 10))
    result = run("wait", JOB_ID, "--timeout", "0", "--api", API, "--no-sign")
    assert result.exit_code == 3
    assert f"videogen wait {JOB_ID} --api {API} --no-sign" in result.stderr


def test_ctrl_c_while_waiting_exits_130_and_prints_the_resume_command(api, monkeypatch):
    api.get(f"{API}/videos/{JOB_ID}").respond(200, json=job("in_progress", 25))

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "wait_for", interrupted)
    result = run("wait", JOB_ID, "--out", "clip.mp4", "--api", API, "--no-sign")
    assert result.exit_code == 130
    assert f"Resume with: videogen wait {JOB_ID} --out clip.mp4 --api {API} --no-sign" in result.stderr


def test_download_refuses_unfinished_and_failed_jobs(api):
    route = api.get(f"{API}/videos/{JOB_ID}")
    route.return_value = httpx.Response(200, json=job("in_progress", 30))
    unfinished = run("download", JOB_ID, "--api", API, "--no-sign")
    assert unfinished.exit_code == 2 and f"videogen wait {JOB_ID}" in unfinished.stderr

    route.return_value = httpx.Response(200, json=job("failed", error={"code": "timed_out", "message": "too slow"}))
    failed = run("download", JOB_ID, "--api", API, "--no-sign")
    assert failed.exit_code == 1 and "timed_out" in failed.stderr


def test_download_that_is_not_an_mp4_leaves_nothing_and_is_retried_with_a_fresh_url(api, tmp_path: Path, monkeypatch):
    lookups = api.get(f"{API}/videos/{JOB_ID}").respond(200, json=job("succeeded", 100))
    page = b"<html>" + b"x" * (len(MP4) - 6)
    video = api.get(VIDEO_URL).respond(200, content=page)
    out = tmp_path / "clip.mp4"

    result = run("download", JOB_ID, "--out", str(out), "--api", API, "--no-sign")

    assert result.exit_code == 2 and "not an MP4" in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
    retries = Backoff().retries
    assert video.call_count == retries + 1 and lookups.call_count == retries + 1


def test_list_all_follows_next_token(api):
    route = api.get(f"{API}/videos")
    route.side_effect = [
        httpx.Response(200, json={"jobs": [job("succeeded", 100, id="a")], "next_token": "t1"}),
        httpx.Response(200, json={"jobs": [job("queued", id="b")], "next_token": None}),
    ]
    result = run("list", "--all", "--limit", "1", "--status", "succeeded", "--api", API, "--no-sign", "--json")
    assert result.exit_code == 0
    assert [j["id"] for j in json.loads(result.stdout)["jobs"]] == ["a", "b"]
    assert route.calls[1].request.url.params["next_token"] == "t1"
    assert route.calls[0].request.url.params["status"] == "succeeded" and route.calls[0].request.url.params["limit"] == "1"


def test_models_renders_the_catalog_and_explains_an_older_api(api):
    catalog = {
        "default_route": "task",
        "routes": {
            "official": {
                "default_model": "sora-2",
                "models": {
                    "sora-2": {
                        "seconds": [4, 8, 12],
                        "default_seconds": 4,
                        "sizes": ["720x1280", "1280x720"],
                        "default_size": "720x1280",
                        "image": {"formats": ["jpeg", "png"]},
                        "price": {"per_second": {"720x1280": 0.1, "1280x720": 0.1}},
                    }
                },
            }
        },
    }
    route = api.get(f"{API}/models")
    route.return_value = httpx.Response(200, json=catalog)
    result = run("models", "--api", API, "--no-sign")
    assert result.exit_code == 0
    assert "sora-2 *" in result.stdout and "4, 8, 12" in result.stdout and "$0.1 / s" in result.stdout

    route.return_value = httpx.Response(404, json={"error": {"code": "not_found", "message": "no such route"}})
    older = run("models", "--api", API, "--no-sign")
    assert older.exit_code == 2 and "predates GET /models" in older.stderr


def test_wait_for_polls_less_often_while_nothing_changes():
    states = iter([job("queued")] * 4 + [job("in_progress", 50)] + [job("succeeded", 100)])
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, json=next(states)))
    client = ApiClient(API, transport=transport)
    pauses: list[float] = []
    seen: list[str] = []
    final = wait_for(client, JOB_ID, timeout=None, on_update=lambda j: seen.append(j["status"]), sleep=pauses.append)
    assert final["status"] == "succeeded" and seen[-1] == "succeeded"
    assert pauses == [0.5, 0.75, 1.125, 1.6875, 0.5]


def test_wait_for_times_out_on_the_clock():
    client = ApiClient(API, transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=job("queued"))))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(WaitTimeout) as raised:
        wait_for(client, JOB_ID, timeout=2.0, on_update=lambda _j: None, clock=lambda: now[0], sleep=sleep)
    assert raised.value.job["status"] == "queued" and now[0] == pytest.approx(2.0)


def test_stack_reads_the_api_url_from_the_stacks_outputs(api, monkeypatch):
    # Given a CloudFormation stack (moto) whose ApiUrl output is the API
    from moto import mock_aws

    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiUrl": {"Value": API}},
    }
    route = api.get(f"{API}/videos/{JOB_ID}").respond(200, json=job("queued"))
    with mock_aws():
        import boto3

        boto3.client("cloudformation").create_stack(StackName="videogen", TemplateBody=json.dumps(template))

        # When a command names the stack instead of the URL
        result = run("wait", JOB_ID, "--timeout", "0", "--stack", "videogen", "--no-sign")
        missing = run("get", JOB_ID, "--stack", "nope", "--no-sign")

    # Then it talks to that API, and a follow-up command names the stack again
    assert route.called
    assert result.exit_code == 3 and f"videogen wait {JOB_ID} --stack videogen --no-sign" in result.stderr
    assert missing.exit_code == 2 and "cannot read stack 'nope'" in missing.stderr


def test_prompts_and_paths_are_shown_as_they_are(api, tmp_path: Path):
    # Given a job whose prompt looks like Rich markup and emoji codes
    odd = job("queued", prompt="[bold]a :smile: cat[/bold]")
    api.get(f"{API}/videos").respond(200, json={"jobs": [odd], "next_token": None})
    api.get(f"{API}/videos/{JOB_ID}").respond(200, json=odd)

    # Then the table, the JSON and a printed command keep them literally
    assert "[bold]a :smile: cat[/bold]" in run("list", "--api", API, "--no-sign", env={"COLUMNS": "160"}).stdout
    assert json.loads(run("get", JOB_ID, "--api", API, "--no-sign", "--json").stdout)["prompt"] == odd["prompt"]
    timed_out = run("wait", JOB_ID, "--timeout", "0", "--out", "[red]x.mp4", "--api", API, "--no-sign")
    assert "--out '[red]x.mp4'" in timed_out.stderr


def test_list_keeps_whole_ids_on_a_narrow_terminal(api):
    api.get(f"{API}/videos").respond(
        200, json={"jobs": [job("succeeded", 100, prompt="A long prompt " * 10)], "next_token": None}
    )
    narrow = run("list", "--api", API, "--no-sign", env={"COLUMNS": "60"}).stdout
    assert JOB_ID in narrow and "created" not in narrow and "A long prompt" in narrow
    wide = run("list", "--api", API, "--no-sign", env={"COLUMNS": "160"}).stdout
    assert "created" in wide and "official / sora-2" in wide
