"""Input images for image-to-video: checked by their bytes, stored once, handed to providers.

A client gives an image either as ``image_url`` (https; fetched here, with a size cap) or as
``image_base64`` in the JSON body (raw base64 or a ``data:image/...;base64,`` URL). API Gateway
accepts 10 MB, but a synchronous Lambda invocation carries at most 6 MB of event, and base64
grows the bytes by 4/3 (twice, when API Gateway base64-encodes a non-JSON body); so an inline
image is capped at ``max_inline_image_bytes`` (3 MB raw, 4 MB of base64, leaving room for the
prompt, a second base64 and the event envelope). Larger images (up
to the catalog's ``image.max_bytes``, 10 MB) go by ``image_url``.

Whatever the source, the bytes are checked the same way: the format comes from the magic
bytes (JPEG, PNG, WebP; GIF and anything else refused), the size must be within the catalog's
limit, and the pixel size is read from the file's headers (PNG ``IHDR``, JPEG ``SOFn``, WebP
``VP8``/``VP8L``/``VP8X``) with a small parser rather than an imaging library, which would
add tens of megabytes to the layer for a few header fields. The checked image is stored at
``inputs/{job_id}.{ext}``; providers get it in their own form (a presigned GET URL for the
task and legacy routes, the file itself for the official route).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import httpx

from . import aws
from .catalog import ImageRules, ResolvedSpec
from .errors import InvalidRequest, TransferFailed
from .models import CreateVideoRequest, InputImage
from .settings import Settings
from .storage import presigned_get

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
# JPEG start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
_FETCH_CHUNK = 64 * 1024

# Opens a streamed GET of a URL (the safe downloader's ``open``, or a plain client's ``stream``).
OpenUrl = Callable[[str], AbstractContextManager[httpx.Response]]


class ImageError(ValueError):
    """The bytes are not an image this pipeline accepts (the message says why)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the headers of an image say: its format and pixel size."""

    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def sniff_format(head: bytes) -> str | None:
    """The image format named by the magic bytes: ``jpeg``, ``png``, ``webp``, ``gif`` or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _png_size(data: bytes) -> tuple[int, int]:
    # Signature (8), then the IHDR chunk: length (4), type (4), width (4), height (4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("PNG has no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    end = len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise ImageError("JPEG marker expected")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # standalone markers carry no length
        if marker in (0xD9, 0xDA):
            break  # end of image / start of scan before any frame header
        if pos + 2 > end:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ImageError("JPEG segment length is invalid")
        if marker in _SOF_MARKERS:
            if pos + 7 > end:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return width, height
        pos += length
    raise ImageError("JPEG has no frame header (SOFn)")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height.
        if len(data) < 30 or data[23:26] != b"\x9d\x01\x2a":
            raise ImageError("WebP VP8 frame header is invalid")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        # Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each.
        if len(data) < 25 or data[20] != 0x2F:
            raise ImageError("WebP VP8L header is invalid")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        # Extended: flags (4 bytes), then canvas width-1 and height-1 in 24 bits each.
        if len(data) < 30:
            raise ImageError("WebP VP8X header is truncated")
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ImageError("WebP has no VP8, VP8L or VP8X chunk")


def inspect_image(data: bytes) -> ImageInfo:
    """Format and pixel size of ``data``; raises :class:`ImageError` for anything else."""
    fmt = sniff_format(data[:16])
    if fmt == "gif":
        raise ImageError("GIF images are not accepted")
    if fmt is None:
        raise ImageError("the bytes are not a JPEG, PNG or WebP image")
    reader = {"png": _png_size, "jpeg": _jpeg_size, "webp": _webp_size}[fmt]
    try:
        width, height = reader(data)
    except (struct.error, IndexError) as exc:
        raise ImageError(f"{fmt.upper()} header is truncated") from exc
    if width <= 0 or height <= 0:
        raise ImageError(f"{fmt.upper()} header gives an empty pixel size")
    return ImageInfo(fmt, width, height)


def check_image(data: bytes, rules: ImageRules, *, field: str, size: str | None, where: dict[str, str]) -> ImageInfo:
    """Check ``data`` against the catalog's image rules for one route and model.

    ``size`` is the video size the image must equal when the rules say so (official route).
    Raises :class:`InvalidRequest` naming the field and the allowed values.
    """
    if len(data) > rules.max_bytes:
        raise InvalidRequest(
            f"image is {len(data)} bytes; at most {rules.max_bytes} bytes are allowed",
            field=field,
            max_bytes=rules.max_bytes,
            **where,
        )
    try:
        info = inspect_image(data)
    except ImageError as exc:
        raise InvalidRequest(
            f"{exc}; allowed formats: {', '.join(rules.formats)}", field=field, allowed=rules.formats, **where
        ) from exc
    if info.format not in rules.formats:
        raise InvalidRequest(
            f"{info.format} images are not accepted here; allowed formats: {', '.join(rules.formats)}",
            field=field,
            allowed=rules.formats,
            **where,
        )
    if rules.must_match_size and size is not None and info.size != size:
        raise InvalidRequest(
            f"image is {info.size} pixels but the video size is {size}; the image must be exactly {size}",
            field=field,
            allowed=[size],
            image_size=info.size,
            **where,
        )
    return info


