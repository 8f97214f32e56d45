"""Client of the legacy chat route (seeds 000/001): ``POST /v1/chat/completions``, streamed.

The provider answers with Server-Sent Events in the chat-completions chunk format. The video
is produced *during* the call: ``delta.content`` carries status lines such as
``> 🏃 Progress: 36.0%`` and finally a markdown link to the ``.mp4`` (valid one day). A
non-streamed answer carries the same text in ``choices[0].message.content``.

Three layers, each testable on its own:

- :func:`sse_events`: bytes in any chunking -> events, parsed by ``httpx-sse`` (WHATWG rules:
  ``\\n``/``\\r\\n``/``\\r`` line ends, ``data:`` lines joined, comments skipped; httpx's
  incremental UTF-8 decoder never damages a character cut between two network reads), behind
  a :class:`StreamGuard` that keeps the deadline and the 1 MiB event cap on every read.
- :class:`ContentScanner`: the assistant's text, fed in pieces -> progress, video URL,
  failure text. The fenced JSON block echoing the prompt is skipped, so a prompt saying
  "failed" cannot fail a job.
- :class:`LegacyApi`: the HTTP call, the retry policy before the stream starts, the deadline
  and the idle timeout while it runs; returns an :class:`~videogen.providers.Outcome`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from httpx_sse import EventSource, ServerSentEvent

from ..errors import InvalidRequest, ProviderRejected
from ..http import RETRYABLE, send_once
from ..models import ErrorCode, JobError
from . import (
    BaseProvider,
    Outcome,
    ProviderClient,
    StartRequest,
    error_message,
    refusal_error,
    rejection_code,
)

if TYPE_CHECKING:
    from ..models import Job, Route

__all__ = ["ChatStream", "ContentScanner", "LegacyApi", "LegacyProvider", "ProgressThrottle", "rejection_code"]

DONE = "[DONE]"
PROGRESS = re.compile(r"(?:progress|进度)[^0-9]{0,10}(\d{1,3}(?:\.\d+)?)\s*%", re.IGNORECASE)
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\((https://[^\s)]+)\)")
BARE_MP4 = re.compile(r"https://[^\s)\]<>\"']+\.mp4(?:\?[^\s)\]<>\"']*)?", re.IGNORECASE)
FAILURE = re.compile(r"❌|\bfail(?:ed|ure)?\b|\berror\b|\brejected\b|失败|错误", re.IGNORECASE)
MAX_JSON_ANSWER_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
BOM = b"\xef\xbb\xbf"


# -- Server-Sent Events -------------------------------------------------------------------


class StreamGuard:
    """The raw stream, watched: each chunk is checked against the deadline and the event size cap.

    ``httpx-sse`` parses the events; it buffers a line until its end comes, so this guard caps
    what may arrive between two events (1 MiB, about one read of slack) and checks the
    deadline on every read, events or not. It also drops a leading UTF-8 byte order mark, as
    the SSE standard says (``httpx-sse`` does not), and ends the stream with a blank line.
    """

    def __init__(self, chunks: Iterable[bytes], deadline: float | None = None) -> None:
        self.chunks = chunks
        self.deadline = deadline
        self.since_event = 0

    def event_seen(self) -> None:
        self.since_event = 0

    def __iter__(self) -> Iterator[bytes]:
        head: bytes | None = b""  # the first bytes, until it is clear whether they are a BOM
        tail = b""
        for chunk in self.chunks:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise _DeadlinePassed
            if self.since_event > MAX_EVENT_BYTES:
                raise ValueError("SSE event is larger than 1 MiB")
            self.since_event += len(chunk)
            if head is not None:
                head += chunk
                if len(head) < len(BOM) and BOM.startswith(head):
                    continue
                chunk, head = head.removeprefix(BOM), None
            if chunk:
                tail = (tail + chunk)[-4:]
                yield chunk
        if head:
            tail = head = head[-4:]
            yield head
        end = _blank_line_after(tail)
        if end:
            yield end


def _blank_line_after(tail: bytes) -> bytes:
    """What ends a stream whose last bytes are ``tail`` with a blank line, so that a last event
    lacking it is still delivered (the SSE standard would drop it; a provider's last chunk
    may carry the video link)."""
    lines = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not tail or lines.endswith(b"\n\n"):
        return b""
    if tail.endswith(b"\r") or not lines.endswith(b"\n"):
        return b"\n\n"  # a lone CR may be half a CRLF: LF then LF
    return b"\n"


def sse_events(guard: StreamGuard) -> Iterator[ServerSentEvent]:
    """The events of an ``text/event-stream`` body (UTF-8, any chunking), parsed by ``httpx-sse``."""
    body = httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=iter(guard))
    for event in EventSource(body).iter_sse():
        guard.event_seen()
        yield event


# -- the assistant's text ------------------------------------------------------------------


@dataclass
class ContentScanner:
    """Reads the assistant's text line by line and keeps what the pipeline needs from it."""

    on_progress: Callable[[float], None] | None = None
    progress: float | None = None
    video_url: str | None = None
    failure: str | None = None
    last_status: str | None = None
    _pending: str = ""
    _in_fence: bool = False

    def feed(self, text: str) -> None:
        """Consume a piece of the text; complete lines are interpreted at once."""
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)

    def finish(self) -> None:
        """The text is complete: interpret a last line without a line break."""
        if self._pending:
            line, self._pending = self._pending, ""
            self._line(line)

    def _line(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("```"):
            self._in_fence = not self._in_fence
            return
        if self._in_fence or not stripped:
            return  # the fenced block echoes the request (prompt, mode): never a status
        status = stripped.lstrip(">").strip()
        self.last_status = status
        url = _video_link(status)
        if url:
            self.video_url = url
            return
        match = PROGRESS.search(status)
        if match:
            value = min(100.0, float(match.group(1)))
            if self.progress is None or value != self.progress:
                self.progress = value
                if self.on_progress is not None:
                    self.on_progress(value)
            return
        if FAILURE.search(status) and self.failure is None:
            self.failure = status


def _video_link(text: str) -> str | None:
    """The ``.mp4`` URL of a status line: a markdown link's target first, else a bare URL."""
    for target in MARKDOWN_LINK.findall(text):
        if ".mp4" in target.lower():
            return str(target)
    bare = BARE_MP4.search(text)
    return bare.group(0) if bare else None


# -- interpreting chunks -------------------------------------------------------------------


@dataclass
class ChatStream:
    """The state of one chat-completions answer, fed chunk objects (streamed or not)."""

    scanner: ContentScanner
    provider_id: str | None = None
    error: str | None = None
    finished: bool = False
    done: bool = False

    def event(self, event: ServerSentEvent) -> None:
        """Apply one SSE event (``data: [DONE]`` ends the stream)."""
        if event.data.strip() == DONE:
            self.done = True
            return
        try:
            chunk = json.loads(event.data)
        except ValueError:
            # Some relays interleave plain-text notices; treat them as the assistant's text.
            self.scanner.feed(event.data + "\n")
            return
        self.chunk(chunk)

    def chunk(self, chunk: Any) -> None:
        """Apply one ``chat.completion.chunk`` (``delta``) or ``chat.completion`` (``message``)."""
        if not isinstance(chunk, dict):
            return
        if isinstance(chunk.get("id"), str) and chunk["id"] and self.provider_id is None:
            self.provider_id = chunk["id"][:200]
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            self.error = str(message or "the provider reported an error")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            for part in ("delta", "message"):
                body = choice.get(part)
                if isinstance(body, dict):
                    self._content(body.get("content"))
            if choice.get("finish_reason"):
                self.finished = True

    def _content(self, content: Any) -> None:
        if isinstance(content, str):
            self.scanner.feed(content)
        elif isinstance(content, list):  # content parts
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    self.scanner.feed(part["text"])

    def outcome(self, *, ended_early: str | None = None) -> Outcome:
        """The job outcome this answer amounts to."""
        self.scanner.finish()
        if self.scanner.video_url:
            return Outcome(phase="succeeded", progress=100, result_url=self.scanner.video_url)
        message = self.error or self.scanner.failure or ended_early
        if message is None:
            said = f"; it last said: {self.scanner.last_status}" if self.scanner.last_status else ""
            message = f"the provider's answer ended without a video link{said}"
        return Outcome(phase="failed", error=refusal_error(message))


# -- the HTTP call -------------------------------------------------------------------------


class ProgressThrottle:
    """Lets a progress value through when it moved and enough time passed since the last one."""

    def __init__(self, write: Callable[[int], None], min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.min_interval = min_interval
        self.clock = clock
        self.last_value: int | None = None
        self.last_time: float | None = None

    def __call__(self, value: float) -> None:
        whole = int(value)
        now = self.clock()
        if whole == self.last_value:
            return
        if self.last_time is not None and now - self.last_time < self.min_interval and whole < 100:
            return
        self.last_value, self.last_time = whole, now
        self.write(whole)


class LegacyApi(ProviderClient):
    """``POST /v1/chat/completions`` with ``stream: true``, read until the video link."""

    extra_headers: ClassVar[dict[str, str]] = {"Accept": "text/event-stream"}

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    @staticmethod
    def body(provider_model: str, prompt: str, image_url: str | None) -> dict[str, Any]:
        """The request body: the prompt and the image (a URL or data URL) as content parts."""
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if image_url:
            content.append({"type": "image_url", "image_url": {"url": image_url}})
        return {"model": provider_model, "stream": True, "messages": [{"role": "user", "content": content}]}

    def generate(
        self,
        provider_model: str,
        *,
        prompt: str,
        image_url: str | None = None,
        deadline: float,
        on_progress: Callable[[float], None] | None = None,
        on_provider_id: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Run one generation and return its outcome (succeeded with the MP4 URL, or failed).

        Raises :class:`ProviderRejected` when the provider refuses the request (4xx) and
        :class:`ProviderUnavailable` when it never took the request (no connection, 429, 503
        with ``Retry-After``) and :class:`ProviderUncertain` when it may have started a paid
        generation (timeout, dropped connection, 5xx): the call is never resent.
        ``deadline`` is a ``time.monotonic()`` value: a stream still running then fails the job
        with ``timed_out``.
        """
        body = self.body(provider_model, prompt, image_url)
        # A read waits at most the idle limit, and never much past the deadline.
        idle = max(1.0, min(self.settings.legacy_stream_idle_seconds, deadline - time.monotonic()))
        timeout = httpx.Timeout(connect=self.settings.connect_timeout_seconds, read=idle, write=idle, pool=idle)
        request = self.client.build_request("POST", self.url, json=body, headers=self.headers, timeout=timeout)

        def send() -> httpx.Response:
            response = self.client.send(request, stream=True)
            if response.status_code in RETRYABLE or response.status_code >= 300:
                response.read()  # small error bodies; frees the connection before a retry
                response.close()
            return response

        # The call is the paid generation itself: sent at most once (ProviderUncertain otherwise).
        response = send_once(send, self.settings, what="chat/completions", deadline=deadline)
        if response.status_code >= 300:
            raise ProviderRejected(
                f"chat/completions refused by provider: {error_message(response)}", http_status=response.status_code
            )
        state = ChatStream(ContentScanner(on_progress=on_progress))
        reported_id = False
        ended_early: str | None = None
        try:
            if "json" not in response.headers.get("content-type", "").lower():
                for event in sse_events(StreamGuard(response.iter_bytes(), deadline)):
                    state.event(event)
                    if state.provider_id and not reported_id and on_provider_id is not None:
                        on_provider_id(state.provider_id)
                        reported_id = True
                    if state.done:
                        break
                else:
                    if not (state.done or state.finished):
                        ended_early = "the provider's stream ended before the video was ready"
            else:  # the non-streamed answer: choices[0].message.content
                state.chunk(_json_answer(response))
        except _DeadlinePassed:
            if state.scanner.video_url is None:
                return Outcome(
                    phase="failed",
                    error=JobError(code=ErrorCode.TIMED_OUT.value, message="the provider's stream did not finish in time"),
                )
        except httpx.TimeoutException:
            ended_early = f"the provider's stream was silent for more than {idle:g} s"
        except httpx.TransportError as exc:
            ended_early = f"the provider's stream broke off ({type(exc).__name__})"
        except ValueError as exc:
            ended_early = f"the provider's answer could not be read ({exc})"
        finally:
            response.close()
        if state.provider_id and not reported_id and on_provider_id is not None:
            on_provider_id(state.provider_id)
        return state.outcome(ended_early=ended_early)


class _DeadlinePassed(Exception):
    pass


def _json_answer(response: httpx.Response) -> Any:
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > MAX_JSON_ANSWER_BYTES:
            raise ValueError("non-streamed answer is larger than 1 MiB")
    return json.loads(bytes(data))


class LegacyProvider(BaseProvider):
    """The ``legacy`` route: one streamed chat call, run by the workflow, is the whole job."""

    route: ClassVar[Route] = "legacy"
    starts_at_submit: ClassVar[bool] = False

    api: LegacyApi

    def create(self, job: Job, start: StartRequest) -> str:
        raise InvalidRequest("the legacy route is started by the workflow's generate task", field="route")

    def status(self, job: Job, *, deadline: float | None = None) -> Outcome:
        raise InvalidRequest("route 'legacy' has no status to poll", field="route")

    def first_wait_seconds(self, expected_seconds: int) -> int:
        return 0

    def generate(
        self,
        job: Job,
        start: StartRequest,
        *,
        deadline: float,
        on_progress: Callable[[float], None] | None = None,
        on_provider_id: Callable[[str], None] | None = None,
    ) -> Outcome:
        return self.api.generate(
            start.provider_model,
            prompt=job.prompt,
            image_url=start.image_url,
            deadline=deadline,
            on_progress=on_progress,
            on_provider_id=on_provider_id,
        )
