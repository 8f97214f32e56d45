"""Property-based tests (hypothesis) for the parsers that read third-party input.

The task API's callback/status payload parser and the legacy route's SSE parser must, for any
input, either return a result or raise the one error the caller maps to a clear 4xx/failed job;
never crash, and never depend on how the bytes happened to be split by the network.
"""

from __future__ import annotations

import json

import httpx
import respx
from httpx_sse import ServerSentEvent
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.conftest import CALLBACK_KEYS, invoke, load_event
from videogen.errors import InvalidRequest
from videogen.models import Job
from videogen.providers import Outcome, legacy
from videogen.providers.legacy import ChatStream, ContentScanner, StreamGuard
from videogen.providers.task import TASK_STATES, outcome_of, parse_task_payload
from videogen.security import make_callback_token, verify_callback_token

# Deterministic and load-independent: the same examples on every run, no per-example deadline.
STEADY = settings(deadline=None, derandomize=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
field_values = st.one_of(json_values, st.sampled_from(TASK_STATES), st.just("task-1"))
payload_fields = st.fixed_dictionaries(
    {},
    optional={
        "taskId": field_values,
        "state": field_values,
        "resultJson": st.one_of(
            json_values,
            json_values.map(json.dumps),
            st.lists(st.text(max_size=20), max_size=3).map(lambda u: json.dumps({"resultUrls": u})),
        ),
        "failCode": field_values,
        "failMsg": field_values,
        "createTime": field_values,
    },
)
payloads = st.one_of(
    json_values, payload_fields, payload_fields.map(lambda data: {"code": 200, "message": "success", "data": data})
)


@settings(STEADY, max_examples=400)
@given(payloads)
@example({"code": 200, "data": {"taskId": "t", "state": "success", "resultJson": "[]"}})
@example({"data": {"taskId": "t", "state": "success", "resultJson": '{"resultUrls": [""]}'}})
@example({"taskId": "t", "state": "failed"})
def test_task_payload_parser_returns_an_outcome_or_a_clear_invalid_request(body):
    try:
        outcome = outcome_of(parse_task_payload(body))
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message and exc.details.get("field", "").startswith(("body", "data"))
        return
    assert isinstance(outcome, Outcome)
    if outcome.phase == "succeeded":
        assert isinstance(outcome.result_url, str) and outcome.result_url
    if outcome.phase == "failed":
        assert outcome.error is not None and outcome.error.code


@STEADY
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5), st.booleans())
def test_a_success_payload_yields_its_first_result_url(urls, wrapped):
    data = {"taskId": "task-1", "state": "success", "resultJson": json.dumps({"resultUrls": urls})}
    outcome = outcome_of(parse_task_payload({"code": 200, "data": data} if wrapped else data))
    assert outcome.phase == "succeeded" and outcome.result_url == urls[0]


@STEADY
@given(st.text(max_size=60), st.text(min_size=1, max_size=40))
def test_only_the_job_s_own_token_verifies(token, job_id):
    good = make_callback_token(job_id, CALLBACK_KEYS)
    assume(token != good)
    assert verify_callback_token(job_id, good, CALLBACK_KEYS)
    assert not verify_callback_token(job_id, token, CALLBACK_KEYS)


@settings(STEADY, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(payloads.map(json.dumps), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_the_callback_handler_answers_any_authenticated_body_without_a_5xx(ctx, body):
    # Given a job whose provider says "still processing" (so nothing is ever downloaded)
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10)
    ctx.repo.create(job)
    ctx.repo.start(job.id, "task-1")
    event = load_event("callback-success")
    token = make_callback_token(job.id, CALLBACK_KEYS)
    event.update(
        queryStringParameters={"token": token}, rawQueryString=f"token={token}", body=body, pathParameters={"id": job.id}
    )
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{job.id}"
    with respx.mock:
        respx.get("https://task.provider.test/api/v1/statusTask/sora-2").mock(
            return_value=httpx.Response(200, json={"code": 200, "data": {"taskId": "task-1", "state": "processing"}})
        )
        answer = invoke("callback", event)
    # Then the answer is a 4xx for a bad body, or the 503 "not final yet" for a good one
    assert answer["statusCode"] in (400, 503), answer["body"]
    assert ctx.repo.get(job.id).status == "in_progress"


# -- Server-Sent Events -----------------------------------------------------------------------

sse_text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)
sse_events = st.lists(
    st.tuples(
        st.sampled_from(["", "progress", "error"]),
        st.lists(sse_text, min_size=1, max_size=3),
        st.sampled_from([None, "7", "id-x"]),
    ),
    max_size=6,
)


