"""The downstream consumer: probe a stored MP4 and write its poster frame.

The probe function is subscribed (EventBridge rule) to the bucket's ``Object Created`` events
under ``videos/``. It is the worked example of S3-triggered processing:

* it reads the MP4's structure with ranged GETs: the top-level box headers one by one, then
  the ``moov`` box alone (wherever it is: ``moov`` may come after the media data), never the
  whole object;
* it records ``duration_seconds``, ``width``, ``height`` and ``codec`` on the job, with a
  warning when they differ from what was ordered (seconds +- 0.5, size or orientation);
* it decodes the first frame with PyAV (the probe function's own dependency, not the shared
  layer's) through a seekable ranged reader, and writes ``posters/{job_id}.jpg``.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from . import aws
from .models import Job, VideoProbe
from .observability import logger, metrics
from .repository import JobRepository
from .settings import Settings

# Ranged reads through the poster decoder come in blocks of this size (a small, bounded cache).
BLOCK = 256 * 1024
CACHED_BLOCKS = 16
SECONDS_TOLERANCE = 0.5
# A real MP4 has a handful of top-level boxes (ftyp, free, mdat, moov, ...); a file with more
# is not walked further (each header costs a ranged GET).
MAX_TOP_LEVEL_BOXES = 64


class ProbeError(Exception):
    """The object is not an MP4 the probe can read (recorded as a warning, never retried)."""


class RangeReader:
    """Ranged GETs of one S3 object; counts requests and bytes (the bench prints them)."""

    def __init__(self, bucket: str, key: str, size: int | None = None) -> None:
        self.bucket, self.key = bucket, key
        self.s3 = aws.client("s3")
        self.size = size if size is not None else int(self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        self.requests = 0
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self.size:
            return b""
        end = min(self.size, offset + length) - 1
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={offset}-{end}")["Body"].read()
        self.requests += 1
        self.bytes_read += len(body)
        return bytes(body)


# -- MP4 structure ---------------------------------------------------------------------------


@dataclass
class MovieInfo:
    duration_seconds: float | None
    width: int | None
    height: int | None
    codec: str | None


def _box_header(head: bytes, offset: int, file_size: int) -> tuple[bytes, int, int]:
    """(type, box size, header size) from the first 8..16 bytes of a box."""
    if len(head) < 8:
        raise ProbeError(f"truncated box header at byte {offset}")
    size32, kind = struct.unpack(">I4s", head[:8])
    if size32 == 1:
        if len(head) < 16:
            raise ProbeError(f"truncated large box header at byte {offset}")
        return kind, struct.unpack(">Q", head[8:16])[0], 16
    if size32 == 0:
        return kind, file_size - offset, 8
    return kind, size32, 8


def read_moov(reader: RangeReader, max_bytes: int) -> bytes:
    """The ``moov`` box's payload, found by walking top-level box headers with ranged GETs."""
    offset = 0
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if offset + 8 > reader.size:
            break
        kind, size, header = _box_header(reader.read(offset, 16), offset, reader.size)
        if size < header:
            raise ProbeError(f"bad box size {size} at byte {offset}")
        if kind == b"moov":
            if size > max_bytes:
                raise ProbeError(f"moov box of {size} bytes is over the {max_bytes}-byte cap")
            payload = reader.read(offset + header, size - header)
            if len(payload) != size - header:
                raise ProbeError("moov box is truncated")
            return payload
        offset += size
    raise ProbeError("no moov box: not an MP4 the probe can read")


