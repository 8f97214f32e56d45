"""Benchmark: peak memory and throughput of the streaming store path.

    python bench/bench_store.py [--sizes 64,256,512] [--part-mib 8] [--moto server|in-process]

Three kinds of process take part, so that only our code is measured:

* an MP4 server (``serve-mp4``): a subprocess on 127.0.0.1 that generates each video on
  the fly (an ``ftyp`` box, an ``mdat`` header, then one reused 1 MiB filler block), so the
  video is never held whole in memory and the server's RSS is not ours;
* a moto server (``serve-moto``): a subprocess running moto's S3. moto 5.2.5 keeps each
  uploaded part in a ``SpooledTemporaryFile`` (rolled to disk above ~5 MiB), but
  ``FakeMultipart.complete`` joins all parts into one ``bytearray`` and then ``bytes`` (two
  full copies of the video) before storing the object. In-process (``mock_aws``) that cost
  would be charged to the measured process, so by default moto runs out of process and the
  worker reaches it through ``AWS_ENDPOINT_URL``. ``--moto in-process`` shows the difference;
* one fresh worker per (size, mode), so its RSS high-water mark starts clean. The worker
  imports everything, warms up once with a small multipart store (boto3 loads its models
  and endpoint rules lazily: a one-time cost per Lambda container, not per transfer), resets
  the high-water mark (``/proc/self/clear_refs`` = 5), runs the transfer and reports
  ``VmHWM`` after minus ``VmRSS`` before.

Modes: ``bare`` streams the download to nowhere through the pipeline's downloader
(``safe_http.SafeDownloader``, an ``http.make_client`` client with a pinned transport);
``store`` runs ``videogen.storage.download_and_store`` with that downloader into S3 and checks
the stored object (size, content type, job metadata, no multipart upload left behind). The
MP4 server is plain http on loopback, so the worker sets the development-only
``allow_insecure_downloads_for_local_stack`` switch; nothing else about the path changes.
Goal: peak RSS growth of ``store`` under 64 MiB at every size and flat as size grows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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
GOAL_MIB = 64.0
# "Flat": the growth at the largest size may exceed the smallest size's by at most this much.
FLAT_TOLERANCE_MIB = 16.0
FILLER = 1 * MIB
# Both modes run under a deadline, as the pipeline's transfers do (every read is clamped to it).
BUDGET_SECONDS = 300.0
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
def subprocess_server(role: str, env: dict[str, str] | None = None) -> Iterator[int]:
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
        proc.wait(timeout=10)


# -- the measured worker (one fresh subprocess per size and mode) ---------------------------


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


def worker(mode: str, size: int, video_base: str, part_mib: int, moto: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "layers" / "videogen"))
    import boto3
    from moto import mock_aws

    from videogen import aws
    from videogen.safe_http import SafeDownloader
    from videogen.settings import Settings
    from videogen.storage import CHUNK, download_and_store, video_key

    # The local-stack switch is what lets the safe downloader fetch http://127.0.0.1.
    settings = Settings(
        video_bucket=BUCKET,
        part_size_bytes=part_mib * MIB,
        read_timeout_seconds=60,
        allow_insecure_downloads_for_local_stack=True,
    )
    downloader = SafeDownloader(settings)  # built on http.make_client, as the pipeline's is
    s3 = boto3.client("s3")

    def bare(nbytes: int) -> int:
        total = 0
        with downloader.open(f"{video_base}/{nbytes}.mp4", budget_seconds=BUDGET_SECONDS) as response:
            response.raise_for_status()
            for chunk in response.iter_raw(CHUNK):
                total += len(chunk)
        return total

    def store(nbytes: int, job_id: str) -> int:
        video = download_and_store(
            f"{video_base}/{nbytes}.mp4",
            settings=settings,
            downloader=downloader,
            key=video_key(settings, job_id),
            metadata={"job-id": job_id, "route": "bench", "model": "bench"},
            deadline=time.monotonic() + BUDGET_SECONDS,
        )
        return video.bytes

    with ExitStack() as stack:
        if moto == "in-process":
            stack.enter_context(mock_aws())
            aws.reset_clients()
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)

        # Warm-up: a tiny single-PUT store, so boto3's lazily loaded S3 model and endpoint
        # rules are not charged to the transfer; no part-sized buffer is allocated yet.
        warm = 64 * 1024
        if mode == "bare":
            bare(warm)
        else:
            store(warm, "warm-up")
            s3.delete_object(Bucket=BUCKET, Key=video_key(settings, "warm-up"))

        gc.collect()
        reset = _reset_high_water_mark()
        before = _status()
        started = time.perf_counter()
        job_id = f"bench-{size}"
        moved = bare(size) if mode == "bare" else store(size, job_id)
        seconds = time.perf_counter() - started
        after = _status()

        result: dict[str, Any] = {
            "mode": mode,
            "bytes": moved,
            "seconds": seconds,
            "growth": after["VmHWM"] - before["VmRSS"],
            "baseline": before["VmRSS"],
            "hwm_reset": reset,
        }
        if moved != size:
            raise RuntimeError(f"{mode}: moved {moved} of {size} bytes")
        if mode == "store":
            key = video_key(settings, job_id)
            head = s3.head_object(Bucket=BUCKET, Key=key)
            leftover = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
            if head["ContentLength"] != size or head["ContentType"] != "video/mp4" or leftover:
                raise RuntimeError(f"stored object is wrong: {head['ContentLength']} bytes, {len(leftover)} open uploads")
            if head["Metadata"].get("job-id") != job_id:
                raise RuntimeError(f"stored object metadata is wrong: {head['Metadata']}")
            result["parts"] = int(head["ETag"].strip('"').rpartition("-")[2] or 1)
            s3.delete_object(Bucket=BUCKET, Key=key)
    return result


# -- the orchestrator -----------------------------------------------------------------------


def run_worker(mode: str, size: int, video_base: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "worker", mode, str(size), video_base, str(args.part_mib), args.moto]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {mode} {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,256,512", help="video sizes in MiB, comma-separated")
    parser.add_argument("--part-mib", type=int, default=8, help="PART_SIZE_BYTES in MiB (S3 minimum 5)")
    parser.add_argument("--moto", choices=("server", "in-process"), default="server", help="where moto's S3 runs")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | AWS_ENV
    with ExitStack() as stack:
        video_port = stack.enter_context(subprocess_server("serve-mp4", env))
        video_base = f"http://127.0.0.1:{video_port}"
        if args.moto == "server":
            moto_port = stack.enter_context(subprocess_server("serve-moto", env))
            env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{moto_port}"
            import boto3

            boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **_boto_kwargs()).create_bucket(Bucket=BUCKET)

        print(f"store path: storage.download_and_store + safe_http.SafeDownloader; part size {args.part_mib} MiB; ", end="")
        print(f"moto {'in a separate server process' if args.moto == 'server' else 'in the measured process (mock_aws)'}")
        bare_head, store_head = "bare: peak RSS growth", "store: peak RSS growth"
        print(f"{'size MiB':>8} | {bare_head:>21} {'MiB/s':>7} | {store_head:>22} {'MiB/s':>7} {'parts':>5}")
        print("-" * 84)
        rows = []
        for size_mib in sizes:
            size = size_mib * MIB
            bare = run_worker("bare", size, video_base, args, env)
            store = run_worker("store", size, video_base, args, env)
            rows.append((size_mib, bare, store))
            print(
                f"{size_mib:>8} | {bare['growth'] / MIB:>17.1f} MiB {size_mib / bare['seconds']:>7.0f} | "
                f"{store['growth'] / MIB:>18.1f} MiB {size_mib / store['seconds']:>7.0f} {store['parts']:>5}",
                flush=True,
            )
        print("-" * 84)
        baseline = rows[0][2]["baseline"] / MIB
        print(f"worker RSS before the measured transfer (imports + warm-up): ~{baseline:.0f} MiB; ", end="")
        print("high-water mark reset via /proc/self/clear_refs" if rows[0][2]["hwm_reset"] else "high-water mark NOT reset")

    growths = [store["growth"] / MIB for _, _, store in rows]
    spread = max(growths) - min(growths)
    under = all(g < GOAL_MIB for g in growths)
    flat = spread <= FLAT_TOLERANCE_MIB
    verdict = "PASS" if under and flat else "FAIL"
    print(
        f"{verdict}: store peak RSS growth max {max(growths):.1f} MiB (goal < {GOAL_MIB:.0f} MiB: {'ok' if under else 'over'}), "
        f"spread across sizes {spread:.1f} MiB (flat if <= {FLAT_TOLERANCE_MIB:.0f} MiB: {'ok' if flat else 'not flat'})"
    )
    if args.moto == "in-process":
        print("note: in-process moto charges its own copies of the object to this process; the verdict is not about our code")
    return 0 if verdict == "PASS" else 1


def _boto_kwargs() -> dict[str, str]:
    return {"region_name": AWS_ENV["AWS_DEFAULT_REGION"], "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-mp4":
        serve_mp4()
    elif len(sys.argv) > 1 and sys.argv[1] == "serve-moto":
        serve_moto()
    elif len(sys.argv) > 1 and sys.argv[1] == "worker":
        mode, size, base, part, where = sys.argv[2:7]
        print(json.dumps(worker(mode, int(size), base, int(part), where)))
    else:
        sys.exit(main(sys.argv[1:]))
