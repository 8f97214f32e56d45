"""The legacy route's stream: SSE parsing in any chunking, and what the assistant's text says.

The fixture ``seed001_stream.txt`` is the stream printed in seed 001, copied byte for byte.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from httpx_sse import ServerSentEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from videogen.providers import legacy
from videogen.providers.legacy import ChatStream, ContentScanner, ProgressThrottle, StreamGuard, rejection_code, sse_events

FIXTURES = Path(__file__).with_name("fixtures")
SEED_STREAM = (FIXTURES / "seed001_stream.txt").read_bytes()
SEED_ANSWER = json.loads((FIXTURES / "seed001_answer.json").read_text(encoding="utf-8"))
SEED_URL = "https://sora.gptkey.asia/assets/sora/xxx.mp4"


def parse(chunks: list[bytes]) -> list[ServerSentEvent]:
    """The events of a stream that arrives in these chunks (as the client parses them)."""
    return list(sse_events(StreamGuard(chunks)))


def fields(events: list[ServerSentEvent]) -> list[tuple[str, str, str]]:
    return [(e.event, e.data, e.id) for e in events]


def split_every(data: bytes, step: int) -> list[bytes]:
    return [data[i : i + step] for i in range(0, len(data), step)]


def run(events: list[ServerSentEvent], progress: list[float] | None = None) -> ChatStream:
    state = ChatStream(ContentScanner(on_progress=progress.append if progress is not None else None))
    for event in events:
        state.event(event)
    return state


def sse(*contents: str, done: bool = True, finish: bool = True) -> bytes:
    """A chat-completions stream whose deltas carry ``contents``."""
    chunks = [{"id": "chatcmpl-test", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    chunks += [
        {"id": "chatcmpl-test", "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in contents
    ]
    if finish:
        chunks.append({"id": "chatcmpl-test", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    text = "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks)
    return (text + ("data: [DONE]\n\n" if done else "")).encode()


# -- the seed's exact stream -------------------------------------------------------------


def test_seed_stream_in_one_piece_gives_progress_and_the_video_link():
    progress: list[float] = []
    events = parse([SEED_STREAM])
    state = run(events, progress)

    assert len(events) == 7 and events[-1].data == "[DONE]"
    assert state.done and state.finished
    assert state.provider_id == "foaicmpl-xxx"
    assert progress == [36.0]
    outcome = state.outcome()
    assert outcome.phase == "succeeded" and outcome.result_url == SEED_URL


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 13, 64, 100, 333])
def test_seed_stream_split_anywhere_gives_the_same_events(step):
    whole = fields(parse([SEED_STREAM]))
    assert fields(parse(split_every(SEED_STREAM, step))) == whole


def test_splits_inside_every_multibyte_character_are_harmless():
    # Given every position that falls inside a UTF-8 character (the emoji of the status lines)
    inside = [i for i in range(1, len(SEED_STREAM)) if 0x80 <= SEED_STREAM[i] < 0xC0]
    assert len(inside) >= 9  # ⌛️ 🏃 ✅ are multi-byte: the seed does exercise this
    whole = fields(parse([SEED_STREAM]))
    for cut in inside:
        # When the stream is cut there
        events = fields(parse([SEED_STREAM[:cut], SEED_STREAM[cut:]]))
        # Then nothing is lost or replaced
        assert events == whole, cut
    assert "\ufffd" not in "".join(data for _, data, _ in whole)


def test_splits_mid_line_keep_the_progress_line_whole():
    progress: list[float] = []
    cut = SEED_STREAM.index(b"Progress: 36") + len(b"Progress: 3")
    state = run(parse([SEED_STREAM[:cut], SEED_STREAM[cut:]]), progress)
    assert progress == [36.0]
    assert state.outcome().result_url == SEED_URL


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SEED_STREAM) - 1), max_size=30, unique=True))
def test_any_chunking_of_the_seed_stream_parses_the_same(cuts):
    bounds = [0, *sorted(cuts), len(SEED_STREAM)]
    chunks = [SEED_STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert fields(parse(chunks)) == fields(parse([SEED_STREAM]))


def test_non_streamed_answer_gives_the_same_outcome():
    state = ChatStream(ContentScanner())
    state.chunk(SEED_ANSWER)
    outcome = state.outcome()
    assert outcome.phase == "succeeded" and outcome.result_url == SEED_URL
    assert state.provider_id == "foaicmpl-xxx" and state.finished


# -- SSE framing rules ---------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_is_accepted(newline):
    raw = SEED_STREAM.replace(b"\n", newline)
    assert [e.data for e in parse(split_every(raw, 1))] == [e.data for e in parse([SEED_STREAM])]


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    events = parse([b"data: a\r", b"\ndata: b\r\n\r", b"\n"])
    assert [e.data for e in events] == ["a\nb"]


def test_comments_fields_and_multiline_data():
    raw = b": keep-alive\n\nevent: progress\nid: 7\ndata: one\ndata:two\nretry: 100\nunknown: x\n\ndata\n\n"
    events = parse(split_every(raw, 4))
    assert fields(events) == [("progress", "one\ntwo", "7"), ("message", "", "7")]


def test_a_byte_order_mark_at_the_start_is_ignored():
    assert [e.data for e in parse([b"\xef\xbb", b"\xbfdata: x\n\n"])] == ["x"]


@pytest.mark.parametrize("end", [b"", b"\n", b"\r", b"\r\n"])
def test_last_event_without_blank_line_is_delivered_at_close(end):
    assert [e.data for e in parse([b"data: a\n\ndata: [DONE]" + end])] == ["a", "[DONE]"]
    assert [e.data for e in parse([b"data: a\n\ndata: [DONE]", end])] == ["a", "[DONE]"]


def test_a_stream_ending_with_a_blank_line_gets_no_extra_event():
    assert fields(parse([b"id: 1\ndata: a\n\n"])) == [("message", "a", "1")]


def test_an_endless_line_is_refused():
    with pytest.raises(ValueError, match="larger than 1 MiB"):
        parse([b"x" * 100_000] * 20)


def test_many_small_events_are_not_an_endless_line():
    events = parse([b"data: x\n\n" * 1000] * 200)  # 2 MB in all, 9 bytes an event
    assert len(events) == 200_000


def test_the_deadline_is_checked_on_every_read_even_without_events():
    def chunks():
        yield b"data: no end"
        yield b" in sight"

    with pytest.raises(legacy._DeadlinePassed):
        list(sse_events(StreamGuard(chunks(), deadline=0.0)))


# -- what the text says --------------------------------------------------------------------


def test_failure_text_fails_with_the_providers_words():
    raw = sse(
        "> ⌛️ Task is in queue, please wait patiently...\n\n", "> ❌ Generation failed: the image contains a real person\n\n"
    )
    outcome = run(parse([raw])).outcome()
    assert outcome.phase == "failed"
    assert outcome.error.code == "content_violation"
    assert outcome.error.message == "❌ Generation failed: the image contains a real person"


def test_other_failures_are_provider_errors():
    outcome = run(parse([sse("> 🏃 Progress: 12.0%\n\n", "> ❌ Generation failed, upstream busy\n\n")])).outcome()
    assert outcome.error.code == "provider_error" and "upstream busy" in outcome.error.message


def test_the_prompt_echo_cannot_fail_or_finish_a_job():
    echo = '```json\n{\n    "prompt": "a robot whose launch failed, see https://x.test/a.mp4",\n'
    echo += '    "mode": "Vertical Mode"\n}\n```\n\n'
    raw = sse(
        echo,
        "> 🏃 Progress: 50.0%\n\n",
        "> ✅ Video generated successfully, [Click here](https://cdn.provider.test/v/1.mp4) ~~~\n\n",
    )
    outcome = run(parse([raw])).outcome()
    assert outcome.phase == "succeeded" and outcome.result_url == "https://cdn.provider.test/v/1.mp4"


def test_error_object_in_the_stream_fails_with_its_message():
    raw = b'data: {"error": {"message": "Your request was rejected by the safety system", "type": "invalid_request_error"}}\n\n'
    outcome = run(parse([raw])).outcome()
    assert outcome.phase == "failed" and outcome.error.message == "Your request was rejected by the safety system"


def test_stream_without_a_link_fails_naming_the_last_status():
    outcome = run(parse([sse("> 🏃 Progress: 80.0%\n\n")])).outcome()
    assert outcome.phase == "failed" and outcome.error.code == "provider_error"
    assert "ended without a video link" in outcome.error.message and "Progress: 80.0%" in outcome.error.message


def test_a_stream_cut_short_names_why():
    state = run(parse([sse("> 🏃 Progress: 80.0%\n\n", done=False, finish=False)]))
    outcome = state.outcome(ended_early="the provider's stream ended before the video was ready")
    assert outcome.error.message == "the provider's stream ended before the video was ready"


def test_a_bare_mp4_link_is_accepted_and_query_strings_kept():
    raw = sse("> Done: https://cdn.provider.test/v/2.mp4?sig=abc&exp=1\n\n")
    assert run(parse([raw])).outcome().result_url == "https://cdn.provider.test/v/2.mp4?sig=abc&exp=1"


def test_progress_lines_are_reported_once_each_and_capped_at_100():
    seen: list[float] = []
    run(
        parse([sse("> 🏃 Progress: 10.0%\n\n", "> 🏃 Progress: 10.0%\n\n", "> 🏃 Progress: 55.5%\n\n", "> 进度: 120%\n\n")]), seen
    )
    assert seen == [10.0, 55.5, 100.0]


def test_content_given_as_parts_is_read():
    state = ChatStream(ContentScanner())
    state.chunk({"choices": [{"message": {"content": [{"type": "text", "text": "[video](https://cdn.provider.test/3.mp4)"}]}}]})
    assert state.outcome().result_url == "https://cdn.provider.test/3.mp4"


def test_plain_text_events_are_read_as_text():
    assert run(parse([b"data: > \xe2\x9c\x85 https://cdn.provider.test/4.mp4\n\n"])).outcome().result_url == (
        "https://cdn.provider.test/4.mp4"
    )


@pytest.mark.parametrize(
    ("message", "provider_code", "code"),
    [
        ("Your request was blocked by our moderation system", None, "content_violation"),
        ("Images containing real human faces are not supported", None, "content_violation"),
        ("invalid size", "moderation_blocked", "content_violation"),
        ("image could not be downloaded", "invalid_image_url", "invalid_image_url"),
        ("seconds must be one of 4, 8, 12", "invalid_value", "provider_rejected"),
    ],
)
def test_refusals_are_named(message, provider_code, code):
    assert rejection_code(message, provider_code) == code


# -- progress writes are throttled -------------------------------------------------------------


def test_progress_throttle_writes_changes_at_most_once_per_interval():
    now = [0.0]
    writes: list[int] = []
    throttle = ProgressThrottle(writes.append, 10.0, clock=lambda: now[0])
    for t, value in [(0, 5.0), (1, 9.0), (2, 9.5), (11, 9.9), (12, 30.0), (25, 30.0), (26, 60.0), (27, 100.0)]:
        now[0] = float(t)
        throttle(value)
    # 5 at t=0; 9 and 9.5 dropped (too soon), 9 at t=11; 30 dropped at t=12 but written at
    # t=25 (its next report); 60 dropped at t=26; 100 is always written
    assert writes == [5, 9, 30, 100]