def _children(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset + 8 <= len(data):
        kind, size, header = _box_header(data[offset : offset + 16], offset, len(data))
        if size < header or offset + size > len(data):
            raise ProbeError(f"bad {kind!r} box inside moov")
        yield kind, data[offset + header : offset + size]
        offset += size


def _child(data: bytes, kind: bytes) -> bytes | None:
    return next((payload for k, payload in _children(data) if k == kind), None)


def parse_moov(moov: bytes) -> MovieInfo:
    """Duration (``mvhd``), the video track's size (``tkhd``) and codec (``stsd``)."""
    try:
        return _parse_moov(moov)
    except (struct.error, IndexError) as exc:
        raise ProbeError(f"malformed moov box: {exc}") from exc


def _parse_moov(moov: bytes) -> MovieInfo:
    duration = None
    mvhd = _child(moov, b"mvhd")
    if mvhd is not None:
        if mvhd[0] == 1:
            timescale, length = struct.unpack(">IQ", mvhd[20:32])
        else:
            timescale, length = struct.unpack(">II", mvhd[12:20])
        duration = round(length / timescale, 3) if timescale else None
    for kind, trak in _children(moov):
        if kind != b"trak":
            continue
        mdia = _child(trak, b"mdia")
        hdlr = _child(mdia, b"hdlr") if mdia else None
        if hdlr is None or hdlr[8:12] != b"vide":
            continue
        width = height = None
        tkhd = _child(trak, b"tkhd")
        if tkhd is not None:
            base = 4 + (32 if tkhd[0] == 1 else 20) + 8 + 8 + 36
            w, h = struct.unpack(">II", tkhd[base : base + 8])
            width, height = w >> 16, h >> 16
        codec = None
        minf = _child(mdia, b"minf") if mdia else None
        stbl = _child(minf, b"stbl") if minf else None
        stsd = _child(stbl, b"stsd") if stbl else None
        if stsd is not None and len(stsd) >= 16:
            codec = stsd[12:16].decode("latin-1").strip() or None
        return MovieInfo(duration, width, height, codec)
    return MovieInfo(duration, None, None, None)


def warnings_for(job: Job, info: MovieInfo) -> list[str]:
    """What differs from the order: the duration (+- 0.5 s) and the size or orientation."""
    found: list[str] = []
    seconds, duration = job.seconds, info.duration_seconds
    if seconds is not None and duration is not None and abs(duration - seconds) > SECONDS_TOLERANCE:
        found.append(f"duration {duration:g} s differs from the {seconds} s ordered")
    if info.width and info.height:
        match = re.fullmatch(r"(\d+)x(\d+)", job.size or "")
        if match and (int(match[1]), int(match[2])) != (info.width, info.height):
            found.append(f"size {info.width}x{info.height} differs from the {job.size} ordered")
        elif not match and job.orientation:
            actual = "portrait" if info.height > info.width else "landscape"
            if actual != job.orientation:
                found.append(f"{actual} video ({info.width}x{info.height}) but {job.orientation} was ordered")
    if info.codec is None:
        found.append("no video track found")
    return found


# -- the poster frame ------------------------------------------------------------------------


class RangedFile(io.RawIOBase):
    """A seekable, read-only file over ranged GETs, with a small block cache (for PyAV)."""

    def __init__(self, reader: RangeReader) -> None:
        self.reader = reader
        self.position = 0
        self.blocks: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.reader.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def _block(self, index: int) -> bytes:
        if index not in self.blocks:
            if len(self.blocks) >= CACHED_BLOCKS:
                self.blocks.pop(next(iter(self.blocks)))
            self.blocks[index] = self.reader.read(index * BLOCK, BLOCK)
        return self.blocks[index]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.position >= self.reader.size or not len(view):
            return 0
        index, start = divmod(self.position, BLOCK)
        chunk = self._block(index)[start : start + len(view)]
        view[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def poster_jpeg(reader: RangeReader) -> bytes:
    """The first video frame as a JPEG (PyAV decodes it; its MJPEG encoder writes it)."""
    import av  # the probe function's own requirement, not the shared layer's
    from av.video.codeccontext import VideoCodecContext

    with av.open(RangedFile(reader), mode="r") as container:
        if not container.streams.video:
            raise ProbeError("no video stream to take a poster from")
        frame = next(container.decode(video=0), None)
    if frame is None:
        raise ProbeError("no frame could be decoded")
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    image = frame.reformat(format="yuvj420p")
    packets = [*encoder.encode(image), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def poster_key(settings: Settings, job_id: str) -> str:
    return f"{settings.poster_prefix}{job_id}.jpg"


def poster_url(settings: Settings, job: Job) -> str | None:
    """A presigned URL for the job's poster, like ``video.url``; ``None`` before it exists."""
    if job.video is None or job.video_probe is None or not job.video_probe.poster_key:
        return None
    return str(
        aws.client("s3").generate_presigned_url(
            "get_object",
            Params={"Bucket": job.video.bucket, "Key": job.video_probe.poster_key},
            ExpiresIn=settings.presign_expires_seconds,
        )
    )


# -- the operation -----------------------------------------------------------------------------


def job_id_of_key(settings: Settings, key: str) -> str | None:
    """``videos/{job_id}.mp4`` -> the job id; ``None`` for any other key."""
    match = re.fullmatch(re.escape(settings.video_prefix) + r"([0-9a-f]{32})\.mp4", key)
    return match[1] if match else None


@dataclass
class ProbeResult:
    job_id: str
    probe: VideoProbe
    requests: int
    bytes_read: int
    object_bytes: int


def probe_object(settings: Settings, repo: JobRepository, bucket: str, key: str) -> ProbeResult | None:
    """Probe ``s3://bucket/key`` and record the figures and poster on its job.

    ``None`` for an object that is not a job's video (or whose job is gone). An object that
    is not a readable MP4 is recorded with a warning rather than raised, since a retry would
    read the same bytes.
    """
    job_id = job_id_of_key(settings, key)
    if job_id is None:
        logger.info("not a job's video; ignored", extra={"key": key})
        return None
    job = repo.find(job_id)
    if job is None:
        logger.warning("video without a job; ignored", extra={"key": key})
        return None
    reader = RangeReader(bucket, key)
    try:
        info = parse_moov(read_moov(reader, settings.probe_max_moov_bytes))
    except ProbeError as exc:
        probe = VideoProbe(warnings=[f"not probed: {exc}"])
        repo.record_probe(job_id, probe)
        return ProbeResult(job_id, probe, reader.requests, reader.bytes_read, reader.size)
    probe = VideoProbe(
        duration_seconds=info.duration_seconds,
        width=info.width,
        height=info.height,
        codec=info.codec,
        warnings=warnings_for(job, info),
    )
    try:
        jpeg = poster_jpeg(reader)
    except Exception as exc:  # noqa: BLE001 - a poster is a nicety: the figures are still recorded
        logger.warning("no poster frame", extra={"job_id": job_id, "reason": f"{type(exc).__name__}: {exc}"[:300]})
        probe.warnings.append("no poster frame could be decoded")
    else:
        target = poster_key(settings, job_id)
        aws.client("s3").put_object(Bucket=bucket, Key=target, Body=jpeg, ContentType="image/jpeg", Metadata={"job-id": job_id})
        probe.poster_key = target
    repo.record_probe(job_id, probe)
    metrics.add_metric(name="VideosProbed", unit=MetricUnit.Count, value=1)
    return ProbeResult(job_id, probe, reader.requests, reader.bytes_read, reader.size)
