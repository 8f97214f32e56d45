"""``make demo``: the whole pipeline on this machine, one job per provider route.

Starts the local stack (provider simulator, AWS on moto, the HTTP API gateway, the real
handlers and workflow), submits one job per route through ``POST /videos``, shows their
progress live, and ends with each job's final JSON and where its MP4 is: the object in the
local S3 bucket, and a copy under ``out/videos/`` fetched through the job's presigned URL.
Submissions, progress bars and downloads go through the ``videogen`` client (client/), so
the demo shows what a user sees; each submission is printed as the equivalent command.
Exits 0 when every route that accepted a job produced a valid MP4.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen_client.api import TERMINAL, ApiClient, ApiError, DownloadError
from videogen_client.display import Display, JobProgress, error_line

from local.stack import launch
from local.webhook_receiver import DemoWebhooks

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out"

JOBS: list[tuple[str, dict[str, Any]]] = [
    (
        "task",
        {
            "prompt": "A paper boat drifting down a rain-soaked street at dusk, cinematic",
            "route": "task",
            "seconds": 10,
            "orientation": "landscape",
            "metadata": {"source": "make demo"},
        },
    ),
    (
        "official",
        {
            "prompt": "A golden retriever playing fetch on a sunny beach, waves rolling in",
            "route": "official",
            "model": "sora-2",
            "seconds": 4,
            "size": "1280x720",
            "metadata": {"source": "make demo"},
        },
    ),
    (
        "legacy",
        {
            "prompt": "A happy cat playing with a ball in a sunny garden",
            "route": "legacy",
            "model": "sora_video2",
            "orientation": "portrait",
            "metadata": {"source": "make demo"},
        },
    ),
]


@dataclass
class DemoJob:
    route: str
    body: dict[str, Any]
    id: str = ""
    status: str = "not submitted"
    progress: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""
    copy: Path | None = None


def submit(client: ApiClient, job: DemoJob) -> None:
    """POST /videos; a route the pipeline does not serve yet is reported and skipped."""
    try:
        body = client.create(job.body)
    except ApiError as exc:
        job.status = "skipped"
        job.skipped = error_line(exc)
        return
    job.id, job.status, job.progress = body["id"], body["status"], body.get("progress", 0)


def as_command(body: dict[str, Any], api_url: str) -> str:
    """The ``videogen create`` command line that submits the same request."""
    args = ["videogen", "create", body["prompt"]]
    for name in ("route", "model", "seconds", "size", "orientation"):
        if name in body:
            args += [f"--{name}", str(body[name])]
    if "metadata" in body:
        args += ["--metadata", json.dumps(body["metadata"])]
    return shlex.join([*args, "--api", api_url, "--no-sign"])


def follow(client: ApiClient, jobs: list[DemoJob], timeout: float, bars: JobProgress) -> None:
    """Poll GET /videos/{id} until every job is terminal; the client's bars show each job."""
    started = time.monotonic()
    active = [j for j in jobs if j.id]
    for job in active:
        bars.track(job.id, f"{job.route:<8} {job.id[:12]}")
        bars.update({"id": job.id, "status": job.status, "progress": job.progress})
    while any(j.status not in TERMINAL for j in active):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"jobs still running after {timeout:.0f} s")
        time.sleep(0.5)
        for job in active:
            if job.status in TERMINAL:
                continue
            view = client.get(job.id)
            job.status, job.progress = view["status"], view.get("progress", 0)
            bars.update(view)
            if job.status in TERMINAL:
                job.final = view


def fetch_copy(client: ApiClient, display: Display, job: DemoJob, folder: Path) -> Path:
    """Stream the stored MP4 through its presigned URL into ``folder`` (checked to be an MP4)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{job.route}-{job.id}.mp4"
    video = job.final["video"]
    with display.byte_progress(target.name) as bar:
        client.download(video["url"], target, expected_bytes=video["bytes"], on_progress=bar.update)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--generation-seconds", type=float, default=None, help="simulated generation time (default: the demo profile's)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the jobs")
    args = parser.parse_args(argv)

    log = OUT / "local-stack" / "demo-stack.log"
    extra = ("--generation-seconds", str(args.generation_seconds)) if args.generation_seconds is not None else ()
    print("Starting the local stack (provider simulator, AWS on moto, HTTP API, real handlers)...", flush=True)
    started = time.monotonic()
    with DemoWebhooks() as hooks, launch("demo", log_path=log, args=(*extra, *hooks.stack_args)) as stack:
        info = stack.info
        print(
            f"  ready in {time.monotonic() - started:.1f} s: API {info['api_url']}, simulator {info['simulator_url']}, "
            f"AWS (moto) {info['aws_endpoint']}; log: {log.relative_to(ROOT)}",
            flush=True,
        )
        hooks.configure(info["api_url"])  # events out: a local https webhook receiver (issue 11)
        jobs = [DemoJob(route, hooks.ask(body, route)) for route, body in JOBS]
        display = Display(as_json=False)
        # The local stack runs with ClientAuth=NONE: no SigV4 signing (the CLI's --no-sign).
        with ApiClient(info["api_url"], timeout=60) as client:
            print("\nSubmitting one job per route (POST /videos), as these videogen commands would:", flush=True)
            for job in jobs:
                print(f"  $ {as_command(job.body, info['api_url'])}", flush=True)
                submit(client, job)
                print(f"    {job.route:<8} -> {'job ' + job.id if job.id else 'skipped: ' + job.skipped}", flush=True)
            print(f"\nProgress (simulated generation: {info['generation_seconds']:.0f} s):", flush=True)
            try:
                with display.job_progress() as bars:
                    follow(client, jobs, args.timeout, bars)
            except TimeoutError as exc:
                print(f"\n{exc}\n--- last lines of the stack log ---\n{stack.log_tail()}", file=sys.stderr)
                return 1
            ok = True
            print()
            for job in jobs:
                if not job.id:
                    continue
                print(f"== {job.route}: final job JSON (GET /videos/{job.id})")
                print(json.dumps(job.final, indent=2))
                if job.status == "succeeded":
                    try:
                        job.copy = fetch_copy(client, display, job, OUT / "videos")
                    except DownloadError as exc:
                        print(f"  could not copy the video: {exc}", file=sys.stderr)
                        ok = False
                else:
                    ok = False
        print("\nSummary:")
        for job in jobs:
            if job.skipped:
                print(f"  {job.route:<8} not run ({job.skipped})")
            elif job.copy is not None:
                video = job.final["video"]
                print(
                    f"  {job.route:<8} succeeded: s3://{video['bucket']}/{video['key']} ({video['bytes']} bytes) "
                    f"-> copy {job.copy.relative_to(ROOT)}"
                )
            else:
                print(f"  {job.route:<8} {job.status}: {job.final.get('error')}")
        print("  (the S3 keys are in the stack's local bucket, which is gone with the stack; the copies stay)")
        ok = hooks.report({job.route: job.id for job in jobs if job.id}) and ok
        ran = [job for job in jobs if job.id]
        if not ran:
            print("No route accepted a job.", file=sys.stderr)
            return 1
        print(f"\nDone in {time.monotonic() - started:.1f} s. The local stack is stopped; `make dev` keeps one running.")
        print("The client does all of this for one job in one command (with `make dev` running):")
        print('  videogen create "A paper boat on a rainy street" --wait --out boat.mp4 --api http://127.0.0.1:3000 --no-sign')
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
