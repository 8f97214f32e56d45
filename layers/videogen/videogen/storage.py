"""Streamed storage of a video into S3: bounded memory, checked bytes, no partial objects.

The download is read chunk by chunk into part-sized buffers; each full buffer becomes one
part of a multipart upload, sent by a small thread pool while the next part is read (so the
total is about the slower of download and upload, not their sum). At most
``store_parts_in_flight`` buffers exist at once (memory: that many times the part size);
the reader waits for one to come back before reading on. A buffer goes to ``upload_part``
as it is, without a copy, and is reused once its part is stored. The first bytes must look
like an MP4 (an ``ftyp`` box) before anything is uploaded, and the upload is completed
only when the whole body arrived with the announced length. Any failure (of the download or
of any part) stops queued parts, waits for running ones, then aborts the multipart upload,
so S3 never holds a half-written object and no incomplete upload is left behind.

The download itself goes through :class:`~videogen.safe_http.SafeDownloader` (https only,
allowlisted hosts, global addresses only, connections pinned to the checked address,
redirects re-checked, deadlines). Failures that retrying cannot cure (a refused URL, a file
over the cap, bytes that are not an MP4, a 4xx answer that says the file is gone) raise
:class:`~videogen.safe_http.DownloadRefused`; the others raise :class:`TransferFailed`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .errors import DeadlineExceeded, TransferFailed
from .models import StoredVideo
from .observability import logger
from .safe_http import DownloadRefused, SafeDownloader
from .settings import Settings

MIN_PART = 5 * 1024 * 1024
CHUNK = 256 * 1024
MP4_BRANDS_BOX = b"ftyp"
# Bytes needed to recognise an MP4: the first box's size, type and major brand.
MP4_HEADER_PROBE = 12
# Download answers that retrying the same URL may cure; any other 4xx means the file is gone.
RETRYABLE_DOWNLOAD_STATUSES = frozenset({404, 408, 425, 429})


def video_key(settings: Settings, job_id: str) -> str:
    return f"{settings.video_prefix}{job_id}.mp4"


def looks_like_mp4(head: bytes) -> bool:
    """An ISO-BMFF file starts with a box whose type (bytes 4..8) is ``ftyp``."""
    return len(head) >= MP4_HEADER_PROBE and head[4:8] == MP4_BRANDS_BOX


def upload_stream(
    chunks: Iterator[bytes],
    *,
    settings: Settings,
    key: str,
    metadata: dict[str, str],
    expected_bytes: int | None = None,
    deadline: float | None = None,
) -> StoredVideo:
    """Upload ``chunks`` to ``key`` as one multipart upload; abort on any failure.

    Parts go up on a small thread pool while the next part is read, with at most
    ``settings.store_parts_in_flight`` part buffers alive (the one being filled included).
    ``deadline`` is a ``time.monotonic()`` value; passing it raises :class:`DeadlineExceeded`.
    """
    uploader = _PartUploader(settings, key, metadata)
    part_size = uploader.part_size
    buffer: bytearray | None = None
    filled = 0
    total = 0
    checked = False

    try:
        for chunk in chunks:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded("transfer did not finish within its time budget", bytes_so_far=total)
            total += len(chunk)
            if total > settings.max_video_bytes:
                raise DownloadRefused(f"video is larger than the {settings.max_video_bytes}-byte cap")
            if expected_bytes is not None and total > expected_bytes:
                raise TransferFailed("download is longer than its Content-Length")
            view = memoryview(chunk)
            while view:
                if buffer is None:
                    buffer = uploader.take_buffer(deadline, bytes_so_far=total - len(view))
                    filled = 0
                step = min(len(view), part_size - filled)
                buffer[filled : filled + step] = view[:step]
                filled += step
                view = view[step:]
                if not checked and total - len(view) >= MP4_HEADER_PROBE:
                    # The first part holds the first bytes (a part is at least 5 MiB).
                    if not looks_like_mp4(bytes(buffer[:MP4_HEADER_PROBE])):
                        raise DownloadRefused("downloaded bytes are not an MP4 file")
                    checked = True
                if filled == part_size:
                    uploader.send_part(buffer)
                    buffer = None
        if not checked:
            raise DownloadRefused("downloaded bytes are not an MP4 file" if total else "download was empty")
        if expected_bytes is not None and total != expected_bytes:
            raise TransferFailed(f"download truncated: {total} of {expected_bytes} bytes")
        if buffer is not None:
            # The last, short part: trimmed in place (no copy), never reused.
            del buffer[filled:]
        if uploader.upload_id is None:
            # Small video (under one part): one atomic PUT, no multipart upload needed.
            uploader.put_whole(buffer if buffer is not None else bytearray())
        else:
            if buffer is not None:
                uploader.send_part(buffer)
                buffer = None
            uploader.complete()
    except BaseException:
        uploader.abort()
        raise
    return StoredVideo(bucket=uploader.bucket, key=key, bytes=total, content_type="video/mp4")


class _PartUploader:
    """One multipart upload whose parts are sent by a small thread pool, in bounded memory.

    A part buffer is taken (``take_buffer``) before it is filled and handed back when its
    upload ends, so at most ``store_parts_in_flight`` buffers of ``part_size`` bytes exist at
    once: the reader waits for a free one instead of reading further ahead. Full buffers are
    reused; each is passed to ``upload_part`` as it is (no per-part copy).
    """

    def __init__(self, settings: Settings, key: str, metadata: dict[str, str]) -> None:
        self.s3 = aws.client("s3")
        self.bucket = settings.video_bucket
        self.key = key
        self.metadata = metadata
        self.part_size = max(MIN_PART, settings.part_size_bytes)
        self.in_flight = max(1, settings.store_parts_in_flight)
        self.upload_id: str | None = None
        self._slots = threading.BoundedSemaphore(self.in_flight)
        self._spare: list[bytearray] = []
        self._futures: list[Future[dict[str, Any]]] = []
        self._pool: ThreadPoolExecutor | None = None

    def take_buffer(self, deadline: float | None, *, bytes_so_far: int) -> bytearray:
        """A part-sized buffer, once fewer than ``in_flight`` are being filled or uploaded."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        acquired = self._slots.acquire(timeout=timeout)
        self._raise_failed_part()
        if not acquired:
            raise DeadlineExceeded("transfer did not finish within its time budget", bytes_so_far=bytes_so_far)
        try:
            return self._spare.pop()
        except IndexError:
            return bytearray(self.part_size)

    def send_part(self, buffer: bytearray) -> None:
        """Queue ``buffer`` as the next part; its slot is released when the upload ends."""
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="video/mp4", Metadata=self.metadata, ServerSideEncryption="AES256"
            )["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="store-part")
        assert self._pool is not None
        number = len(self._futures) + 1
        self._futures.append(self._pool.submit(self._upload_part, number, buffer))

    def _upload_part(self, number: int, buffer: bytearray) -> dict[str, Any]:
        try:
            answer = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=buffer
            )
            if len(buffer) == self.part_size:
                self._spare.append(buffer)
            return {"PartNumber": number, "ETag": answer["ETag"]}
        finally:
            self._slots.release()

    def _raise_failed_part(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                future.result()

    def put_whole(self, body: bytearray) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=body,
            ContentType="video/mp4",
            Metadata=self.metadata,
            ServerSideEncryption="AES256",
        )

    def complete(self) -> None:
        """Wait for every part (in order; the first failure raises), then complete the upload."""
        parts = [future.result() for future in self._futures]
        self._shutdown()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )
        self.upload_id = None

    def abort(self) -> None:
        """Stop queued parts, wait for running ones, then abort the multipart upload (if any)."""
        self._shutdown(cancel=True)
        if self.upload_id is None:
            return
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the bucket's lifecycle rule removes what this misses
            logger.warning("could not abort multipart upload", extra={"key": self.key})

    def _shutdown(self, *, cancel: bool = False) -> None:
        # Parts still running when the upload is aborted could be stored after the abort;
        # waiting for them first is what makes the abort leave nothing behind.
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None


