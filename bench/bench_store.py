"""Benchmark: time and peak memory of storing a video, the project's way against two references.

    python bench/bench_store.py [--sizes 256,1024] [--rounds 3] [--parts-in-flight N]

Three ways of moving one generated MP4 from an HTTP server into S3 are compared in one run:

* ``naive``: the whole body read into memory (``response.read()``), then one ``put_object``;
* ``sequential``: a plain 8 MiB stream: chunks gathered into one 8 MiB buffer, each full
  buffer uploaded as a part with a blocking ``upload_part`` inside the read loop;
* ``project``: ``videogen.storage.download_and_store``, the pipeline's store path (parts
  uploaded on a small pool while the download goes on, ``store_parts_in_flight`` buffers).

All three download through the pipeline's ``safe_http.SafeDownloader`` (the MP4 server is plain
http on loopback, so the worker sets the development-only local-stack switch) and use the same
boto3 S3 client configuration (``videogen.aws``). The runs alternate: every round runs each
size in each mode once, the modes in a rotated order, each in a fresh worker process.

Processes, so that only the measured code's memory is counted:

* an MP4 server (``serve-mp4``) on 127.0.0.1 generates each video on the fly (an ``ftyp`` box,
  an ``mdat`` header, then one reused 1 MiB filler block);
* a moto server (``serve-moto``): moto's S3 in server mode, in its own process, reached through
  ``AWS_ENDPOINT_URL``. (moto 5.2.5 joins all parts into two full copies on completion: in
  process that would be charged to the worker);
* one fresh worker per (round, size, mode). It imports everything, warms up with a 64 KiB
  download and ``put_object`` (boto3 loads its models lazily: a once-per-container cost),
  resets the RSS high-water mark (``/proc/self/clear_refs`` = 5), runs the transfer and
  reports its time and ``VmHWM`` after minus ``VmRSS`` before; then checks the stored object.

Prints one row per (size, mode): medians over the rounds of peak RSS growth and time, MiB/s,
and time ÷ naive (median over rounds of the per-round ratio, both runs of a round being
neighbours in time); then how long moto's ``CompleteMultipartUpload`` took (moto joins all
parts into two full copies of the object there, work real S3 does not do in that call) and
the ratio without it; last, ``RESULT size_mib=<largest> time_ratio=<x> rss_mib=<y>`` for the
project's way at the largest size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
BUCKET = "bench-videos"
MODES = ("naive", "sequential", "project")
SEQUENTIAL_PART = 8 * MIB
FILLER = 1 * MIB
# Every mode runs under the same deadline (the pipeline's reads are clamped to it).
BUDGET_SECONDS = 600.0
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
AWS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
}


# -- the MP4 server (subprocess) ------------------------------------------------------------


def serve_mp4() -> None:
    """Serve ``GET /<bytes>.mp4`` as a generated MP4 of exactly that many bytes."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    filler = memoryview(bytes(FILLER))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            name = self.path.lstrip("/").removesuffix(".mp4")
            if not name.isdigit() or int(name) < len(MP4_HEAD) + 8:
                self.send_error(404)
                return
            size = int(name)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(MP4_HEAD + (size - len(MP4_HEAD)).to_bytes(4, "big") + b"mdat")
            left = size - len(MP4_HEAD) - 8
            while left > 0:
                step = min(left, FILLER)
                self.wfile.write(filler[:step])
                left -= step

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# -- the moto S3 server (subprocess) ------------------------------------------------------


def serve_moto() -> None:
    """Run moto's server on a free loopback port until stdin closes."""
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


@contextmanager
def subprocess_server(role: str, env: dict[str, str]) -> Iterator[int]:
    """Start ``bench_store.py <role>``; yield the port it prints; stop it afterwards."""
    proc = subprocess.Popen([sys.executable, __file__, role], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"{role} did not start (printed {line!r})")
        yield int(line)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the measured worker (one fresh subprocess per round, size and mode) --------------------


