"""Input images: format by magic bytes, pixel size from the headers, inline decoding."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inputs import imagefiles as img
from videogen.catalog import ImageRules
from videogen.errors import InvalidRequest
from videogen.images import ImageError, check_image, decode_inline_image, inspect_image

WHERE = {"route": "official", "model": "sora-2"}


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (img.png(1280, 720), "png"),
        (img.jpeg(720, 1280), "jpeg"),
        (img.jpeg(1792, 1024, progressive=True), "jpeg"),
        (img.jpeg(640, 480, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"), "jpeg"),
        (img.webp(1280, 720), "webp"),  # lossy: VP8
        (img.webp(1024, 1792, lossless=True), "webp"),  # VP8L
        (img.webp(720, 1280, alpha=True), "webp"),  # extended: VP8X
    ],
    ids=["png", "jpeg", "jpeg-progressive", "jpeg-exif", "webp-vp8", "webp-vp8l", "webp-vp8x"],
)
def test_real_files_are_read_by_their_headers(data, fmt):
    from io import BytesIO

    from PIL import Image

    info = inspect_image(data)
    assert info.format == fmt
    assert (info.width, info.height) == Image.open(BytesIO(data)).size


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=1, max_value=2500),
    st.integers(min_value=1, max_value=2500),
    st.sampled_from([("PNG", {}), ("JPEG", {}), ("WEBP", {}), ("WEBP", {"lossless": True}), ("WEBP", {"alpha": True})]),
)
def test_the_parser_agrees_with_pillow_on_any_size(width, height, kind):
    fmt, options = kind
    data = img.image_bytes(width, height, fmt, **options)
    info = inspect_image(data)
    assert (info.width, info.height) == (width, height)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP"]))
def test_hostile_bytes_are_refused_cleanly(tail, head):
    try:
        info = inspect_image(head + tail)
    except ImageError:
        return
    assert info.width > 0 and info.height > 0


@pytest.mark.parametrize("data", [img.png(), img.jpeg(), img.webp(), img.webp(lossless=True), img.webp(alpha=True)])
def test_every_truncated_header_is_refused_and_never_misread(data):
    size = (inspect_image(data).width, inspect_image(data).height)
    results = []
    for cut in range(len(data)):
        try:
            info = inspect_image(data[:cut])
        except ImageError:
            results.append(None)
        else:
            results.append((info.width, info.height))
    # Short prefixes are refused; once the size fields are in, the size is the real one.
    first = results.index(size)
    assert all(r is None for r in results[:first]) and all(r == size for r in results[first:])
    assert first < 300


def test_gif_and_other_formats_are_refused():
    with pytest.raises(ImageError, match="GIF images are not accepted"):
        inspect_image(img.gif())
    with pytest.raises(ImageError, match="not a JPEG, PNG or WebP"):
        inspect_image(b"BM" + b"\x00" * 100)  # BMP


def test_check_names_allowed_values():
    rules = ImageRules(max_bytes=10 * 1024 * 1024, must_match_size=True)
    assert check_image(img.png(1280, 720), rules, field="image_url", size="1280x720", where=WHERE).size == "1280x720"

    with pytest.raises(InvalidRequest) as wrong_size:
        check_image(img.png(1024, 1024), rules, field="image_url", size="1280x720", where=WHERE)
    assert wrong_size.value.details == {"field": "image_url", "allowed": ["1280x720"], "image_size": "1024x1024", **WHERE}

    with pytest.raises(InvalidRequest) as gif:
        check_image(img.gif(), rules, field="image_base64", size=None, where=WHERE)
    assert gif.value.details["allowed"] == ["jpeg", "png", "webp"]

    with pytest.raises(InvalidRequest) as big:
        check_image(img.padded(img.png(), 11 * 1024 * 1024), rules, field="image_url", size=None, where=WHERE)
    assert big.value.details["max_bytes"] == 10 * 1024 * 1024

    png_only = ImageRules(formats=["png"])
    with pytest.raises(InvalidRequest) as fmt:
        check_image(img.jpeg(), png_only, field="image_url", size=None, where=WHERE)
    assert fmt.value.details["allowed"] == ["png"]


def test_inline_images_decode_from_base64_or_data_url():
    data = img.png(16, 16)
    assert decode_inline_image(img.b64(data), max_bytes=1000) == data
    assert decode_inline_image(img.data_url(data), max_bytes=1000) == data
    wrapped = "\n".join(img.b64(data)[i : i + 76] for i in range(0, len(img.b64(data)), 76))
    assert decode_inline_image(wrapped, max_bytes=1000) == data


@pytest.mark.parametrize("text", ["not base64!", "data:image/png;base64,@@@", "===="])
def test_bad_base64_is_a_400(text):
    with pytest.raises(InvalidRequest) as caught:
        decode_inline_image(text, max_bytes=1000)
    assert caught.value.details["field"] == "image_base64"


def test_inline_image_over_the_cap_is_refused_before_decoding():
    with pytest.raises(InvalidRequest) as caught:
        decode_inline_image("A" * 2000, max_bytes=1000)
    assert caught.value.details == {"field": "image_base64", "max_bytes": 1000}
    assert "send a larger image as image_url" in caught.value.message
