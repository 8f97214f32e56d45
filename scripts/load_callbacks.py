"""Load test of the callback path: many concurrent callbacks, some duplicated, some invalid.

Runs the real callback handler in-process on moto (AWS built from template.yaml, as in the
tests), against a small task-API provider on 127.0.0.1 that answers ``statusTask`` and serves
the MP4 files over real sockets (through the safe downloader, with the local-stack switch that
allows plain http to loopback). Every callback is released at the same moment. moto's DynamoDB
handles one request at a time here, as DynamoDB applies each request atomically (in-process moto
does not, across threads).

    .venv/bin/python scripts/load_callbacks.py                 # 200 jobs, 5% duplicates, 2% invalid
    .venv/bin/python scripts/load_callbacks.py --jobs 400 --duplicates 0.1

It prints how many callbacks were acknowledged, how many jobs were stored, doubled (written to
S3 or downloaded more than once) and lost (acknowledged but not stored), and the p50/p99
acknowledgement time. It exits non-zero if anything was lost or doubled, or an invalid
callback was accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "videogen")]
from local import inprocess  # noqa: E402

# The in-process world's environment (fake credentials, table and bucket names).
inprocess.use_env()
# Quiet handlers: no EMF metrics documents, errors only (set before the package is imported).
os.environ.update(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")
warnings.filterwarnings("ignore", message="No application metrics to publish")

from local.dynamodb import atomic_dynamodb_requests  # noqa: E402
from local.inprocess import CALLBACK_KEYS, FakeContext, create_aws_resources, load_event, mp4_bytes  # noqa: E402


def lambda_instance(number: int) -> ModuleType:
    """A fresh copy of the callback function, as one Lambda execution environment has it.

    Lambda runs one invocation at a time per environment (process). Powertools' resolver
    keeps the current event and context on its router *class*, shared by every thread here,
    so each copy pins them on its own resolver instance: that is all that separates these
    in-process "environments" from real ones.
    """
    spec = importlib.util.spec_from_file_location(f"callback_instance_{number}", ROOT / "functions" / "callback" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    resolve = app.resolve

    def resolve_in_this_environment(event: dict[str, Any], context: Any) -> dict[str, Any]:
        app.current_event = app._to_proxy_event(event)
        app.lambda_context = context
        return resolve(event, context)

    app.resolve = resolve_in_this_environment
    return module


@dataclass
class Provider:
    """The task API on loopback: statusTask says success; each result is one MP4."""

    video: bytes
    port: int = 0
    downloads: Counter[str] | None = None
    status_calls: int = 0

    def start(self) -> ThreadingHTTPServer:
        provider = self
        self.downloads = Counter()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path.startswith("/api/v1/statusTask/"):
                    task_id = parse_qs(url.query).get("taskId", [""])[0]
                    with lock:
                        provider.status_calls += 1
                    result = json.dumps({"resultUrls": [f"http://127.0.0.1:{provider.port}/files/{task_id}.mp4"]})
                    data = {"taskId": task_id, "state": "success", "resultJson": result}
                    self._send(200, json.dumps({"code": 200, "msg": "success", "data": data}).encode(), "application/json")
                elif url.path.startswith("/files/"):
                    with lock:
                        provider.downloads[url.path] += 1  # type: ignore[index]
                    self._send(200, provider.video, "video/mp4")
                else:
                    self._send(404, b"{}", "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 1024
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server


@dataclass
class Shot:
    """One callback delivery and what came back."""

    job_id: str
    kind: str  # "first", "duplicate", "invalid"
    status: int = 0
    seconds: float = 0.0
    result: str = ""


def callback_event(job_id: str, task_id: str, *, token: str, body: str | None = None) -> dict[str, Any]:
    event = load_event("callback-success")
    event["queryStringParameters"] = {"token": token}
    event["rawQueryString"] = f"token={token}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{job_id}"
    event["pathParameters"] = {"id": job_id}
    data = {
        "taskId": task_id,
        "state": "success",
        "resultJson": json.dumps({"resultUrls": ["https://cdn.provider.test/hint.mp4"]}),
    }
    event["body"] = body if body is not None else json.dumps({"code": 200, "message": "success", "data": data})
    return event


def invalid_event(job_id: str, task_id: str, rng: random.Random) -> dict[str, Any]:
    from videogen.security import make_callback_token

    token = make_callback_token(job_id, CALLBACK_KEYS)
    variant = rng.choice(["bad-token", "foreign-token", "malformed", "task-mismatch"])
    if variant == "bad-token":
        return callback_event(job_id, task_id, token="v1.forged")  # noqa: S106 - a forged token on purpose
    if variant == "foreign-token":
        return callback_event(job_id, task_id, token=make_callback_token("someone-else", CALLBACK_KEYS))
    if variant == "malformed":
        return callback_event(job_id, task_id, token=token, body='{"code": 200, "data": ')
    return callback_event(job_id, "task-of-another-job", token=token)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run(args: argparse.Namespace) -> int:
    from moto import mock_aws

    from videogen import aws
    from videogen import context as videogen_context
    from videogen.models import Job
    from videogen.security import make_callback_token

    rng = random.Random(args.seed)
    provider = Provider(video=mp4_bytes(args.video_bytes))
    server = provider.start()
    os.environ.update(
        TASK_API_BASE_URL=f"http://127.0.0.1:{provider.port}",
        ALLOW_INSECURE_DOWNLOADS_FOR_LOCAL_STACK="true",  # development switch: plain http to loopback
        # In-process moto serialises every AWS call of all callbacks in this one process, so a
        # callback here waits far longer than on Lambda. The provider's 30 s budget would turn
        # that artificial queue into timeouts; this script checks counts (stored, doubled,
        # lost), so it gives each callback a budget the queue cannot exhaust. The budget logic
        # itself is tested in tests/unit and tests/security.
        CALLBACK_BUDGET_SECONDS="900",
    )
    with mock_aws():
        videogen_context.reset()
        create_aws_resources()
        ctx = videogen_context.get_context()

        # S3 writes per key: two writes of one video would be a doubled store.
        writes: Counter[str] = Counter()
        write_lock = threading.Lock()

        def count_write(params: dict[str, Any], **_: Any) -> None:
            with write_lock:
                writes[params["Key"]] += 1

        s3 = aws.client("s3")
        s3.meta.events.register("provide-client-params.s3.PutObject", count_write)
        s3.meta.events.register("provide-client-params.s3.CompleteMultipartUpload", count_write)

        jobs: list[tuple[str, str]] = []
        for number in range(args.jobs):
            job = Job.new(route="task", model="sora-2", prompt=f"load {number}", seconds=10, orientation="landscape")
            ctx.repo.create(job)
            task_id = f"task-load-{number:05d}"
            ctx.repo.start(job.id, task_id)
            jobs.append((job.id, task_id))

        shots: list[tuple[Shot, dict[str, Any]]] = []
        for job_id, task_id in jobs:
            token = make_callback_token(job_id, CALLBACK_KEYS)
            shots.append((Shot(job_id, "first"), callback_event(job_id, task_id, token=token)))
        for job_id, task_id in rng.sample(jobs, round(args.jobs * args.duplicates)):
            token = make_callback_token(job_id, CALLBACK_KEYS)
            shots.append((Shot(job_id, "duplicate"), callback_event(job_id, task_id, token=token)))
        for job_id, task_id in rng.sample(jobs, round(args.jobs * args.invalid)):
            shots.append((Shot(job_id, "invalid"), invalid_event(job_id, task_id, rng)))
        rng.shuffle(shots)

        start = threading.Barrier(len(shots))
        instances = [lambda_instance(number) for number in range(len(shots))]

        def deliver(item: tuple[Shot, dict[str, Any], ModuleType]) -> Shot:
            shot, event, handler = item
            start.wait()
            began = time.perf_counter()
            try:
                response = handler.lambda_handler(event, FakeContext(remaining_ms=903_000))
                shot.status = int(response["statusCode"])
                answer = json.loads(response.get("body") or "{}")
                shot.result = str(answer.get("result") or answer.get("error", ""))
            except Exception as exc:  # noqa: BLE001 - a crash is a result to report
                shot.status, shot.result = 599, f"{type(exc).__name__}: {exc}"
            shot.seconds = time.perf_counter() - began
            return shot

        # The handlers' stdout (Powertools' EMF flushes when 100 values pile up across threads,
        # error logs) is kept aside; error lines are reported below.
        handler_output = io.StringIO()
        began = time.perf_counter()
        # DynamoDB applies each request atomically; in-process moto does not across threads.
        with atomic_dynamodb_requests(), contextlib.redirect_stdout(handler_output), ThreadPoolExecutor(len(shots)) as pool:
            done = list(pool.map(deliver, [(shot, event, instances[n]) for n, (shot, event) in enumerate(shots)]))
        wall = time.perf_counter() - began

        valid = [s for s in done if s.kind != "invalid"]
        invalid = [s for s in done if s.kind == "invalid"]
        acknowledged = [s for s in valid if 200 <= s.status < 300]
        acknowledged_jobs = {s.job_id for s in acknowledged}
        stored, lost = 0, 0
        objects = {
            o["Key"]: o["Size"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="videos")
            for o in page.get("Contents", [])
        }
        for job_id, _ in jobs:
            job = ctx.repo.get(job_id)
            key = f"videos/{job_id}.mp4"
            ok = job.status == "succeeded" and objects.get(key) == len(provider.video)
            stored += ok
            lost += job_id in acknowledged_jobs and not ok
        assert provider.downloads is not None
        doubled = sum(1 for n in writes.values() if n > 1) + sum(1 for n in provider.downloads.values() if n > 1)
        accepted_invalid = [s for s in invalid if s.status < 400 or s.status >= 500]
        open_uploads = s3.list_multipart_uploads(Bucket="videos").get("Uploads", [])
        latencies = [s.seconds * 1000 for s in acknowledged]
        server.shutdown()

    def answers(group: list[Shot]) -> dict[int, int]:
        return dict(sorted(Counter(s.status for s in group).items()))

    duplicates = len(valid) - args.jobs
    print(
        f"callbacks sent:  {len(done)} ({args.jobs} jobs, {duplicates} duplicates, {len(invalid)} invalid), all released at once"
    )
    print(f"wall time:       {wall:.2f} s")
    print(f"acknowledged:    {len(acknowledged)} of {len(valid)} valid (answers: {answers(valid)})")
    print(f"rejected:        {len(invalid) - len(accepted_invalid)} of {len(invalid)} invalid (answers: {answers(invalid)})")
    print(f"stored:          {stored} of {args.jobs} jobs")
    print(f"doubled:         {doubled}")
    print(f"lost:            {lost}")
    print(f"open uploads:    {len(open_uploads)}")
    p50 = statistics.median(latencies) if latencies else 0.0
    print(f"ack time:        p50 {p50:.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies, default=0):.0f} ms")
    print("                 (in-process moto emulates every AWS call in this one Python process: the times measure")
    print("                 that queue on this machine's CPU, not AWS; the counts above are what this script checks)")
    for shot in [s for s in valid if not 200 <= s.status < 300][:5]:
        print(f"not acknowledged: {shot.kind} -> {shot.status} {shot.result}")
    errors = [line for line in handler_output.getvalue().splitlines() if '"level":"ERROR"' in line]
    for line in errors[:3]:
        print(f"handler error log: {line[:300]}")
    crashes = [s.result for s in done if s.status == 599]
    for crash in crashes[:5]:
        print(f"crash: {crash}")
    failed = lost or doubled or accepted_invalid or open_uploads or crashes or len(acknowledged) != len(valid)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs, one valid callback each (default 200)")
    parser.add_argument(
        "--duplicates", type=float, default=0.05, help="share of jobs whose callback is sent twice (default 0.05)"
    )
    parser.add_argument("--invalid", type=float, default=0.02, help="share of extra invalid callbacks (default 0.02)")
    parser.add_argument("--video-bytes", type=int, default=256 * 1024, help="size of each result MP4 (default 256 KiB)")
    parser.add_argument("--seed", type=int, default=6, help="random seed for the mix (default 6)")
    args = parser.parse_args()
    if args.jobs < 1 or not 0 <= args.duplicates <= 1 or not 0 <= args.invalid <= 1:
        parser.error("--jobs must be positive; --duplicates and --invalid between 0 and 1")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
