"""The installed ``videogen`` command against the local stack, over real HTTP.

Each test runs ``.venv/bin/videogen`` (what ``make install`` puts there) in a subprocess,
exactly as a person would, with ``--api`` pointing at the stack's gateway and ``--no-sign``
(the local stack runs with ClientAuth=NONE).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.dev import client_examples
from tests.e2e.helpers import E2E, SAMPLE_SHA256

VIDEOGEN = Path(sys.executable).parent / "videogen"

ROUTE_OPTIONS = {
    "task": ["--route", "task", "--seconds", "10", "--orientation", "portrait", "--metadata", '{"case": "cli"}'],
    "official": ["--route", "official", "--model", "sora-2", "--seconds", "8", "--size", "1280x720"],
    "legacy": ["--route", "legacy", "--model", "sora_video2", "--orientation", "landscape"],
}


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    assert VIDEOGEN.exists(), f"{VIDEOGEN} is missing: run `make install` (it installs client/ into .venv)"


def videogen(e2e: E2E, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VIDEOGEN), *args, "--api", e2e.info["api_url"], "--no-sign"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=client_env(),
    )


def client_env() -> dict[str, str]:
    """No AWS settings of the test process (the CLI needs none with --no-sign)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIDEOGEN_"))}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("route", ["task", "official", "legacy"])
def test_create_wait_download_per_route(e2e: E2E, route: str, tmp_path: Path) -> None:
    # Given a prompt for this route
    prompt = e2e.prompt(f"A lighthouse in a storm, via the CLI, {route} route")
    out = tmp_path / "clip.mp4"

    # When `videogen create … --wait --out` runs
    run = videogen(e2e, "create", prompt, *ROUTE_OPTIONS[route], "--wait", "--out", str(out))

    # Then it exits 0 having saved the provider's MP4, byte for byte, and reported the progress
    assert run.returncode == 0, run.stderr
    assert sha256(out) == SAMPLE_SHA256
    assert "accepted" in run.stderr and "succeeded" in run.stderr and "100%" in run.stderr
    assert f"saved {out}" in run.stdout

    # And the job it created is the route's, finished, with the video the CLI saved
    job_id = run.stderr.split("job ", 1)[1].split()[0]
    job = e2e.job(job_id)
    assert job["route"] == route and job["status"] == "succeeded" and job["prompt"] == prompt
    assert job["video"]["bytes"] == out.stat().st_size

    # And `videogen download` fetches the same video again
    again = tmp_path / "again.mp4"
    download = videogen(e2e, "download", job_id, "--out", str(again))
    assert download.returncode == 0, download.stderr
    assert sha256(again) == SAMPLE_SHA256