def _status() -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def worker(mode: str, size: int, video_base: str, parts_in_flight: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "layers" / "videogen"))
    from videogen import aws
    from videogen.safe_http import SafeDownloader
    from videogen.settings import Settings
    from videogen.storage import CHUNK, download_and_store, video_key

    settings = Settings(
        video_bucket=BUCKET,
        part_size_bytes=SEQUENTIAL_PART,
        store_parts_in_flight=parts_in_flight,
        read_timeout_seconds=60,
        allow_insecure_downloads_for_local_stack=True,
    )
    downloader = SafeDownloader(settings)
    # moto on a shared machine can take longer than the pipeline's 30 s read timeout to join
    # a 1 GiB upload; a timed-out CompleteMultipartUpload would be retried while moto is still
    # running the first one (which then fails). Every mode uses this same client.
    from botocore.config import Config

    aws._S3_CONFIG = aws._S3_CONFIG.merge(Config(read_timeout=BUDGET_SECONDS, retries={"mode": "standard", "max_attempts": 1}))
    aws.reset_clients()
    s3 = aws.client("s3")
    metadata = {"job-id": "bench", "route": "bench", "model": "bench"}

    def naive(nbytes: int, key: str) -> None:
        with downloader.open(f"{video_base}/{nbytes}.mp4", budget_seconds=BUDGET_SECONDS) as response:
            response.raise_for_status()
            body = response.read()
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="video/mp4", Metadata=metadata)

    def sequential(nbytes: int, key: str) -> None:
        upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="video/mp4", Metadata=metadata)["UploadId"]
        parts: list[dict[str, Any]] = []
        buffer = bytearray()

        def flush() -> None:
            number = len(parts) + 1
            answer = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=buffer)
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            buffer.clear()

        with downloader.open(f"{video_base}/{nbytes}.mp4", budget_seconds=BUDGET_SECONDS) as response:
            response.raise_for_status()
            for chunk in response.iter_raw(CHUNK):
                buffer += chunk
                if len(buffer) >= SEQUENTIAL_PART:
                    flush()
        if buffer:
            flush()
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})

    def project(nbytes: int, key: str) -> None:
        download_and_store(
            f"{video_base}/{nbytes}.mp4",
            settings=settings,
            downloader=downloader,
            key=key,
            metadata=metadata,
            deadline=time.monotonic() + BUDGET_SECONDS,
        )

    run = {"naive": naive, "sequential": sequential, "project": project}[mode]
    # moto's CompleteMultipartUpload joins every part into the object (two full copies, in the
    # server's process): real S3 does not. Its share of the time is reported on its own.
    completes: list[float] = []
    s3.meta.events.register("before-call.s3.CompleteMultipartUpload", lambda **_: completes.append(-time.perf_counter()))
    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", lambda **_: completes.append(time.perf_counter()))
    # Warm-up, the same for every mode: a small download and a single PUT.
    naive(64 * 1024, "warm-up")
    s3.delete_object(Bucket=BUCKET, Key="warm-up")

    key = video_key(settings, f"bench-{mode}-{size}")
    gc.collect()
    reset = _reset_high_water_mark()
    before = _status()
    started = time.perf_counter()
    run(size, key)
    seconds = time.perf_counter() - started
    after = _status()

    head = s3.head_object(Bucket=BUCKET, Key=key)
    leftover = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    if head["ContentLength"] != size or head["ContentType"] != "video/mp4" or leftover:
        raise RuntimeError(f"{mode}: stored object is wrong: {head['ContentLength']} bytes, {len(leftover)} open uploads")
    s3.delete_object(Bucket=BUCKET, Key=key)
    return {
        "mode": mode,
        "seconds": seconds,
        "growth": after["VmHWM"] - before["VmRSS"],
        "baseline": before["VmRSS"],
        "hwm_reset": reset,
        "complete_seconds": sum(completes),
        "parts": int(etag.rpartition("-")[2]) if "-" in (etag := head["ETag"].strip('"')) else 1,
    }


# -- the orchestrator -----------------------------------------------------------------------


