"""The whole pipeline on one machine: provider simulator, AWS on moto, HTTP gateway, real handlers.

``python -m local.stack --profile dev`` runs it until interrupted; ``--ready-file`` writes
the stack's addresses as JSON once it serves (the demo and the end-to-end tests use that).

Everything AWS-side is read from template.yaml: the tables, bucket and secrets, the state
machine (the ASL file with its ``DefinitionSubstitutions``), each function's environment
(Globals plus its own variables, every ``!Ref`` resolved to the local resource) and the HTTP
routes. The local stack sets template *parameters* (provider base URLs = the simulator,
``PublicBaseUrl`` = the gateway, ``ClientAuth`` = NONE, short waits) and, on top, only the
development switches listed in :data:`LOCAL_ONLY_ENV`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from local import simulator
from local import template as cfn
from local.aws import ACCOUNT, CREDENTIALS, REGION, LocalAws
from local.bridge import Invoke, LambdaBridge
from local.gateway import GatewayServer
from local.lambdas import FunctionConfig, Runtime, Zygote
from local.outbox import EventSources, create_queues
from local.tls import LocalTls, make_local_tls

STACK = "videogen-local"
CATALOG_FILE = cfn.ROOT / "layers" / "videogen" / "videogen" / "catalog.json"


@dataclass
class Profile:
    """How fast the simulated world moves, and the settings that follow from it."""

    generation_seconds: float
    callback_retry_delays: tuple[float, ...]
    slow_download_seconds: float
    early_callback_lead_seconds: float
    parameters: dict[str, str]  # template parameters
    settings: dict[str, str] = field(default_factory=dict)  # further Settings fields (env names)


PROFILES: dict[str, Profile] = {
    # End-to-end tests: nothing waits longer than it must, and no outcome depends on how busy
    # the machine is: a callback's time budget is ample for a normal download (duplicates never
    # hand off), a slow download stalls until its callback has answered (so it is always
    # handed off; the cap is a backstop), and the workflow's fallback poll comes after the
    # callback's whole budget (so it never races the first delivery for the store).
    "test": Profile(
        generation_seconds=0.0,
        callback_retry_delays=(0.5, 1.0, 2.0),
        slow_download_seconds=40.0,
        early_callback_lead_seconds=1.0,
        parameters={
            "FallbackWaitSeconds": "14",
            "PollIntervalSeconds": "1",
            "WorkflowDeadlineSeconds": "150",
            "LogLevel": "WARNING",
            "WebhookRetrySchedule": "1,1,1,1,1,1,1",
        },
        settings={
            "OFFICIAL_FIRST_WAIT_SECONDS": "0",
            "RETRY_BASE_DELAY_SECONDS": "0.05",
            "RETRY_MAX_DELAY_SECONDS": "1.5",
            "CALLBACK_BUDGET_SECONDS": "10",
            "SUBMIT_GRACE_SECONDS": "20",
        },
    ),
    # `make demo`: a few seconds of generation so the progress is visible (and the first
    # `make demo` on a fresh clone, install included, stays near half a minute).
    "demo": Profile(
        generation_seconds=4.0,
        callback_retry_delays=(2.0, 4.0, 8.0),
        slow_download_seconds=4.0,
        early_callback_lead_seconds=2.0,
        parameters={
            "FallbackWaitSeconds": "10",
            "PollIntervalSeconds": "2",
            "WorkflowDeadlineSeconds": "300",
            "LogLevel": "WARNING",
            "WebhookRetrySchedule": "1,2,5,10,30,60,120",
        },
        settings={"RETRY_BASE_DELAY_SECONDS": "0.2", "RETRY_MAX_DELAY_SECONDS": "2"},
    ),
    # `make dev`: closer to real pacing, still minutes shorter than a real provider.
    "dev": Profile(
        generation_seconds=15.0,
        callback_retry_delays=(5.0, 10.0, 20.0),
        slow_download_seconds=10.0,
        early_callback_lead_seconds=3.0,
        parameters={
            "FallbackWaitSeconds": "20",
            "PollIntervalSeconds": "3",
            "WorkflowDeadlineSeconds": "900",
            "LogLevel": "INFO",
            "WebhookRetrySchedule": "2,5,10,30,60,120,300",
        },
        settings={"RETRY_BASE_DELAY_SECONDS": "0.5", "RETRY_MAX_DELAY_SECONDS": "4"},
    ),
}

# Development-only environment the local stack adds on top of the template's: where AWS is,
# throwaway credentials, no X-Ray daemon, and the explicit switch that lets the pipeline
# download results over plain http from loopback (the simulator). Defaults stay strict.
LOCAL_ONLY_ENV = {
    **CREDENTIALS,
    "AWS_REGION": REGION,
    "ALLOW_INSECURE_DOWNLOADS_FOR_LOCAL_STACK": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def catalog_timing(seconds: float) -> str:
    """CATALOG_JSON telling the pipeline how long the simulator takes to generate, per model."""
    built_in = json.loads(CATALOG_FILE.read_text())
    expected = max(0, math.ceil(seconds))
    routes = {
        route: {"models": {model: {"expected_generation_seconds": expected} for model in spec.get("models", {})}}
        for route, spec in built_in.get("routes", {}).items()
    }
    return json.dumps({"routes": routes}, separators=(",", ":"))


class Stack:
    """Start and stop the local stack; :meth:`info` tells where everything is."""

    def __init__(
        self,
        profile: Profile,
        *,
        gateway_port: int = 0,
        simulator_port: int = 0,
        moto_port: int = 0,
        trust_ca: tuple[Path, ...] = (),
    ) -> None:
        self.profile = profile
        # CAs the functions trust besides the stack's own (a local webhook receiver's).
        self.trust_ca = trust_ca
        self.event_sources: EventSources | None = None
        self.ports = (gateway_port, simulator_port, moto_port)
        self.sim: simulator.SimulatorServer | None = None
        self.gateway: GatewayServer | None = None
        self.aws: LocalAws | None = None
        self.runtime: Runtime | None = None
        self.zygote: Zygote | None = None
        self.bridge: LambdaBridge | None = None
        self.functions: list[FunctionConfig] = []
        self.names: dict[str, Any] = {}
        self._names: cfn.Names | None = None
        self.state_machine_arn = ""
        self.serving = False
        self.tls_dir: Path | None = None
        self.tls: LocalTls

    def start(self) -> Stack:
        gateway_port, simulator_port, moto_port = self.ports
        profile = self.profile
        # The workers' zygote preloads its libraries in its own process while the rest starts.
        self.zygote = zygote = Zygote()
        self.tls_dir = Path(tempfile.mkdtemp(prefix="videogen-local-tls-"))
        self.tls = make_local_tls(self.tls_dir)
        self.sim = simulator.start(
            simulator.SimConfig(
                generation_seconds=profile.generation_seconds,
                callback_retry_delays=profile.callback_retry_delays,
                slow_download_seconds=profile.slow_download_seconds,
                early_callback_lead_seconds=profile.early_callback_lead_seconds,
            ),
            port=simulator_port,
            tls=(self.tls.cert_file, self.tls.key_file),
        )
        self.gateway = GatewayServer(port=gateway_port)
        self.aws = LocalAws(port=moto_port)
        self.aws.start()
        # moto's Step Functions engine calls Lambda at localhost:$MOTO_PORT.
        os.environ["MOTO_PORT"] = str(self.aws.port)
        self._create_resources()
        self.runtime = Runtime(self.functions, zygote)
        self.bridge = LambdaBridge(self._function)
        self.bridge.install()
        self.runtime.warm()
        # Stream, queue and rule events run like Lambda's event source mappings and targets.
        assert self._names is not None
        self.event_sources = EventSources().start(self.aws, self.runtime, self._names, self.names["tables"])
        self.gateway.attach(self.runtime, self.functions)
        self.gateway.start()
        self.serving = True
        return self

    def _function(self, name: str) -> Invoke | None:
        """What the Lambda bridge runs for a function name or ARN: its worker pool."""
        pool = self.runtime.find(name) if self.runtime else None
        return pool.invoke if pool else None

    def _create_resources(self) -> None:
        assert self.aws and self.sim and self.gateway
        resources = cfn.template()["Resources"]
        refs: dict[str, Any] = {}
        attributes: dict[tuple[str, str], Any] = {}

        tables = {name: f"{STACK}-{name}" for name in cfn.resources_of_type("AWS::DynamoDB::Table")}
        self.aws.create_tables(tables)
        for logical_id, table in tables.items():
            refs[logical_id] = table
            attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        for logical_id in cfn.resources_of_type("AWS::S3::Bucket"):
            bucket = f"{STACK}-{logical_id.lower()}"
            self.aws.create_bucket(logical_id, bucket)
            refs[logical_id] = bucket
            attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{bucket}"

        parameters = cfn.parameter_defaults()
        parameters.update(
            TaskApiBaseUrl=self.sim.url,
            OfficialApiBaseUrl=self.sim.url,
            LegacyApiBaseUrl=self.sim.url,
            PublicBaseUrl=self.gateway.url,
            ClientAuth="NONE",
            CatalogJson=catalog_timing(self.profile.generation_seconds),
        )
        parameters.update({k: v for k, v in self.profile.parameters.items() if k in parameters})
        refs.update(parameters)

        # The provider-key secrets hold the simulator's key (what a user puts there by hand);
        # every other secret is generated as the template says.
        definitions = cfn.functions()
        key_secrets = {
            value["Ref"]: json.dumps({"api_key": self.sim.sim.config.api_key})
            for definition in definitions.values()
            for env_name, value in definition.environment.items()
            if env_name.endswith("_API_KEY_SECRET") and isinstance(value, dict) and "Ref" in value
        }
        refs.update(self.aws.create_secrets(dict(key_secrets)))

        for logical_id in definitions:
            name = f"{STACK}-{logical_id}"
            refs[logical_id] = name
            attributes[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        for logical_id in cfn.resources_of_type("AWS::Serverless::HttpApi"):
            refs[logical_id] = "local"
        queues = create_queues(self.aws, STACK, refs, attributes)
        names = cfn.Names(refs=refs, attributes=attributes, region=REGION, account=ACCOUNT, stack=STACK)
        self._names = names

        for logical_id, machine in cfn.state_machines().items():
            if not machine.definition_path.exists():
                print(f"local stack: {machine.definition_path} does not exist yet; running without the workflow", file=sys.stderr)
                refs[logical_id] = ""
                continue
            substitutions = {k: cfn.resolve(v, names) for k, v in machine.substitutions.items()}
            arn = self.aws.create_state_machine(logical_id, f"{STACK}-{logical_id}", substitutions)
            refs[logical_id] = arn
            attributes[(logical_id, "Name")] = f"{STACK}-{logical_id}"
            self.state_machine_arn = arn

        base_env = {
            **LOCAL_ONLY_ENV,
            "AWS_ENDPOINT_URL": self.aws.endpoint,
            "SSL_CERT_FILE": str(self._ca_bundle()),
            **self.profile.settings,
        }
        self.functions = []
        for logical_id, definition in definitions.items():
            env = {k: _env_text(cfn.resolve(v, names)) for k, v in definition.environment.items()}
            env = {k: v for k, v in env.items() if v is not None}
            self.functions.append(
                FunctionConfig.from_def(
                    definition, name=refs[logical_id], arn=attributes[(logical_id, "Arn")], env={**env, **base_env}
                )
            )
        self.names = {
            "tables": tables,
            "bucket": refs.get("VideoBucket", ""),
            "secrets": {k: v for k, v in refs.items() if resources.get(k, {}).get("Type") == "AWS::SecretsManager::Secret"},
            "queues": queues,
        }

    def _ca_bundle(self) -> Path:
        """The stack's CA, plus any CA given with ``--trust-ca``, in one file."""
        if not self.trust_ca:
            return self.tls.ca_file
        assert self.tls_dir is not None
        bundle = self.tls_dir / "trusted-cas.pem"
        bundle.write_text("".join(path.read_text() for path in (self.tls.ca_file, *self.trust_ca)))
        return bundle

    def info(self) -> dict[str, Any]:
        assert self.gateway and self.sim and self.aws
        return {
            "api_url": self.gateway.url,
            "simulator_url": self.sim.url,
            "simulator_api_key": self.sim.sim.config.api_key,
            "simulator_ca_file": str(self.tls.ca_file),
            "aws_endpoint": self.aws.endpoint,
            "region": REGION,
            "bucket": self.names.get("bucket"),
            "tables": self.names.get("tables"),
            "state_machine_arn": self.state_machine_arn,
            "secrets": self.names.get("secrets"),
            "routes": [route.route_key for route in self.gateway.routes],
            "queues": self.names.get("queues"),
            "generation_seconds": self.profile.generation_seconds,
            "pid": os.getpid(),
        }

    def stop(self) -> None:
        if self.event_sources:
            self.event_sources.stop()
        if self.sim:
            simulator.stop(self.sim)
        if self.gateway:
            if self.serving:
                self.gateway.shutdown()
            self.gateway.server_close()
        if self.runtime:
            self.runtime.close()
        elif self.zygote:
            self.zygote.close()
        if self.bridge:
            self.bridge.uninstall()
        if self.aws:
            self.aws.stop()
        if self.tls_dir is not None:
            shutil.rmtree(self.tls_dir, ignore_errors=True)


