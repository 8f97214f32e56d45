"""scripts/smoke.py against the local stack: the first-deploy checks that make sense here.

The local gateway does not enforce IAM (so the unsigned 403 is skipped, as for a stack deployed
with ClientAuth=NONE) and the local stack has no alarm topic; everything else is checked over
real HTTP and the moto server, exactly as against AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from local.template import ROOT
from tests.e2e.helpers import E2E


def test_smoke_script_passes_against_the_local_stack(e2e: E2E, tmp_path):
    # Given the local stack's "outputs", named as the template's Outputs
    info = e2e.info
    outputs = {
        "ApiUrl": info["api_url"],
        "VideoBucketName": info["bucket"],
        "StateMachineArn": info["state_machine_arn"],
        **{f"{logical_id}Arn": arn for logical_id, arn in info["secrets"].items()},
    }
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"Outputs": outputs, "Parameters": {"ClientAuth": "NONE", "DefaultRoute": "task"}}))

    # When the smoke script runs against it
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": info["region"],
    }
    env.pop("AWS_ENDPOINT_URL", None)
    command = [sys.executable, str(ROOT / "scripts" / "smoke.py"), "--outputs", str(path), "--endpoint-url", info["aws_endpoint"]]
    # moto 5.2 keeps a bucket's EventBridgeConfiguration but never returns it from
    # GetBucketNotificationConfiguration (tests/deploy/test_smoke.py checks that check).
    command += ["--json", "--skip", "bucket sends events to EventBridge"]
    answer = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    # Then every check that applies passes
    assert answer.returncode == 0, answer.stdout + answer.stderr
    results = {r["check"]: r["status"] for r in json.loads(answer.stdout)}
    assert results["signed GET /videos"] == "PASS"
    assert results["callback with a wrong token"] == "PASS"
    assert results["unsigned GET /videos is refused"] == "SKIP"
    assert results["task API key secret"] == "PASS"
    assert results["job state machine"] == "PASS"
    assert results["alarm topic"] == "WARN"
