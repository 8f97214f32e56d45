"""Tracing follows the template's Tracing parameter: the X-Ray SDK is loaded only when it is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.template import ROOT
from videogen.observability import NoTracer, tracing_enabled

LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        (LAMBDA, True),
        ({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({**LAMBDA, "AWS_SAM_LOCAL": "true"}, False),
        ({"POWERTOOLS_TRACE_DISABLED": "false"}, False),
    ],
    ids=["active", "default-in-lambda", "passthrough", "disabled-1", "sam-local", "outside-lambda"],
)
def test_tracing_is_on_only_in_lambda_and_when_not_disabled(env, expected):
    assert tracing_enabled(env) is expected


def test_no_tracer_decorators_return_the_function_itself():
    tracer = NoTracer()

    def handler(event, context):
        return event

    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_method(handler) is handler
    assert tracer.capture_method(capture_response=False)(handler) is handler
    assert tracer.capture_lambda_handler(capture_error=False)(handler) is handler


def fresh_import(env: dict[str, str]) -> dict[str, object]:
    """Import the layer's observability module in a new process (patching is process-wide)."""
    code = (
        "import json, sys\n"
        "from videogen import observability\n"
        "print(json.dumps({'tracer': type(observability.tracer).__name__, 'xray': 'aws_xray_sdk' in sys.modules}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL")}
    clean["PYTHONPATH"] = str(ROOT / "layers" / "videogen")
    done = subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tracing_passthrough_never_imports_the_xray_sdk():
    assert fresh_import({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}) == {"tracer": "NoTracer", "xray": False}


def test_tracing_active_uses_powertools_tracer_with_the_sdk():
    assert fresh_import({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}) == {"tracer": "Tracer", "xray": True}
