"""The local stack's parts on their own (no stack needed): simulator protocol, gateway mapping,
template reading, and the settings rule that keeps plain-http callbacks to the local stack."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import ValidationError

from local import simulator
from local import template as cfn
from local.gateway import compile_route, http_event, http_response
from videogen.settings import Settings

KEY = {"Authorization": f"Bearer {simulator.SimConfig.api_key}"}


@pytest.fixture
def sim() -> Iterator[simulator.SimulatorServer]:
    server = simulator.start(simulator.SimConfig(generation_seconds=0.4, callback_retry_delays=(0.1, 0.2)))
    yield server
    simulator.stop(server)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict], list[int]]]:
    """A callback receiver answering the queued statuses (then 200); records the bodies."""
    bodies: list[dict] = []
    statuses: list[int] = []

    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/callbacks/job", bodies, statuses
    server.shutdown()
    server.server_close()


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_task_api_wraps_answers_and_calls_back_with_result_json_as_a_string(sim, receiver) -> None:
    url, bodies, statuses = receiver
    statuses.append(503)  # the first delivery is refused: the provider must retry
    created = httpx.post(
        f"{sim.url}/api/v1/generateTask/sora-2",
        headers=KEY,
        json={
            "request_type": "callback",
            "callback_url": url,
            "provider": "official",
            "input": {"prompt": "a cat", "duration": 10},
        },
    )
    assert created.status_code == 200
    task_id = created.json()["data"]["taskId"]
    status = httpx.get(f"{sim.url}/api/v1/statusTask/sora-2", params={"taskId": task_id}, headers=KEY).json()
    assert status["code"] == 200 and status["data"]["state"] in ("pending", "processing")

    wait_for(lambda: len(bodies) == 2)
    first, retried = bodies
    assert first == retried
    assert first["code"] == 200 and first["message"] == "success"
    data = first["data"]
    assert data["taskId"] == task_id and data["state"] == "success" and isinstance(data["resultJson"], str)
    [result_url] = json.loads(data["resultJson"])["resultUrls"]
    video = httpx.get(result_url)
    assert video.status_code == 200 and video.content == simulator.SAMPLE_MP4.read_bytes()


def test_every_api_checks_the_bearer_key_in_its_own_error_shape(sim) -> None:
    task = httpx.post(f"{sim.url}/api/v1/generateTask/sora-2", json={"input": {"prompt": "x"}})
    assert task.status_code == 401 and task.json()["code"] == 401
    official = httpx.get(f"{sim.url}/v1/videos/video_x", headers={"Authorization": "Bearer wrong"})
    assert official.status_code == 401 and official.json()["error"]["type"] == "authentication_error"


def test_official_content_is_404_until_the_video_is_ready(sim) -> None:
    sim.sim.config.generation_seconds = 3.0  # long enough to look at it before it is ready
    created = httpx.post(f"{sim.url}/v1/videos", headers=KEY, data={"model": "sora-2", "prompt": "a dog", "seconds": "4"})
    assert created.status_code == 200 and created.json()["status"] == "queued"
    video_id = created.json()["id"]
    early = httpx.get(f"{sim.url}/v1/videos/{video_id}/content", headers=KEY)
    assert early.status_code == 404 and early.json()["error"]["code"] == "video_not_ready"
    assert "openai-poll-after-ms" in httpx.get(f"{sim.url}/v1/videos/{video_id}", headers=KEY).headers
    wait_for(lambda: httpx.get(f"{sim.url}/v1/videos/{video_id}", headers=KEY).json()["status"] == "completed", timeout=10)
    content = httpx.get(f"{sim.url}/v1/videos/{video_id}/content", headers=KEY)
    assert content.status_code == 200 and content.content[4:8] == b"ftyp"
    bad = httpx.post(f"{sim.url}/v1/videos", headers=KEY, data={"model": "sora-2", "prompt": "a dog", "seconds": "5"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "seconds"


def test_legacy_stream_is_shaped_like_seed_001(sim) -> None:
    body = {
        "model": "sora_video2",
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}],
    }
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", headers=KEY, json=body) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "sora_video2" for c in chunks)
    texts = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1]]
    assert texts[0].startswith("```json\n") and '"mode": "Vertical Mode"' in texts[0]
    assert texts[1] == "> ⌛️ Task is in queue, please wait patiently...\n\n"
    assert any(t.startswith("> 🏃 Progress: ") and t.endswith("%\n\n") for t in texts)
    assert texts[-1].startswith("> ✅ Video generated successfully, [Click here](") and ".mp4) to view video~~~" in texts[-1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] > 0


def test_fault_markers_are_checked(sim) -> None:
    assert simulator.parse_faults("x [fault:not_mp4] [fault:rate_limited=3]") == {"not_mp4": 1, "rate_limited": 3}
    unknown = httpx.post(f"{sim.url}/api/v1/generateTask/sora-2", headers=KEY, json={"input": {"prompt": "x [fault:nope]"}})
    assert unknown.status_code == 400 and "unknown fault" in unknown.json()["msg"]


def test_gateway_builds_http_api_v2_events_and_maps_answers() -> None:
    route = compile_route("GET", "/videos/{id}", "StatusFunction")
    match = route.pattern.fullmatch("/videos/abc")
    assert match and not route.pattern.fullmatch("/videos/abc/def")
    event = http_event(
        "GET",
        "/videos/abc?a=1&a=2&b=",
        [("Host", "x"), ("Cookie", "c=1; d=2"), ("X-Multi", "1"), ("x-multi", "2")],
        b"",
        route,
        match.groupdict(),
        "127.0.0.1:3000",
        "127.0.0.1",
    )
    assert event["routeKey"] == "GET /videos/{id}" and event["pathParameters"] == {"id": "abc"}
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""} and event["rawQueryString"] == "a=1&a=2&b="
    assert event["headers"]["x-multi"] == "1,2" and event["cookies"] == ["c=1", "d=2"]
    assert event["requestContext"]["domainName"] == "127.0.0.1:3000" and "body" not in event
    binary = http_event("POST", "/videos/abc", [("Content-Type", "image/png")], b"\x89PNG", route, {}, "d", "ip")
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\x89PNG"

    status, headers, raw = http_response(
        {"statusCode": 202, "headers": {"Location": "/videos/1"}, "body": "{}", "cookies": ["s=1"]}
    )
    assert (status, raw) == (202, b"{}") and ("Location", "/videos/1") in headers and ("Set-Cookie", "s=1") in headers
    assert http_response({"statusCode": 200, "body": base64.b64encode(b"mp4").decode(), "isBase64Encoded": True})[2] == b"mp4"
    assert http_response({"ok": True}) == (200, [("Content-Type", "application/json")], b'{"ok": true}')


def test_template_drives_the_local_stack() -> None:
    functions = cfn.functions()
    routes = {route for f in functions.values() for route in f.http_routes}
    assert {("POST", "/videos"), ("GET", "/videos"), ("GET", "/videos/{id}"), ("POST", "/callbacks/{id}")} <= routes
    for machine in cfn.state_machines().values():
        text = machine.definition_path.read_text()
        names = cfn.Names(refs={}, attributes={(f, "Arn"): f"arn:{f}" for f in functions})
        substituted = cfn.substitute_definition(text, {k: cfn.resolve(v, names) for k, v in machine.substitutions.items()})
        json.loads(substituted)
        assert "${" not in substituted
    names = cfn.Names(refs={"A": "a", "Flag": "on"}, attributes={("F", "Arn"): "arn:f"})
    assert cfn.resolve({"Fn::Sub": "${A}-${F.Arn}-${AWS::Region}"}, names) == "a-arn:f-us-east-1"
    assert cfn.resolve({"Fn::Join": ["/", [{"Ref": "A"}, "b"]]}, names) == "a/b"
    with pytest.raises(KeyError):
        cfn.resolve({"Ref": "Missing"}, names)


@pytest.mark.parametrize("url", ["https://videos.example.com", "http://127.0.0.1:3000", "http://localhost:3000/", ""])
def test_public_base_url_accepts_https_and_loopback_http(url: str) -> None:
    assert Settings(public_base_url=url).public_base_url == url


@pytest.mark.parametrize(
    "url", ["http://videos.example.com", "http://10.0.0.5:3000", "ftp://x", "https://", "videos.example.com"]
)
def test_public_base_url_refuses_plain_http_elsewhere(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(public_base_url=url)


def test_faults_can_be_armed_for_the_next_jobs_of_a_route(sim) -> None:
    armed = httpx.post(f"{sim.url}/_sim/faults", json={"faults": ["not_mp4"], "route": "official", "jobs": 1})
    assert armed.status_code == 200
    assert httpx.post(f"{sim.url}/_sim/faults", json={"faults": ["nope"]}).status_code == 400
    httpx.post(f"{sim.url}/_sim/config", json={"generation_seconds": 0})
    form = {"model": "sora-2", "prompt": "a dog", "seconds": "4"}
    faulted, clean = (httpx.post(f"{sim.url}/v1/videos", headers=KEY, data=form).json()["id"] for _ in range(2))
    assert httpx.get(f"{sim.url}/_sim/jobs/{faulted}").json()["faults"] == {"not_mp4": 1}
    assert httpx.get(f"{sim.url}/_sim/jobs/{clean}").json()["faults"] == {}
    assert httpx.get(f"{sim.url}/v1/videos/{faulted}/content", headers=KEY).content[4:8] != b"ftyp"
    assert httpx.get(f"{sim.url}/v1/videos/{clean}/content", headers=KEY).content[4:8] == b"ftyp"