def decode_inline_image(text: str, *, max_bytes: int) -> bytes:
    """Decode ``image_base64`` (raw base64 or a ``data:`` URL); raises :class:`InvalidRequest`."""
    match = _DATA_URL.match(text)
    payload = text[match.end() :] if match else text
    payload = "".join(payload.split())  # line breaks are common in pasted base64
    # Refuse before decoding when the text alone proves the image is too large.
    if len(payload) // 4 * 3 - 2 > max_bytes:
        raise _inline_too_large(max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("image_base64 is not valid base64", field="image_base64") from exc
    if not data:
        raise InvalidRequest("image_base64 is empty", field="image_base64")
    if len(data) > max_bytes:
        raise _inline_too_large(max_bytes)
    return data


def _inline_too_large(max_bytes: int) -> InvalidRequest:
    return InvalidRequest(
        f"inline image is larger than {max_bytes} bytes; send a larger image as image_url",
        field="image_base64",
        max_bytes=max_bytes,
    )


def fetch_image(url: str, *, open_url: OpenUrl, max_bytes: int) -> bytes:
    """Download ``image_url`` with a size cap; raises :class:`InvalidRequest`.

    ``open_url`` opens a streamed GET (the safe downloader: https only, public addresses only,
    redirects re-checked). An unreachable or refused URL is ``invalid_image_url``.
    """
    try:
        with open_url(url) as response:
            if response.status_code != 200:
                raise InvalidRequest(
                    f"image_url answered HTTP {response.status_code}", field="image_url", code="invalid_image_url"
                )
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InvalidRequest(
                    f"image at image_url is {length} bytes; at most {max_bytes} bytes are allowed",
                    field="image_url",
                    max_bytes=max_bytes,
                )
            data = bytearray()
            for chunk in response.iter_bytes(_FETCH_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise InvalidRequest(
                        f"image at image_url is larger than {max_bytes} bytes", field="image_url", max_bytes=max_bytes
                    )
            return bytes(data)
    except TransferFailed as exc:  # refused by the download policy (host, address, scheme)
        raise InvalidRequest(
            f"image_url refused: {exc.message.removeprefix('result URL refused: ')}", field="image_url", code="invalid_image_url"
        ) from exc
    except httpx.HTTPError as exc:
        raise InvalidRequest(
            f"image_url could not be fetched: {type(exc).__name__}", field="image_url", code="invalid_image_url"
        ) from exc


@dataclass(frozen=True)
class CheckedImage:
    """A request's image after every check: its bytes, what they are, and where they came from."""

    data: bytes
    info: ImageInfo
    source: Literal["url", "upload"]


def load_request_image(
    request: CreateVideoRequest, spec: ResolvedSpec, settings: Settings, open_url: OpenUrl
) -> CheckedImage | None:
    """The request's image (``image_base64`` or ``image_url``), checked against the catalog."""
    if request.image_base64 is None and request.image_url is None:
        return None
    field = "image_base64" if request.image_base64 is not None else "image_url"
    where = {"route": spec.route, "model": spec.model}
    rules = spec.spec.image
    if rules is None:
        raise InvalidRequest(f"{spec.model} on route {spec.route} takes no image (text-to-video only)", field=field, **where)
    source: Literal["url", "upload"] = "upload" if request.image_base64 is not None else "url"
    try:
        if request.image_base64 is not None:
            inline_cap = min(rules.max_bytes, settings.max_inline_image_bytes)
            data = decode_inline_image(request.image_base64, max_bytes=inline_cap)
        else:
            assert request.image_url is not None
            data = fetch_image(request.image_url, open_url=open_url, max_bytes=rules.max_bytes)
    except InvalidRequest as exc:
        exc.details.update(where)  # the limits named are this route's and model's
        raise
    info = check_image(data, rules, field=field, size=spec.size, where=where)
    return CheckedImage(data=data, info=info, source=source)


def input_key(settings: Settings, job_id: str, info: ImageInfo) -> str:
    return f"{settings.input_image_prefix}{job_id}.{EXTENSIONS[info.format]}"


def store_input_image(
    settings: Settings, job_id: str, data: bytes, info: ImageInfo, source: Literal["url", "upload"]
) -> InputImage:
    """Write the checked image to ``inputs/{job_id}.{ext}`` (one PUT; it is at most a few MB)."""
    key = input_key(settings, job_id, info)
    aws.client("s3").put_object(
        Bucket=settings.video_bucket,
        Key=key,
        Body=data,
        ContentType=info.content_type,
        Metadata={"job-id": job_id, "source": source},
        ServerSideEncryption="AES256",
    )
    return InputImage(
        bucket=settings.video_bucket,
        key=key,
        bytes=len(data),
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        source=source,
    )


def delete_input_image(image: InputImage) -> None:
    """Remove a stored input image (a job that was never recorded must leave nothing behind)."""
    aws.client("s3").delete_object(Bucket=image.bucket, Key=image.key)


def input_image_url(settings: Settings, image: InputImage) -> tuple[str, str]:
    """A presigned https GET URL a provider can fetch the image from, and when it expires."""
    return presigned_get(image.bucket, image.key, settings.input_image_url_expires_seconds)


def file_name(image: InputImage) -> str:
    return image.key.rsplit("/", 1)[-1]
