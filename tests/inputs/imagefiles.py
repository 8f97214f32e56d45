"""Real image files for the tests, written by Pillow (a development dependency only).

The layer reads image headers with its own small parser; these files come from an
independent encoder, so the tests compare the parser against real JPEG, PNG and WebP output.
"""

from __future__ import annotations

import base64
import io

from PIL import Image


def image_bytes(width: int, height: int, fmt: str = "PNG", **options: object) -> bytes:
    """An image of ``width`` x ``height`` in ``fmt`` (``PNG``, ``JPEG``, ``WEBP``, ``GIF``)."""
    mode = "RGBA" if options.pop("alpha", False) else "RGB"
    image = Image.new(mode, (width, height), (200, 120, 40, 128)[: len(mode)])
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png(width: int = 1280, height: int = 720) -> bytes:
    return image_bytes(width, height, "PNG")


def jpeg(width: int = 1280, height: int = 720, **options: object) -> bytes:
    return image_bytes(width, height, "JPEG", **options)


def webp(width: int = 1280, height: int = 720, **options: object) -> bytes:
    return image_bytes(width, height, "WEBP", **options)


def gif(width: int = 64, height: int = 64) -> bytes:
    return image_bytes(width, height, "GIF")


def padded(data: bytes, total: int) -> bytes:
    """``data`` grown to ``total`` bytes (PNG readers ignore bytes after IEND)."""
    return data + b"\x00" * (total - len(data))


def data_url(data: bytes, content_type: str = "image/png") -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
