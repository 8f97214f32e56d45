"""``make dev``: keep the local stack running and print curl examples that work as written.

The HTTP API listens on 127.0.0.1:PORT (default 3000, like ``sam local start-api``); the
provider simulator and moto take free ports. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from local.simulator import FAULTS
from local.stack import PROFILES, Stack, serve

ROOT = Path(__file__).resolve().parents[1]

# Reads one field of the JSON on stdin (python3 is there wherever this project runs; jq may not be).
FIELD = "python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])'"


def curl_examples(api: str) -> list[tuple[str, str]]:
    """(comment, bash command) pairs; run in order in one shell, they exercise the API."""
    submit = (
        f"curl -s -X POST {api}/videos -H 'Content-Type: application/json' "
        '-d \'{"prompt": "A paper boat drifting down a rain-soaked street", "route": "task", "seconds": 10}\''
    )
    return [
        ("Submit a job (route task; also try official or legacy) and keep its id", f"JOB=$({submit} | {FIELD} id); echo $JOB"),
        ("Look at it (status, progress, error, video)", f"curl -s {api}/videos/$JOB"),
        (
            "Wait until it is finished",
            f'until curl -s {api}/videos/$JOB | grep -Eq \'"status": ?"(succeeded|failed)"\'; do sleep 1; done; '
            f"curl -s {api}/videos/$JOB | {FIELD} status",
        ),
        (
            "Download the MP4 through the job's presigned URL",
            f'curl -s -o video.mp4 "$(curl -s {api}/videos/$JOB | python3 -c '
            '\'import json,sys; print(json.load(sys.stdin)["video"]["url"])\')" && ls -l video.mp4',
        ),
        ("List the newest jobs", f"curl -s '{api}/videos?limit=5'"),
        (
            "The official route with an explicit model, size and duration",
            f"curl -s -X POST {api}/videos -H 'Content-Type: application/json' "
            '-d \'{"prompt": "A lighthouse in a storm", "route": "official", "model": "sora-2", '
            '"size": "1280x720", "seconds": 8}\'',
        ),
        (
            "A provider fault (the callback never comes; the workflow's fallback finishes the job)",
            f"curl -s -X POST {api}/videos -H 'Content-Type: application/json' "
            '-d \'{"prompt": "A quiet forest [fault:callback_lost]", "route": "task"}\'',
        ),
        (
            "A bad request: a clear 400 naming the field and the allowed values",
            f"curl -s -X POST {api}/videos -H 'Content-Type: application/json' "
            '-d \'{"prompt": "x", "route": "official", "seconds": 5}\'',
        ),
    ]


def client_examples(api: str) -> list[tuple[str, str]]:
    """(comment, bash command) pairs for the ``videogen`` client (``make install`` puts it in .venv/bin)."""
    flags = f"--api {api} --no-sign"
    return [
        (
            "Submit, follow with a progress bar, download the MP4",
            f'videogen create "A paper boat drifting down a rain-soaked street" --route task --wait --out boat.mp4 {flags}',
        ),
        ("The newest jobs, and the models with what each allows", f"videogen list --limit 5 {flags} && videogen models {flags}"),
        (
            "For scripts: one JSON document, exit code 0/1/2/3",
            f'videogen create "A lighthouse in a storm" --route official --seconds 8 --json {flags}',
        ),
        (
            "A bad request: one line naming the field and the allowed values (exit 2)",
            f'videogen create "x" --route official --seconds 5 {flags} || true',
        ),
    ]


def print_examples(info: dict[str, Any]) -> None:
    api = info["api_url"]
    print(f"\nvideogen local stack is up. HTTP API: {api}")
    print(f"  provider simulator: {info['simulator_url']} (https, CA {info['simulator_ca_file']})")
    print(f"  AWS (moto server):  {info['aws_endpoint']}  bucket {info['bucket']}")
    print(f"  simulated generation time: {info['generation_seconds']:.0f} s\n")
    print("Paste these into a bash shell (in order):\n")
    for comment, command in curl_examples(api):
        print(f"# {comment}\n{command}\n")
    print("Or use the videogen client (.venv/bin/videogen; `source .venv/bin/activate` puts it on PATH):\n")
    for comment, command in client_examples(api):
        print(f"# {comment}\n{command}\n")
    print("Faults (put one in a prompt): " + ", ".join(f"[fault:{name}]" for name in FAULTS))
    print("\nCtrl-C stops the stack.\n", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--generation-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    profile = PROFILES["dev"]
    if args.generation_seconds is not None:
        profile = replace(profile, generation_seconds=args.generation_seconds)
    print(f"Starting the local stack on port {args.port} (if it is taken: make dev PORT=3001)...", flush=True)
    serve(Stack(profile, gateway_port=args.port), print_examples)


if __name__ == "__main__":
    main()
