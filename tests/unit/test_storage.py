"""Streamed storage: MP4 check, single PUT vs multipart, abort on every failure, nothing left behind."""

from __future__ import annotations

import gzip
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from moto import mock_aws

from local.inprocess import MOTO_CONFIG
from tests.conftest import mp4_bytes
from tests.template import bucket_lifecycle
from videogen import aws, storage
from videogen import context as videogen_context
from videogen.errors import DeadlineExceeded, TransferFailed
from videogen.safe_http import DownloadRefused, SafeDownloader
from videogen.settings import Settings
from videogen.storage import CHUNK, MIN_PART, download_and_store, upload_stream

VIDEO_URL = "https://cdn.provider.test/result/video.mp4"
MIB = 1024 * 1024
JOB_ID = "job-0001"
KEY = f"videos/{JOB_ID}.mp4"
METADATA = {"job-id": JOB_ID, "route": "task", "model": "sora-2"}
SINGLE = ("put_object",)
MULTIPART = ("create_multipart_upload", "upload_part", "complete_multipart_upload", "abort_multipart_upload")


def make_settings(**overrides: Any) -> Settings:
    return Settings.from_env().model_copy(update=overrides)


def s3() -> Any:
    return aws.client("s3")


def open_uploads() -> list[dict[str, Any]]:
    return s3().list_multipart_uploads(Bucket="videos").get("Uploads", [])


def stored_keys() -> list[str]:
    return [item["Key"] for item in s3().list_objects_v2(Bucket="videos").get("Contents", [])]


def assert_nothing_left() -> None:
    assert stored_keys() == []
    assert open_uploads() == []


def store(settings: Settings | None = None, url: str = VIDEO_URL, **kwargs: Any):
    """The store path as the pipeline runs it: the safe downloader, then the streamed upload."""
    settings = settings or make_settings()
    return download_and_store(url, settings=settings, downloader=SafeDownloader(settings), key=KEY, metadata=METADATA, **kwargs)