def run_worker(mode: str, size: int, video_base: str, parts_in_flight: int, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "worker", mode, str(size), video_base, str(parts_in_flight)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {mode} {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="256,1024", help="video sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (each runs every size and mode once)")
    parser.add_argument("--modes", default=",".join(MODES), help="modes to run (naive must be one of them)")
    parser.add_argument("--parts-in-flight", type=int, default=0, help="store_parts_in_flight (default: the setting's)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    modes = [m for m in args.modes.split(",") if m]
    if "naive" not in modes or not set(modes) <= set(MODES):
        parser.error(f"--modes must include naive and be among {', '.join(MODES)}")
    sys.path.insert(0, str(ROOT / "layers" / "videogen"))
    from videogen.settings import Settings

    parts_in_flight = args.parts_in_flight or Settings().store_parts_in_flight

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | AWS_ENV
    results: dict[tuple[int, str], list[dict[str, Any]]] = {(size, mode): [] for size in sizes for mode in modes}
    with ExitStack() as stack:
        video_base = f"http://127.0.0.1:{stack.enter_context(subprocess_server('serve-mp4', env))}"
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{stack.enter_context(subprocess_server('serve-moto', env))}"
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **_boto_kwargs()).create_bucket(Bucket=BUCKET)

        print(
            f"moto S3 in its own server process; part size 8 MiB; project: store_parts_in_flight={parts_in_flight}; "
            f"{args.rounds} alternating rounds",
            flush=True,
        )
        for round_number in range(args.rounds):
            for size_mib in sizes:
                shift = round_number % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    outcome = run_worker(mode, size_mib * MIB, video_base, parts_in_flight, env)
                    results[(size_mib, mode)].append(outcome)
                    print(
                        f"  round {round_number + 1} {size_mib:>5} MiB {mode:<10} {outcome['seconds']:6.2f} s "
                        f"(complete {outcome['complete_seconds']:5.2f} s) peak RSS +{outcome['growth'] / MIB:7.1f} MiB",
                        flush=True,
                    )

    print()
    header = (
        f"{'size MiB':>8} | {'mode':<10} | {'peak RSS growth':>15} | {'time s':>7} | {'MiB/s':>6} | {'time / naive':>12} "
        f"| {'moto complete s':>15} | {'rest / naive':>12}"
    )
    print(header)
    print("-" * len(header))
    summary: dict[tuple[int, str], tuple[float, float]] = {}
    for size_mib in sizes:
        naive_runs = results[(size_mib, "naive")]
        for mode in modes:
            runs = results[(size_mib, mode)]
            growth = statistics.median(r["growth"] for r in runs) / MIB
            seconds = statistics.median(r["seconds"] for r in runs)
            pairs = list(zip(runs, naive_runs, strict=True))
            ratio = statistics.median(r["seconds"] / n["seconds"] for r, n in pairs)
            complete = statistics.median(r["complete_seconds"] for r in runs)
            rest = statistics.median((r["seconds"] - r["complete_seconds"]) / n["seconds"] for r, n in pairs)
            summary[(size_mib, mode)] = (ratio, growth)
            print(
                f"{size_mib:>8} | {mode:<10} | {growth:>11.1f} MiB | {seconds:>7.2f} | {size_mib / seconds:>6.0f} "
                f"| {ratio:>11.2f}x | {complete:>15.2f} | {rest:>11.2f}x"
            )
    print("-" * len(header))
    first = next(iter(results.values()))[0]
    print(
        f"medians of {args.rounds} rounds; worker RSS before a transfer (imports + warm-up) ~{first['baseline'] / MIB:.0f} MiB; "
        + ("high-water mark reset via /proc/self/clear_refs" if first["hwm_reset"] else "high-water mark NOT reset")
    )
    if "project" in modes:
        ratio, growth = summary[(sizes[-1], "project")]
        print(f"RESULT size_mib={sizes[-1]} time_ratio={ratio:.2f} rss_mib={growth:.1f}")
    return 0


def _boto_kwargs() -> dict[str, str]:
    return {"region_name": AWS_ENV["AWS_DEFAULT_REGION"], "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-mp4":
        serve_mp4()
    elif len(sys.argv) > 1 and sys.argv[1] == "serve-moto":
        serve_moto()
    elif len(sys.argv) > 1 and sys.argv[1] == "worker":
        mode, size, base, in_flight = sys.argv[2:6]
        print(json.dumps(worker(mode, int(size), base, int(in_flight))))
    else:
        sys.exit(main(sys.argv[1:]))