class StackProcess:
    """A local stack running in a child process (``python -m local.stack``); see :func:`launch`."""

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log_path: Path) -> None:
        self.process = process
        self.info = info
        self.log_path = log_path

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def launch(
    profile: str, *, log_path: Path, port: int = 0, timeout: float = 180.0, args: tuple[str, ...] = ()
) -> Iterator[StackProcess]:
    """Start ``python -m local.stack`` in a child process, wait until it serves, stop it after.

    The child gets a clean environment (no AWS credentials or settings of the caller leak in);
    its output goes to ``log_path``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ready = log_path.with_name(f"{log_path.stem}.ready.json")
    ready.unlink(missing_ok=True)
    # VIDEOGEN_RECORD_AWS_CALLS: the permission tests' recorder (local/aws_calls.py) in the workers.
    passed = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIDEOGEN_RECORD_AWS_CALLS")
    env = {k: v for k, v in os.environ.items() if k in passed}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "local.stack", "--profile", profile, "--port", str(port), "--ready-file", str(ready), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cfn.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack = StackProcess(process, {}, log_path)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the local stack exited with code {process.returncode}:\n{stack.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local stack did not start within {timeout:.0f} s:\n{stack.log_tail()}")
            time.sleep(0.2)
        stack.info = json.loads(ready.read_text())
        yield stack
    finally:
        stack.stop()
        ready.unlink(missing_ok=True)


def _env_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


def serve(stack: Stack, on_ready: Callable[[dict[str, Any]], None]) -> NoReturn:
    """Start ``stack``, call ``on_ready`` with its info, run until SIGINT/SIGTERM, then exit.

    Exits the process with ``os._exit``: moto runs each workflow execution in a thread of its
    own that may be sleeping in a Wait state, and nothing of the stack outlives it anyway.
    """
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    code = 1
    started = time.monotonic()
    exit_soon = threading.Timer(10.0, lambda: os._exit(code))
    exit_soon.daemon = True
    try:
        stack.start()
        info = stack.info()
        info["startup_seconds"] = round(time.monotonic() - started, 2)
        on_ready(info)
        while not stopping.wait(0.5):
            pass
        code = 0
    except Exception:  # noqa: BLE001 - reported, then the process exits non-zero
        traceback.print_exc()
    finally:
        exit_soon.start()  # stopping must not hang: a worker or a moto thread may be mid-request
        stack.stop()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the videogen pipeline locally (no AWS account, no Docker).")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dev")
    parser.add_argument("--port", type=int, default=0, help="HTTP API port (0: any free port)")
    parser.add_argument("--simulator-port", type=int, default=0)
    parser.add_argument("--moto-port", type=int, default=0)
    parser.add_argument("--generation-seconds", type=float, help="override the profile's simulated generation time")
    parser.add_argument("--ready-file", type=Path, help="write the stack's addresses here (JSON) once it serves")
    parser.add_argument("--trust-ca", type=Path, action="append", default=[], help="a CA (PEM) the functions also trust")
    args = parser.parse_args(argv)

    profile = PROFILES[args.profile]
    if args.generation_seconds is not None:
        profile = replace(profile, generation_seconds=args.generation_seconds)

    def ready(info: dict[str, Any]) -> None:
        print(f"local stack ready in {info['startup_seconds']} s: {json.dumps(info)}", file=sys.stderr, flush=True)
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(args.ready_file)

    stack = Stack(
        profile,
        gateway_port=args.port,
        simulator_port=args.simulator_port,
        moto_port=args.moto_port,
        trust_ca=tuple(args.trust_ca),
    )
    serve(stack, ready)


if __name__ == "__main__":
    main()