def pieces(body: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class S3Calls:
    """Records (and optionally sabotages) calls on the cached S3 client, around moto."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.bodies: list[tuple[str, Any]] = []
        self.fail: Callable[[str, dict[str, Any]], None] = lambda name, kwargs: None
        client = s3()
        for name in (
            "put_object",
            "create_multipart_upload",
            "upload_part",
            "complete_multipart_upload",
            "abort_multipart_upload",
        ):
            monkeypatch.setattr(client, name, self._wrap(name, getattr(client, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            # Part buffers are reused once uploaded: keep what each call sent, and the object.
            record = dict(kwargs)
            if "Body" in record:
                self.bodies.append((name, record["Body"]))
                record["Body"] = bytes(record["Body"])
            self.calls.append((name, record))
            self.fail(name, kwargs)
            return real(**kwargs)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def part_sizes(self) -> list[int]:
        return [len(kwargs["Body"]) for name, kwargs in self.calls if name == "upload_part"]


@pytest.fixture
def video_bucket() -> Iterator[None]:
    """Just the video bucket as template.yaml defines it: storage touches nothing else."""
    videogen_context.reset()
    with mock_aws(config=MOTO_CONFIG):
        s3().create_bucket(Bucket="videos")
        s3().put_bucket_lifecycle_configuration(Bucket="videos", LifecycleConfiguration=bucket_lifecycle())
        yield
    videogen_context.reset()


@pytest.fixture
def s3_calls(video_bucket, monkeypatch) -> S3Calls:
    return S3Calls(monkeypatch)


# -- success ------------------------------------------------------------------------------


@respx.mock
def test_small_video_is_one_put_with_job_metadata(s3_calls):
    # Given a provider serving a small MP4
    body = mp4_bytes(64 * 1024)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body, headers={"Content-Type": "video/mp4"}))

    # When it is stored
    video = store()

    # Then one atomic PUT wrote it, named after the job, typed and encrypted, and no upload is open
    assert s3_calls.names() == ["put_object"]
    assert (video.bucket, video.key, video.bytes, video.content_type) == ("videos", KEY, len(body), "video/mp4")
    head = s3().head_object(Bucket="videos", Key=KEY)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == METADATA
    assert head["ServerSideEncryption"] == "AES256"
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body
    assert open_uploads() == []


@respx.mock
def test_large_video_is_a_multipart_upload_in_minimum_sized_parts(s3_calls):
    # Given an 11 MiB MP4 and a configured part size below S3's 5 MiB minimum
    body = mp4_bytes(11 * MIB)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body))

    # When it is stored
    video = store(make_settings(part_size_bytes=1024))

    # Then it went up as 3 parts (5 + 5 + 1 MiB: the minimum wins), completed, intact
    assert s3_calls.names() == [
        "create_multipart_upload",
        "upload_part",
        "upload_part",
        "upload_part",
        "complete_multipart_upload",
    ]
    assert s3_calls.part_sizes() == [MIN_PART, MIN_PART, len(body) - 2 * MIN_PART]
    assert video.bytes == len(body)
    head = s3().head_object(Bucket="videos", Key=KEY)
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == METADATA
    assert head["ServerSideEncryption"] == "AES256"
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body
    assert open_uploads() == []


@respx.mock
def test_part_size_setting_above_the_minimum_is_used(s3_calls):
    body = mp4_bytes(13 * MIB)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body))

    store(make_settings(part_size_bytes=6 * MIB))

    assert s3_calls.part_sizes() == [6 * MIB, 6 * MIB, MIB]
    assert s3().head_object(Bucket="videos", Key=KEY)["ContentLength"] == len(body)


@respx.mock
def test_streamed_body_without_content_length_is_stored(video_bucket):
    # Given a chunked answer (no Content-Length) in uneven pieces
    body = mp4_bytes(6 * MIB + 17)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=pieces(body, 100_003)))

    video = store()

    assert video.bytes == len(body)
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body
    assert open_uploads() == []


@respx.mock
def test_gzip_encoded_download_is_stored_decoded(video_bucket):
    body = mp4_bytes(200_000)
    compressed = gzip.compress(body)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=compressed, headers={"Content-Encoding": "gzip"}))

    video = store()

    assert video.bytes == len(body)
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body


@respx.mock
def test_request_headers_are_sent_to_the_download(video_bucket):
    route = respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))

    store(headers={"Authorization": "Bearer sk-test"})

    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("split", [1, 3, 7, 11, 12, 13])
def test_mp4_check_works_across_chunk_boundaries(video_bucket, split):
    # Given the first bytes arrive in pieces smaller than the 12-byte box header
    body = mp4_bytes(5000)

    video = upload_stream(pieces(body, split), settings=make_settings(), key=KEY, metadata=METADATA, expected_bytes=len(body))

    assert video.bytes == len(body)
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_chunking_of_a_valid_video_stores_the_same_bytes(video_bucket, data):
    body = mp4_bytes(data.draw(st.integers(min_value=24, max_value=3000)))
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=len(body) - 1), max_size=20)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]

    upload_stream(iter(chunks), settings=make_settings(), key=KEY, metadata=METADATA, expected_bytes=len(body))

    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body


# -- refusals: nothing stored, no upload left ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>Access denied</body></html>" + b" " * 1000, "not an MP4"),
        (b"\x00\x00\x00\x18moov" + b"\x00" * 6 * MIB, "not an MP4"),
        (b"ftyp", "not an MP4"),
        (b"", "empty"),
    ],
    ids=["html", "large-non-mp4", "too-short", "empty"],
)
@respx.mock
def test_non_mp4_bytes_store_nothing(s3_calls, body, message):
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body))

    # Retrying would fetch the same bytes: refused for good
    with pytest.raises(DownloadRefused, match=message):
        store()

    # Checked before anything was uploaded: no object, no multipart upload ever started
    assert s3_calls.names() == []
    assert_nothing_left()


@pytest.mark.parametrize("size", [64 * 1024, 11 * MIB], ids=["single-put", "multipart"])
@respx.mock
def test_truncated_body_is_refused_and_aborted(s3_calls, size):
    # Given a Content-Length one mebibyte larger than the body that arrives
    body = mp4_bytes(size)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=pieces(body), headers={"Content-Length": str(size + MIB)}))

    with pytest.raises(TransferFailed, match=f"truncated: {size} of {size + MIB}"):
        store(make_settings(part_size_bytes=MIN_PART))

    assert "complete_multipart_upload" not in s3_calls.names() and "put_object" not in s3_calls.names()
    if size > MIN_PART:
        assert s3_calls.names().count("upload_part") == 2
        assert s3_calls.names()[-1] == "abort_multipart_upload"
    assert_nothing_left()


@respx.mock
def test_body_longer_than_content_length_is_refused(s3_calls):
    body = mp4_bytes(7 * MIB)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=pieces(body), headers={"Content-Length": str(6 * MIB)}))

    with pytest.raises(TransferFailed, match="longer than its Content-Length"):
        store(make_settings(part_size_bytes=MIN_PART))

    assert s3_calls.names()[-1] == "abort_multipart_upload"
    assert_nothing_left()


@respx.mock
def test_over_cap_content_length_is_refused_before_reading(s3_calls):
    # Given a video announced larger than the configured cap
    served: list[int] = []

    def body() -> Iterator[bytes]:
        for chunk in pieces(mp4_bytes(2 * MIB)):
            served.append(len(chunk))
            yield chunk

    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body(), headers={"Content-Length": str(2 * MIB)}))

    with pytest.raises(DownloadRefused, match="larger than the 1048576-byte cap"):
        store(make_settings(max_video_bytes=MIB))

    # Then not a byte was read or uploaded
    assert served == []
    assert s3_calls.names() == []
    assert_nothing_left()


@respx.mock
def test_over_cap_stream_without_content_length_is_aborted_at_the_cap(s3_calls):
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=pieces(mp4_bytes(12 * MIB))))

    with pytest.raises(DownloadRefused, match="cap"):
        store(make_settings(max_video_bytes=6 * MIB, part_size_bytes=MIN_PART))

    assert s3_calls.part_sizes() == [MIN_PART]
    assert s3_calls.names()[-1] == "abort_multipart_upload"
    assert_nothing_left()


@pytest.mark.parametrize(
    ("status", "for_good"), [(403, True), (410, True), (404, False), (429, False), (500, False), (503, False)]
)
@respx.mock
def test_non_200_download_stores_nothing(s3_calls, status, for_good):
    # Given the result URL answers an error (with an MP4-looking body, which must not matter)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(status, content=mp4_bytes()))

    with pytest.raises(TransferFailed, match=f"HTTP {status}") as raised:
        store()

    # Then gone/forbidden is final, a 404 (not yet propagated), 429 or 5xx may be retried
    assert isinstance(raised.value, DownloadRefused) is for_good
    assert raised.value.details["http_status"] == status
    assert s3_calls.names() == []
    assert_nothing_left()


@respx.mock
def test_connection_refused_is_a_transfer_failure(s3_calls):
    respx.get(VIDEO_URL).mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(TransferFailed, match="ConnectError"):
        store()

    assert_nothing_left()


@respx.mock
def test_connection_lost_mid_download_aborts_the_upload(s3_calls):
    def body() -> Iterator[bytes]:
        yield from pieces(mp4_bytes(6 * MIB))
        raise httpx.ReadError("connection reset by peer")

    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body()))

    with pytest.raises(TransferFailed, match="ReadError"):
        store(make_settings(part_size_bytes=MIN_PART))

    assert s3_calls.part_sizes() == [MIN_PART]
    assert s3_calls.names()[-1] == "abort_multipart_upload"
    assert_nothing_left()


def _fail_on_part_2(name: str, kwargs: dict[str, Any]) -> None:
    if name == "upload_part" and kwargs["PartNumber"] == 2:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "UploadPart")


def test_s3_failing_mid_upload_aborts_and_leaves_nothing(s3_calls):
    # Given S3 refuses the second part
    s3_calls.fail = _fail_on_part_2
    body = mp4_bytes(11 * MIB)

    # When the upload runs, the S3 error surfaces
    with pytest.raises(ClientError, match="SlowDown"):
        upload_stream(pieces(body), settings=make_settings(), key=KEY, metadata=METADATA, expected_bytes=len(body))

    # Then the multipart upload was aborted: no object, no orphan upload
    assert s3_calls.names() == ["create_multipart_upload", "upload_part", "upload_part", "abort_multipart_upload"]
    assert_nothing_left()


@respx.mock
def test_s3_failure_during_download_and_store_is_a_retryable_transfer_failure(s3_calls):
    # Given S3 refuses the second part of a stored download
    s3_calls.fail = _fail_on_part_2
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=mp4_bytes(11 * MIB)))

    # Then the pipeline sees a transfer failure it may retry (not a raw botocore error)
    with pytest.raises(TransferFailed, match="upload to S3 failed") as raised:
        store(make_settings(part_size_bytes=MIN_PART))

    assert not isinstance(raised.value, DownloadRefused)
    assert isinstance(raised.value.__cause__, ClientError)
    assert s3_calls.names()[-1] == "abort_multipart_upload"
    assert_nothing_left()


@pytest.mark.parametrize(
    "url",
    ["http://cdn.provider.test/video.mp4", "https://evil.example/video.mp4", "https://169.254.169.254/latest/meta-data/"],
    ids=["plain-http", "not-allowlisted", "metadata-service"],
)
@respx.mock
def test_refused_result_url_is_never_fetched(s3_calls, url):
    route = respx.get(url).mock(return_value=httpx.Response(200, content=mp4_bytes()))

    with pytest.raises(DownloadRefused, match="result URL refused"):
        store(url=url)

    assert not route.called
    assert s3_calls.names() == []
    assert_nothing_left()


class FakeClock:
    """``time.monotonic`` for storage, advanced by the test's body generator."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@respx.mock
def test_deadline_passing_mid_transfer_aborts(s3_calls, monkeypatch):
    # Given a transfer whose budget runs out after the first part was uploaded
    clock = FakeClock()
    monkeypatch.setattr(storage, "time", clock)

    def body() -> Iterator[bytes]:
        for number, chunk in enumerate(pieces(mp4_bytes(11 * MIB))):
            if number * CHUNK >= 6 * MIB:
                clock.now = 1031.0
            yield chunk

    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=body()))

    # When the store runs with a 30-second deadline
    with pytest.raises(DeadlineExceeded) as raised:
        store(make_settings(part_size_bytes=MIN_PART), deadline=1030.0)

    # Then it stopped at the deadline and aborted the upload it had started
    assert raised.value.code == "deadline_exceeded"
    assert raised.value.details["bytes_so_far"] == 6 * MIB
    assert s3_calls.names() == ["create_multipart_upload", "upload_part", "abort_multipart_upload"]
    assert_nothing_left()


