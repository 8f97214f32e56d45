"""The legacy route's HTTP client: request shape, streamed and non-streamed answers, faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from videogen.errors import ProviderRejected, ProviderUnavailable, ProviderUncertain
from videogen.http import make_client
from videogen.providers.legacy import LegacyApi
from videogen.settings import Settings

FIXTURES = Path(__file__).with_name("fixtures")
SEED_STREAM = (FIXTURES / "seed001_stream.txt").read_bytes()
SEED_ANSWER = (FIXTURES / "seed001_answer.json").read_bytes()
BASE = "https://legacy.provider.test"
CHAT = f"{BASE}/v1/chat/completions"
SSE = {"content-type": "text/event-stream; charset=utf-8"}


@pytest.fixture
def api() -> LegacyApi:
    settings = Settings(retry_base_delay_seconds=0, retry_max_delay_seconds=0, legacy_stream_idle_seconds=5)
    return LegacyApi(settings, BASE, "sk-legacy", make_client(settings))


def chunks(data: bytes, step: int) -> Iterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


def later(seconds: float = 60) -> float:
    return time.monotonic() + seconds


@respx.mock
def test_text_request_is_a_streamed_chat_completion(api):
    route = respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=chunks(SEED_STREAM, 17)))
    progress: list[float] = []
    ids: list[str] = []

    outcome = api.generate(
        "sora_video2", prompt="A happy cat", deadline=later(), on_progress=progress.append, on_provider_id=ids.append
    )

    assert outcome.phase == "succeeded" and outcome.result_url == "https://sora.gptkey.asia/assets/sora/xxx.mp4"
    assert progress == [36.0] and ids == ["foaicmpl-xxx"]
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer sk-legacy"
    assert json.loads(request.content) == {
        "model": "sora_video2",
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "A happy cat"}]}],
    }


@respx.mock
def test_image_goes_as_an_image_url_content_part(api):
    route = respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=SEED_STREAM))
    api.generate(
        "sora_video2-landscape", prompt="Make it jump", image_url="https://bucket.test/in.png?X-Amz-Signature=s", deadline=later()
    )
    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "sora_video2-landscape"
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Make it jump"},
        {"type": "image_url", "image_url": {"url": "https://bucket.test/in.png?X-Amz-Signature=s"}},
    ]


@respx.mock
def test_non_streamed_answer(api):
    respx.post(CHAT).mock(return_value=httpx.Response(200, headers={"content-type": "application/json"}, content=SEED_ANSWER))
    outcome = api.generate("sora_video2", prompt="cat", deadline=later())
    assert outcome.phase == "succeeded" and outcome.result_url.endswith("/xxx.mp4")


@respx.mock
def test_refusal_before_the_stream_raises_with_the_providers_words(api):
    body = {"error": {"message": "Images containing real people are not allowed", "type": "invalid_request_error"}}
    respx.post(CHAT).mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(ProviderRejected, match="real people are not allowed") as caught:
        api.generate("sora_video2", prompt="cat", deadline=later())
    assert caught.value.http_status == 400


@respx.mock
def test_busy_provider_is_retried_then_streams(api):
    route = respx.post(CHAT).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, headers=SSE, content=SEED_STREAM)]
    )
    assert api.generate("sora_video2", prompt="cat", deadline=later()).phase == "succeeded"
    assert route.call_count == 2


@respx.mock
def test_provider_that_stays_busy_is_unavailable(api):
    # 503 + Retry-After says the generation was not started: resending is safe.
    route = respx.post(CHAT).mock(return_value=httpx.Response(503, text="busy", headers={"Retry-After": "0"}))
    with pytest.raises(ProviderUnavailable):
        api.generate("sora_video2", prompt="cat", deadline=later())
    assert route.call_count == api.settings.submit_max_attempts


@pytest.mark.parametrize(
    "failure", [httpx.Response(502), httpx.Response(500), httpx.ReadTimeout("slow")], ids=["502", "500", "timeout"]
)
@respx.mock
def test_an_ambiguous_failure_is_never_resent(api, failure):
    # The chat call is the paid generation itself: after an answer that may hide a started
    # generation it is never sent again.
    effect = failure if isinstance(failure, Exception) else None
    route = respx.post(CHAT).mock(side_effect=effect, return_value=None if effect else failure)
    with pytest.raises(ProviderUncertain):
        api.generate("sora_video2", prompt="cat", deadline=later())
    assert route.call_count == 1


@respx.mock
def test_stream_that_breaks_off_fails_the_generation(api):
    def broken() -> Iterator[bytes]:
        yield SEED_STREAM[: SEED_STREAM.index(b"Progress")]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=broken()))
    outcome = api.generate("sora_video2", prompt="cat", deadline=later())
    assert outcome.phase == "failed" and "broke off" in outcome.error.message


@respx.mock
def test_stream_that_ends_without_done_or_link_fails(api):
    cut = SEED_STREAM.index(b"data: {", SEED_STREAM.index(b"Progress"))  # up to and including the progress event
    respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=SEED_STREAM[:cut]))
    outcome = api.generate("sora_video2", prompt="cat", deadline=later())
    assert outcome.phase == "failed" and outcome.error.message == "the provider's stream ended before the video was ready"


@respx.mock
def test_silent_stream_is_abandoned_after_the_idle_limit(api):
    respx.post(CHAT).mock(side_effect=httpx.ReadTimeout("no bytes"))
    # A read timeout before any answer may hide a started (paid) generation: never resent.
    with pytest.raises(ProviderUncertain):
        api.generate("sora_video2", prompt="cat", deadline=later())

    def stalls() -> Iterator[bytes]:
        yield SEED_STREAM[:100]
        raise httpx.ReadTimeout("silent")

    respx.post(CHAT).mock(side_effect=None, return_value=httpx.Response(200, headers=SSE, content=stalls()))
    outcome = api.generate("sora_video2", prompt="cat", deadline=later())
    assert outcome.phase == "failed" and "silent for more than 5 s" in outcome.error.message


@respx.mock
def test_deadline_fails_with_timed_out(api):
    respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=chunks(SEED_STREAM, 50)))
    outcome = api.generate("sora_video2", prompt="cat", deadline=time.monotonic() - 1)
    assert outcome.phase == "failed" and outcome.error.code == "timed_out"


@respx.mock
def test_the_link_wins_even_if_the_stream_breaks_after_it(api):
    def after_link() -> Iterator[bytes]:
        yield SEED_STREAM[: SEED_STREAM.index(b'"finish_reason":"stop"')]
        raise httpx.ReadError("reset")

    respx.post(CHAT).mock(return_value=httpx.Response(200, headers=SSE, content=after_link()))
    outcome = api.generate("sora_video2", prompt="cat", deadline=later())
    assert outcome.phase == "succeeded" and outcome.result_url.endswith("/xxx.mp4")
