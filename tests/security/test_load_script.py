"""The load script itself runs (small) and reports nothing lost or doubled, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_load_script_reports_nothing_lost_or_doubled():
    # A subprocess: the script sets its own environment and runs its own moto.
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "load_callbacks.py"),
            "--jobs",
            "12",
            "--duplicates",
            "0.25",
            "--invalid",
            "0.1",
            "--video-bytes",
            "65536",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line and not line.startswith(" "))
    assert lines["stored"].strip() == "12 of 12 jobs"
    assert lines["doubled"].strip() == "0"
    assert lines["lost"].strip() == "0"
    assert lines["acknowledged"].strip().startswith("15 of 15 valid")
    assert lines["rejected"].strip().startswith("1 of 1 invalid")
    assert "p50" in lines["ack time"] and "p99" in lines["ack time"]
