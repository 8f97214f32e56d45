"""What the probe reads of a stored video: ranged GETs and bytes, against the object's size.

Generates MP4s of growing size with ``moov`` at the end (the hard case: the structure comes
after the media data), stores each in moto S3, runs the probe's structure parse and poster
frame, and prints the ranged GETs, the bytes read and the time taken. Not a test: figures.

    .venv/bin/python bench/bench_probe.py
"""

from __future__ import annotations

import io
import os
import random
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "videogen"))
for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
    os.environ.setdefault(key, value)

import av  # noqa: E402
import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from videogen.probe import RangeReader, parse_moov, poster_jpeg, read_moov  # noqa: E402


def video(frames: int, width: int = 640, height: int = 360) -> bytes:
    """Noise frames (they do not compress), MPEG-4, ``moov`` written last."""
    rng = random.Random(frames)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 15)
        for _ in range(frames):
            frame = av.VideoFrame(width, height, "rgb24")
            frame.planes[0].update(rng.randbytes(frame.planes[0].buffer_size))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def main() -> None:
    columns = ("object", 10), ("moov at", 8), ("structure GETs", 15), ("bytes", 9), ("+ poster GETs", 14), ("bytes", 10)
    print(" ".join(f"{name:>{width}}" for name, width in columns), f"{'share':>6} {'ms':>6}")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        for frames in (30, 150, 450):
            data = video(frames)
            key = f"videos/{frames}.mp4"
            s3.put_object(Bucket="bench", Key=key, Body=data)
            started = time.perf_counter()
            reader = RangeReader("bench", key)
            info = parse_moov(read_moov(reader, 64 * 1024 * 1024))
            structure = (reader.requests, reader.bytes_read)
            poster_jpeg(reader)
            elapsed = (time.perf_counter() - started) * 1000
            assert info.duration_seconds == frames / 15
            print(
                f"{len(data) / 2**20:8.1f}MB {data.rfind(b'moov') / len(data):8.0%} {structure[0]:>15} {structure[1]:>9}"
                f" {reader.requests:>14} {reader.bytes_read:>10} {reader.bytes_read / len(data):6.1%} {elapsed:6.0f}"
            )


if __name__ == "__main__":
    main()