def test_json_output_parses_for_every_command(e2e: E2E, tmp_path: Path) -> None:
    # create --wait --out --json: one document, the final job plus where it was saved
    created = videogen(
        e2e, "create", e2e.prompt("JSON please"), "--route", "task", "--wait", "--out", "v.mp4", "--json", cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    assert job["status"] == "succeeded" and job["download"] == {"path": "v.mp4", "bytes": job["video"]["bytes"]}
    assert sha256(tmp_path / "v.mp4") == SAMPLE_SHA256

    # get, wait, list and models: each one JSON document
    got = json.loads(videogen(e2e, "get", job["id"], "--json").stdout)
    assert got["id"] == job["id"] and got["status"] == "succeeded"
    waited = json.loads(videogen(e2e, "wait", job["id"], "--json").stdout)
    assert waited["status"] == "succeeded"
    listed = json.loads(videogen(e2e, "list", "--limit", "100", "--json").stdout)
    assert job["id"] in [j["id"] for j in listed["jobs"]] and "next_token" in listed
    models = json.loads(videogen(e2e, "models", "--json").stdout)
    assert models["routes"]["official"]["models"]["sora-2"]["seconds"] == [4, 8, 12]

    # create without --wait: the accepted job
    queued = videogen(e2e, "create", e2e.prompt("no wait"), "--route", "official", "--json")
    assert queued.returncode == 0 and json.loads(queued.stdout)["status"] in ("queued", "in_progress")
    e2e.wait(json.loads(queued.stdout)["id"])


def test_a_4xx_prints_the_field_and_the_allowed_values(e2e: E2E) -> None:
    prompt = e2e.prompt("Five seconds is not on the menu")

    run = videogen(e2e, "create", prompt, "--route", "official", "--model", "sora-2", "--seconds", "5")

    assert run.returncode == 2
    assert "field: seconds" in run.stderr and "allowed: 4, 8, 12" in run.stderr and "HTTP 400 invalid_request" in run.stderr
    assert run.stdout == ""
    assert e2e.sim_jobs(prompt) == []

    as_json = videogen(e2e, "create", prompt, "--route", "official", "--seconds", "5", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"]["field"] == "seconds"


def test_a_failed_job_exits_1_with_its_error_code(e2e: E2E) -> None:
    run = videogen(e2e, "create", e2e.prompt("A quiet forest [fault:content_violation]"), "--route", "official", "--wait")
    assert run.returncode == 1, run.stderr
    assert "content_violation" in run.stderr


def test_ctrl_c_during_wait_leaves_the_job_running_and_says_how_to_resume(e2e: E2E, tmp_path: Path) -> None:
    # Given a task-route job whose callback never comes (the workflow's fallback finishes it after a few seconds)
    prompt = e2e.prompt("A slow harbour at dawn [fault:callback_lost]")
    process = subprocess.Popen(
        [
            str(VIDEOGEN),
            "create",
            prompt,
            "--route",
            "task",
            "--wait",
            "--out",
            "late.mp4",
            "--api",
            e2e.info["api_url"],
            "--no-sign",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=client_env(),
    )
    try:
        # When Ctrl-C arrives while it waits (after the job was accepted)
        accepted = read_line_with(process, "accepted", timeout=60)
        job_id = accepted.split("job ", 1)[1].split()[0]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then the command stops with 130 and prints how to resume
    assert process.returncode == 130, stderr
    assert f"Resume with: videogen wait {job_id} --out late.mp4 --api {e2e.info['api_url']} --no-sign" in stderr

    # And the job was left running: it was unfinished when the wait stopped, and it still ends succeeded
    assert f"Stopped waiting. Job {job_id} keeps running (" in stderr
    assert "keeps running (queued" in stderr or "keeps running (in_progress" in stderr
    assert e2e.job(job_id)["status"] != "failed"
    resumed = videogen(e2e, "wait", job_id, "--out", "late.mp4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256(tmp_path / "late.mp4") == SAMPLE_SHA256


def test_wait_times_out_with_exit_3(e2e: E2E) -> None:
    queued = videogen(e2e, "create", e2e.prompt("Another slow one [fault:callback_lost]"), "--route", "task", "--json")
    job_id = json.loads(queued.stdout)["id"]

    run = videogen(e2e, "wait", job_id, "--timeout", "0.5")

    assert run.returncode == 3, run.stderr
    assert f"videogen wait {job_id}" in run.stderr
    e2e.wait(job_id)


def read_line_with(process: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Read the process's stderr line by line until one contains ``text``."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if ready:
            line = process.stderr.readline()
            if text in line:
                return line
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"no line with {text!r} from videogen (exit {process.poll()})")


def test_dev_client_examples_work_as_written(e2e: E2E, tmp_path: Path) -> None:
    # Given the videogen commands `make dev` prints, with the installed client on PATH
    script = "set -euo pipefail\n" + "\n".join(command for _comment, command in client_examples(e2e.info["api_url"]))
    env = {**client_env(), "PATH": f"{VIDEOGEN.parent}{os.pathsep}{os.environ['PATH']}"}

    # When they run, in order, in one bash shell
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env)

    # Then each works: the MP4 is saved, the JSON parses, the bad request names its field
    assert run.returncode == 0, run.stderr + run.stdout
    assert sha256(tmp_path / "boat.mp4") == SAMPLE_SHA256
    assert "field: seconds" in run.stderr
    created, _end = json.JSONDecoder().raw_decode(run.stdout[run.stdout.rindex('{\n  "id"') :])
    assert created["route"] == "official" and created["seconds"] == 8
    e2e.wait(created["id"])


def test_a_local_image_file_is_uploaded_for_image_to_video(e2e: E2E, tmp_path: Path) -> None:
    # Given a PNG on disk
    from PIL import Image

    image = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(image)

    # When it is given to --image
    run = videogen(
        e2e, "create", e2e.prompt("The still comes alive"), "--route", "task", "--image", str(image), "--wait", "--json"
    )

    # Then the API received it as an upload, checked it, and the job succeeded
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "succeeded"
    assert job["input_image"]["source"] == "upload" and job["input_image"]["bytes"] == image.stat().st_size
    assert (job["input_image"]["width"], job["input_image"]["height"]) == (64, 48)