def serialize(events: list[tuple[str, list[str], str | None]], newline: bytes, comments: bool) -> bytes:
    out = bytearray(b"\xef\xbb\xbf" if comments else b"")
    for name, lines, event_id in events:
        if comments:
            out += b": keep-alive" + newline
        if name:
            out += b"event: " + name.encode() + newline
        if event_id is not None:
            out += b"id: " + event_id.encode() + newline
        for line in lines:
            out += b"data: " + line.encode() + newline
        out += newline
    return bytes(out)


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[tuple[str, str, str]]:
    """(event, data, id) of each event of ``data`` cut at ``cuts``, as the legacy client parses it."""
    pieces = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [(e.event, e.data, e.id) for e in legacy.sse_events(StreamGuard(pieces))]


@settings(STEADY, max_examples=300)
@given(sse_events, st.sampled_from([b"\n", b"\r\n", b"\r"]), st.booleans(), st.data())
def test_sse_events_do_not_depend_on_how_the_stream_is_split(events, newline, comments, data):
    stream = serialize(events, newline, comments)
    cuts = (
        sorted(data.draw(st.sets(st.integers(min_value=1, max_value=max(1, len(stream) - 1)), max_size=12)))
        if len(stream) > 1
        else []
    )
    whole = feed_in_pieces(stream, [])
    assert feed_in_pieces(stream, cuts) == whole
    # And the events are the ones that were sent
    assert [(event, data) for event, data, _ in whole] == [(name or "message", "\n".join(lines)) for name, lines, _ in events]


@settings(STEADY, max_examples=300)
@given(st.binary(max_size=400), st.data())
def test_sse_parser_never_crashes_on_arbitrary_bytes(stream, data):
    cuts = (
        sorted(data.draw(st.sets(st.integers(min_value=1, max_value=max(1, len(stream) - 1)), max_size=8)))
        if len(stream) > 1
        else []
    )
    events = feed_in_pieces(stream, cuts)
    assert events == feed_in_pieces(stream, [])
    assert all(isinstance(data, str) for _, data, _ in events)


@STEADY
@given(st.text(max_size=40), st.sampled_from(["```json\n{}\n```\n", ""]), st.integers(min_value=1, max_value=15), st.data())
def test_the_video_link_is_found_however_the_text_is_chunked(prefix, fence, step, data):
    url = (
        "https://videos.provider.test/assets/sora/"
        + data.draw(st.text(alphabet="abcdef0123456789", min_size=1, max_size=12))
        + ".mp4"
    )
    text = (
        f"{fence}> {prefix.replace(chr(10), ' ')}\n\n> ✅ Video generated successfully, [Click here]({url}) to view video~~~\n\n"
    )
    scanner = ContentScanner()
    for start in range(0, len(text), step):
        scanner.feed(text[start : start + step])
    scanner.finish()
    assert scanner.video_url == url


@settings(STEADY, max_examples=300)
@given(st.lists(st.one_of(json_values.map(json.dumps), st.text(max_size=40)), max_size=8))
def test_chat_stream_turns_any_events_into_an_outcome(datas):
    stream = ChatStream(ContentScanner())
    for item in datas:
        stream.event(ServerSentEvent(data=item))
    outcome = stream.outcome()
    assert outcome.phase in ("succeeded", "failed")
    if outcome.phase == "succeeded":
        assert outcome.result_url and outcome.result_url.startswith("https://")
    else:
        assert outcome.error is not None and outcome.error.message
