"""Streamed storage of a video into S3: bounded memory, checked bytes, no partial objects.

The download is read chunk by chunk into one part-sized buffer; each full buffer becomes
one part of a multipart upload. The first bytes must look like an MP4 (an ``ftyp`` box)
before anything is uploaded, and the upload is completed only when the whole body arrived
with the announced length. Any failure aborts the multipart upload, so S3 never holds a
half-written object and no incomplete upload is left behind.

The download itself goes through :class:`~videogen.safe_http.SafeDownloader` (https only,
allowlisted hosts, global addresses only, connections pinned to the checked address,
redirects re-checked, deadlines). Failures that retrying cannot cure (a refused URL, a file
over the cap, bytes that are not an MP4, a 4xx answer that says the file is gone) raise
:class:`~videogen.safe_http.DownloadRefused`; the others raise :class:`TransferFailed`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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
# Download answers that retrying the same URL may cure; any other 4xx means the file is gone.
RETRYABLE_DOWNLOAD_STATUSES = frozenset({404, 408, 425, 429})


def video_key(settings: Settings, job_id: str) -> str:
    return f"{settings.video_prefix}{job_id}.mp4"


def looks_like_mp4(head: bytes) -> bool:
    """An ISO-BMFF file starts with a box whose type (bytes 4..8) is ``ftyp``."""
    return len(head) >= 12 and head[4:8] == MP4_BRANDS_BOX


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

    ``deadline`` is a ``time.monotonic()`` value; passing it raises :class:`DeadlineExceeded`.
    """
    s3 = aws.client("s3")
    bucket = settings.video_bucket
    part_size = max(MIN_PART, settings.part_size_bytes)
    upload_id: str | None = None
    parts: list[dict[str, Any]] = []
    buffer = bytearray()
    total = 0
    checked = False

    def flush() -> None:
        nonlocal upload_id
        if upload_id is None:
            upload_id = s3.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType="video/mp4", Metadata=metadata, ServerSideEncryption="AES256"
            )["UploadId"]
        number = len(parts) + 1
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer))
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        buffer.clear()

    try:
        for chunk in chunks:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded("transfer did not finish within its time budget", bytes_so_far=total)
            total += len(chunk)
            if total > settings.max_video_bytes:
                raise DownloadRefused(f"video is larger than the {settings.max_video_bytes}-byte cap")
            if expected_bytes is not None and total > expected_bytes:
                raise TransferFailed("download is longer than its Content-Length")
            buffer += chunk
            if not checked and len(buffer) >= 12:
                if not looks_like_mp4(bytes(buffer[:12])):
                    raise DownloadRefused("downloaded bytes are not an MP4 file")
                checked = True
            if len(buffer) >= part_size:
                flush()
        if not checked:
            raise DownloadRefused("downloaded bytes are not an MP4 file" if total else "download was empty")
        if expected_bytes is not None and total != expected_bytes:
            raise TransferFailed(f"download truncated: {total} of {expected_bytes} bytes")
        if upload_id is None:
            # Small video: one atomic PUT, no multipart upload needed.
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=bytes(buffer),
                ContentType="video/mp4",
                Metadata=metadata,
                ServerSideEncryption="AES256",
            )
        else:
            if buffer:
                flush()
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
            upload_id = None
    except BaseException:
        if upload_id is not None:
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the bucket's lifecycle rule removes what this misses
                logger.warning("could not abort multipart upload", extra={"key": key})
        raise
    return StoredVideo(bucket=bucket, key=key, bytes=total, content_type="video/mp4")


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