@respx.mock
def test_deadline_already_passed_uploads_nothing(s3_calls, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(storage, "time", clock)
    respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=mp4_bytes()))

    with pytest.raises(DeadlineExceeded):
        store(deadline=999.0)

    assert s3_calls.names() == []
    assert_nothing_left()


def test_deadline_not_reached_completes(s3_calls, monkeypatch):
    monkeypatch.setattr(storage, "time", FakeClock())
    body = mp4_bytes(6 * MIB)

    video = upload_stream(
        pieces(body), settings=make_settings(part_size_bytes=MIN_PART), key=KEY, metadata=METADATA, deadline=1000.0
    )

    assert video.bytes == len(body)
    assert s3_calls.names()[-1] == "complete_multipart_upload"


# -- overlapped parts: bounded, ordered, aborted as a whole ----------------------------------


def varied_mp4(size: int) -> bytes:
    """An MP4 whose filler differs everywhere, so a part stored in the wrong place shows."""
    head = mp4_bytes(24)
    return head + random.Random(size).randbytes(size - len(head))


class PartGate:
    """Holds every ``upload_part`` until released; counts how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.running = 0
        self.most = 0
        self.open = threading.Event()

    def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        if name != "upload_part":
            return
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.lock.notify_all()
        try:
            assert self.open.wait(timeout=10), "upload_part was never released"
        finally:
            with self.lock:
                self.running -= 1

    def wait_until_running(self, count: int) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.running >= count, timeout=10)


def test_parts_upload_while_the_download_goes_on_with_bounded_buffers(s3_calls):
    # Given uploads that do not finish until released, and at most 3 parts in flight
    gate = PartGate()
    s3_calls.fail = gate
    body = varied_mp4(8 * MIN_PART + 1234)
    pulled = 0

    def chunks() -> Iterator[bytes]:
        nonlocal pulled
        for chunk in pieces(body):
            pulled += len(chunk)
            yield chunk

    seen: dict[str, Any] = {}

    def release_when_full() -> None:
        # The reader has 3 buffers out (filled, uploading); it must now wait, not read on.
        seen["full"] = gate.wait_until_running(3)
        time.sleep(0.2)  # room for a reader that ignored the bound to overrun it
        seen["pulled"] = pulled
        gate.open.set()

    releaser = threading.Thread(target=release_when_full)
    releaser.start()
    try:
        video = upload_stream(
            chunks(),
            settings=make_settings(part_size_bytes=MIN_PART, store_parts_in_flight=3),
            key=KEY,
            metadata=METADATA,
            expected_bytes=len(body),
        )
    finally:
        gate.open.set()
        releaser.join()

    # Then 3 parts were uploading at once, the reader stopped one chunk past 3 parts' worth,
    # and never more than 3 part buffers existed (each handed to S3 as it is, no copy)
    assert seen["full"] is True
    assert gate.most == 3
    assert seen["pulled"] <= 3 * MIN_PART + CHUNK
    part_bodies = [b for name, b in s3_calls.bodies if name == "upload_part"]
    assert all(isinstance(b, bytearray) for b in part_bodies)
    assert len({id(b) for b in part_bodies}) == 3
    assert video.bytes == len(body)
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body
    assert open_uploads() == []


def test_one_part_in_flight_uploads_one_part_at_a_time(s3_calls):
    gate = PartGate()
    gate.open.set()
    s3_calls.fail = gate
    body = varied_mp4(3 * MIN_PART + 5)

    upload_stream(
        pieces(body), settings=make_settings(part_size_bytes=MIN_PART, store_parts_in_flight=1), key=KEY, metadata=METADATA
    )

    assert gate.most == 1
    assert s3_calls.part_sizes() == [MIN_PART, MIN_PART, MIN_PART, 5]
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body


def test_parts_finishing_out_of_order_are_completed_in_order(s3_calls):
    # Given part 1 finishes only after parts 2 and 3 have finished
    later_parts_done = threading.Event()
    finished: list[int] = []
    real_upload = s3().upload_part

    def upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 1:
            assert later_parts_done.wait(timeout=10)
        answer = real_upload(**kwargs)
        finished.append(kwargs["PartNumber"])
        if {2, 3} <= set(finished):
            later_parts_done.set()
        return answer

    s3_calls_upload = s3_calls._wrap("upload_part", upload_part)
    setattr(s3(), "upload_part", s3_calls_upload)  # noqa: B010 - the fixture's wrapper, around this one
    body = varied_mp4(3 * MIN_PART + 777)

    upload_stream(
        pieces(body, 100_003),
        settings=make_settings(part_size_bytes=MIN_PART, store_parts_in_flight=4),
        key=KEY,
        metadata=METADATA,
        expected_bytes=len(body),
    )

    # Then part 1 really finished last, yet the upload lists parts 1..4 with their own ETags
    assert finished[-1] == 1 or finished.index(1) > finished.index(3)
    complete = next(kwargs for name, kwargs in s3_calls.calls if name == "complete_multipart_upload")
    assert [p["PartNumber"] for p in complete["MultipartUpload"]["Parts"]] == [1, 2, 3, 4]
    sent = {kwargs["PartNumber"]: kwargs["Body"] for name, kwargs in s3_calls.calls if name == "upload_part"}
    assert b"".join(sent[n] for n in (1, 2, 3, 4)) == body
    assert s3().get_object(Bucket="videos", Key=KEY)["Body"].read() == body
    assert open_uploads() == []


def test_part_failing_while_others_upload_aborts_after_they_end_and_leaves_nothing(s3_calls):
    # Given S3 refuses part 2 while parts 1 and 3 are still uploading
    events: list[str] = []
    lock = threading.Lock()
    part_3_started = threading.Event()
    real = {name: getattr(s3(), name) for name in ("upload_part", "abort_multipart_upload")}

    def upload_part(**kwargs: Any) -> Any:
        number = kwargs["PartNumber"]
        with lock:
            events.append(f"start {number}")
        try:
            if number == 3:
                part_3_started.set()
            if number == 2:
                assert part_3_started.wait(timeout=10)
                raise ClientError(
                    {"Error": {"Code": "InternalError", "Message": "We encountered an internal error."}}, "UploadPart"
                )
            if number in (1, 3):
                time.sleep(0.2)  # still running when part 2 fails
            return real["upload_part"](**kwargs)
        finally:
            with lock:
                events.append(f"end {number}")

    def abort(**kwargs: Any) -> Any:
        with lock:
            events.append("abort")
        return real["abort_multipart_upload"](**kwargs)

    setattr(s3(), "upload_part", s3_calls._wrap("upload_part", upload_part))  # noqa: B010
    setattr(s3(), "abort_multipart_upload", s3_calls._wrap("abort_multipart_upload", abort))  # noqa: B010
    body = varied_mp4(10 * MIN_PART)

    with pytest.raises(ClientError, match="InternalError"):
        upload_stream(
            pieces(body), settings=make_settings(part_size_bytes=MIN_PART, store_parts_in_flight=3), key=KEY, metadata=METADATA
        )

    # Then no part started after the failure was seen, every started part ended before the
    # abort, the abort came last and exactly once, and nothing is stored or left open
    assert events[-1] == "abort" and events.count("abort") == 1
    started = {e.split()[1] for e in events if e.startswith("start")}
    ended = {e.split()[1] for e in events[:-1] if e.startswith("end")}
    assert started == ended
    assert started <= {"1", "2", "3", "4"}
    assert "complete_multipart_upload" not in s3_calls.names()
    assert_nothing_left()


def test_parts_in_flight_setting_is_bounded():
    with pytest.raises(ValueError, match="store_parts_in_flight"):
        Settings.from_env({"STORE_PARTS_IN_FLIGHT": "0"})
    with pytest.raises(ValueError, match="store_parts_in_flight"):
        Settings.from_env({"STORE_PARTS_IN_FLIGHT": "9"})
    assert Settings.from_env({"STORE_PARTS_IN_FLIGHT": "2"}).store_parts_in_flight == 2
