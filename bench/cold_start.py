"""Benchmark: the import share of each handler's cold start, against the libraries' own.

    python bench/cold_start.py [--runs 7] [--tracing Active|PassThrough] [--layer DIR]

For every ``functions/<name>/app.py`` this times a fresh ``python -c "import app"`` run in
the function's directory, with the layer package on ``PYTHONPATH`` and the function's
environment as ``template.yaml`` gives it (Globals merged with the function's own variables,
references replaced by their parameter defaults or by placeholder names) plus what the Lambda
runtime sets (``LAMBDA_TASK_ROOT``, region, function name, credentials): Powertools enables
its Tracer only where ``LAMBDA_TASK_ROOT`` is set, as in Lambda.

The baseline, run with the same environment, imports only the libraries every handler needs
and creates Powertools' Logger, Metrics and Tracer::

    import boto3, pydantic, httpx
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    Logger(); Metrics(); Tracer()

Runs alternate (baseline then handler, then handler then baseline, ...), ``--runs`` of each
per handler. Printed per handler: the medians of both, and the median of the per-run ratio
(handler ÷ baseline of the same run). The X-Ray SDK's share is measured the same way: the
baseline against the baseline without ``Tracer()``. ``--tracing`` picks the function's
tracing mode, i.e. the ``Tracing`` template parameter (``PassThrough`` sets
``POWERTOOLS_TRACE_DISABLED=true``). By default the layer package comes from ``layers/videogen`` and the libraries from the
development venv. ``--built`` runs like Lambda instead: ``python -S`` (no site-packages) with
only the function's directory, the built layer (``.aws-sam/build/VideogenLayer/python``, run
``make build`` first) and a directory holding what the runtime provides (boto3 at the version
requirements-dev.txt pins, installed once into ``.aws-sam/bench-runtime`` with pip) on the
path. Last line: ``RESULT worst_ratio=<largest per-handler median ratio>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.template import template  # noqa: E402

BASELINE = """
import boto3, pydantic, httpx
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
Logger(); Metrics(); Tracer()
"""
WITHOUT_TRACER = """
import boto3, pydantic, httpx
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
Logger(); Metrics()
"""
BUILT_LAYER = ROOT / ".aws-sam" / "build" / "VideogenLayer" / "python"
REGION = "us-east-1"
ACCOUNT = "123456789012"


def _resolve(value: Any, parameters: dict[str, Any], name: str) -> str:
    """A template value as Lambda would see it (references by default or placeholder)."""
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict) and "Ref" in value:
        ref = value["Ref"]
        if ref in parameters:
            return str(parameters[ref].get("Default", ""))
        if ref.endswith("StateMachine"):
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:videogen-{ref}"
        if ref.endswith("Secret"):
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:videogen-{ref}-AbCdEf"
        return f"videogen-{ref.lower()}"
    return f"placeholder-{name.lower()}"


def function_environment(logical_id: str, code_dir: Path, tracing: str) -> dict[str, str]:
    doc = template()
    parameters = doc.get("Parameters", {})
    variables = dict(doc["Globals"]["Function"].get("Environment", {}).get("Variables", {}))
    props = doc["Resources"][logical_id]["Properties"]
    variables.update(props.get("Environment", {}).get("Variables", {}))
    env = {name: _resolve(value, parameters, name) for name, value in variables.items()}
    env["POWERTOOLS_TRACE_DISABLED"] = "false" if tracing == "Active" else "true"
    memory = props.get("MemorySize", doc["Globals"]["Function"].get("MemorySize", 128))
    # What the Lambda runtime itself sets (credentials are fake: nothing may call AWS at import).
    env.update(
        {
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_LAMBDA_FUNCTION_NAME": f"videogen-{logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "_HANDLER": "app.lambda_handler",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "ASIACOLDSTART",
            "AWS_SECRET_ACCESS_KEY": "cold-start",
            "AWS_SESSION_TOKEN": "cold-start",
        }
    )
    return env


def handlers() -> list[tuple[str, str, Path]]:
    """(name, logical id, code directory) of every function whose CodeUri is functions/<name>/."""
    found = []
    for logical_id, res in template()["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        code_dir = ROOT / str(res["Properties"]["CodeUri"]).rstrip("/")
        if (code_dir / "app.py").exists():
            found.append((code_dir.name, logical_id, code_dir))
    return sorted(found)


def runtime_dir() -> Path:
    """What the Lambda runtime provides on its path: boto3 (and botocore, s3transfer, ...)."""
    target = ROOT / ".aws-sam" / "bench-runtime"
    if not (target / "boto3").is_dir():
        pins = [line.strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()]
        boto3 = next(line for line in pins if line.startswith("boto3=="))
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            boto3,
        ]
        subprocess.run(command, check=True)
    return target


def timed(python: list[str], code: str, cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([*python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{code.strip()!r} in {cwd} failed:\n{done.stderr[-3000:]}")
    return seconds


def compare(
    python: list[str], code: str, reference: str, cwd: Path, env: dict[str, str], runs: int
) -> tuple[float, float, float]:
    """Medians of ``code``'s and ``reference``'s times and of their per-run ratio (alternating)."""
    mine, theirs, ratios = [], [], []
    for run in range(runs):
        if run % 2:
            a = timed(python, code, cwd, env)
            b = timed(python, reference, cwd, env)
        else:
            b = timed(python, reference, cwd, env)
            a = timed(python, code, cwd, env)
        mine.append(a)
        theirs.append(b)
        ratios.append(a / b)
    return statistics.median(mine), statistics.median(theirs), statistics.median(ratios)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each, per handler")
    parser.add_argument("--tracing", choices=("Active", "PassThrough"), default="Active", help="the Tracing parameter")
    parser.add_argument("--built", action="store_true", help="the built layer and the runtime's boto3 only (python -S)")
    parser.add_argument("--layer-dir", type=Path, default=BUILT_LAYER, help="with --built: the built layer's python directory")
    parser.add_argument("--only", default="", help="comma-separated handler names (default: all)")
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    layer = args.layer_dir.resolve() if args.built else ROOT / "layers" / "videogen"
    if not (layer / "videogen").is_dir():
        parser.error(f"{layer} holds no videogen package (run `make build` first)")
    search = [str(layer)]
    python = [sys.executable]
    # Lambda's /opt is read-only: a cold start cannot cache the bytecode it compiles.
    no_cache = {"PYTHONDONTWRITEBYTECODE": "1"} if args.built else {}
    if args.built:
        search.append(str(runtime_dir()))
        python.append("-S")

    where = f"built layer {layer} + runtime boto3 only (python -S)" if args.built else "layers/videogen + the dev venv"
    print(f"python {sys.version.split()[0]}; {where}; Tracing={args.tracing}; {args.runs} alternating runs each")
    header = f"{'handler':<10} | {'import app ms':>13} | {'baseline ms':>11} | {'ratio':>6}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    last_env: dict[str, str] = {}
    last_dir = ROOT
    for name, logical_id, code_dir in handlers():
        if only and name not in only:
            continue
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([str(code_dir), *search])} | no_cache
        env |= function_environment(logical_id, code_dir, args.tracing)
        mine, theirs, ratio = compare(python, "import app", BASELINE, code_dir, env, args.runs)
        worst = max(worst, ratio)
        print(f"{name:<10} | {mine * 1000:>13.0f} | {theirs * 1000:>11.0f} | {ratio:>5.2f}x", flush=True)
        last_env, last_dir = env, code_dir
    print("-" * len(header))
    if last_env:
        last_env = last_env | {"POWERTOOLS_TRACE_DISABLED": "false"}
        with_tracer, without, ratio = compare(python, BASELINE, WITHOUT_TRACER, last_dir, last_env, args.runs)
        print(
            f"X-Ray SDK: baseline {with_tracer * 1000:.0f} ms with Tracer() (tracing enabled), {without * 1000:.0f} ms without: "
            f"+{(with_tracer - without) * 1000:.0f} ms per cold start ({ratio:.2f}x)"
        )
    print(f"RESULT worst_ratio={worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