def download_and_store(
    url: str,
    *,
    settings: Settings,
    key: str,
    metadata: dict[str, str],
    headers: dict[str, str] | None = None,
    deadline: float | None = None,
    downloader: SafeDownloader | None = None,
) -> StoredVideo:
    """Stream ``url`` into S3 at ``key``. Raises :class:`TransferFailed` on any problem.

    ``deadline`` (``time.monotonic()``) bounds the whole transfer: connect and read timeouts
    never exceed the time left. ``downloader`` is the process's safe downloader (one is made
    from ``settings`` when none is given).
    """
    downloader = downloader or SafeDownloader(settings)
    budget = None if deadline is None else deadline - time.monotonic()
    try:
        with downloader.open(url, headers=headers, budget_seconds=budget) as response:
            if response.status_code != 200:
                status = response.status_code
                failure = DownloadRefused if 400 <= status < 500 and status not in RETRYABLE_DOWNLOAD_STATUSES else TransferFailed
                raise failure(f"download answered HTTP {status}", http_status=status)
            length_header = response.headers.get("content-length", "").strip()
            expected = int(length_header) if length_header.isascii() and length_header.isdigit() else None
            if expected is not None and expected > settings.max_video_bytes:
                raise DownloadRefused(f"video is larger than the {settings.max_video_bytes}-byte cap")
            return upload_stream(
                response.iter_raw(CHUNK) if _identity(response) else response.iter_bytes(CHUNK),
                settings=settings,
                key=key,
                metadata=metadata,
                expected_bytes=expected if _identity(response) else None,
                deadline=deadline,
            )
    except httpx.TimeoutException as exc:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("transfer did not finish within its time budget") from exc
        raise TransferFailed(f"download failed: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise TransferFailed(f"download failed: {type(exc).__name__}: {exc}") from exc
    except (BotoCoreError, ClientError) as exc:
        # The multipart upload was already aborted; the caller may retry the whole transfer.
        raise TransferFailed(f"upload to S3 failed: {type(exc).__name__}") from exc


def delete_video(video: StoredVideo) -> None:
    """Remove a stored video (one whose job ended otherwise while it was being written)."""
    aws.client("s3").delete_object(Bucket=video.bucket, Key=video.key)


def _identity(response: httpx.Response) -> bool:
    return response.headers.get("content-encoding", "identity").lower() in ("", "identity")


def presigned_get(bucket: str, key: str, seconds: int) -> tuple[str, str]:
    """A presigned GET URL for an object and when it expires (ISO-8601): videos and input images."""
    url = aws.client("s3").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds)
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    return url, expires.isoformat(timespec="seconds").replace("+00:00", "Z")


def presign(settings: Settings, video: StoredVideo) -> tuple[str, str]:
    """A presigned GET URL for a stored video and when it expires (ISO-8601)."""
    return presigned_get(video.bucket, video.key, settings.presign_expires_seconds)
