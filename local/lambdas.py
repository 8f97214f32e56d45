"""The template's functions, run like Lambda runs them: warm worker processes ("containers").

Each function gets a pool of worker processes. A worker imports the real
``functions/<name>/app.py`` with the layer on its path and its own environment (Globals and
the function's variables from template.yaml, resolved for the local stack), then serves one
invocation at a time, so module-level state (Powertools resolvers, metrics, cached clients)
is never shared between concurrent requests, just as in Lambda. A busy pool starts another
worker; an invocation that overruns the function's ``Timeout`` kills its worker and answers
the Lambda timeout error. Workers are forked from a "zygote" process that has imported the
third-party libraries once (see :data:`PRELOAD`), so a new worker is ready in well under a
second; the zygote is started with ``subprocess`` rather than ``multiprocessing``'s spawn,
which would import the parent's ``__main__`` (the whole stack, moto included) again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.reduction
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.bridge import InvocationError, error_payload, function_name
from local.template import ROOT, FunctionDef

LAYER_DIR = ROOT / "layers" / "videogen"
# A function sees its own environment, not the stack's: only these come from outside.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT", "VIDEOGEN_RECORD_AWS_CALLS")
MAX_WORKERS_PER_FUNCTION = 8


@dataclass
class FunctionConfig:
    """One function as the local stack runs it (environment already resolved)."""

    logical_id: str
    name: str
    arn: str
    code_dir: str
    handler: str
    timeout: int
    memory: int
    env: dict[str, str]
    http_routes: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_def(cls, definition: FunctionDef, *, name: str, arn: str, env: dict[str, str]) -> FunctionConfig:
        return cls(
            logical_id=definition.logical_id,
            name=name,
            arn=arn,
            code_dir=str(definition.code_dir),
            handler=definition.handler,
            timeout=definition.timeout,
            memory=definition.memory,
            env=env,
            http_routes=list(definition.http_routes),
        )


class LambdaContext:
    """The context object a Python handler receives."""

    def __init__(self, config: FunctionConfig, request_id: str, deadline: float) -> None:
        self.function_name = config.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = config.arn
        self.memory_limit_in_mb = config.memory
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{config.name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _worker_main(conn: multiprocessing.connection.Connection, config: FunctionConfig) -> None:
    """A container: import the handler once, then serve invocations until told to stop."""
    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = config.name
    os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(config.memory)
    os.environ["AWS_LAMBDA_FUNCTION_TIMEOUT"] = str(config.timeout)
    # The layer is what Lambda mounts at /opt/python; the function's code is the task root.
    sys.path[:0] = [config.code_dir, str(LAYER_DIR)]
    # The permission tests' recorder (tests/permissions), when the test process asks for it.
    from local.aws_calls import install_from_environment

    install_from_environment()
    module_name, _, function_name = config.handler.rpartition(".")
    try:
        spec = importlib.util.spec_from_file_location(module_name, Path(config.code_dir) / f"{module_name.replace('.', '/')}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        handler = getattr(module, function_name)
    except BaseException as exc:  # noqa: BLE001 - an init error is reported like Lambda's Runtime.ImportModuleError
        conn.send(("init_error", error_payload(exc, "Runtime.ImportModuleError")))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        request_id, event, deadline = message
        context = LambdaContext(config, request_id, deadline)
        try:
            result = handler(event, context)
            payload = json.dumps(result)
        except BaseException as exc:  # noqa: BLE001 - a handler error becomes Lambda's error payload
            conn.send(("error", error_payload(exc)))
            continue
        conn.send(("ok", payload))


# Third-party modules every handler imports; the zygote imports them once, before any
# function's environment exists (none of them reads it at import time), so a worker forked
# from it starts in a fraction of a cold start. The layer and the handlers are imported
# only in the worker, after its environment is set.
PRELOAD = (
    "boto3",
    "botocore.client",
    "botocore.session",
    "boto3.dynamodb.conditions",
    "httpx",
    "httpcore",
    "pydantic",
    "yaml",
    "aws_xray_sdk.core",
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.params",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.utilities.typing",
)


def zygote_main(fd: int) -> None:
    """The zygote: preload, then fork one worker per request from the stack.

    A request is a FunctionConfig followed by the worker's end of a fresh pipe (passed as a
    file descriptor); the answer is the worker's pid.
    """
    conn = multiprocessing.connection.Connection(fd)
    # Ctrl-C in a terminal reaches the whole process group: the stack stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped automatically
    conn.send("ready")
    while True:
        try:
            config = conn.recv()
        except EOFError:
            return
        if config is None:
            return
        child_fd = multiprocessing.reduction.recv_handle(conn)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            conn.close()
            inherited = {k: v for k, v in os.environ.items() if k in INHERITED_ENV}
            os.environ.clear()
            os.environ.update({**inherited, **config.env})
            try:
                _worker_main(multiprocessing.connection.Connection(child_fd), config)
            finally:
                os._exit(0)
        os.close(child_fd)
        conn.send(pid)


class Zygote:
    """Our end of the zygote process."""

    def __init__(self) -> None:
        self.conn, child = multiprocessing.Pipe()
        env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV}
        bootstrap = "import sys; from local.lambdas import zygote_main; zygote_main(int(sys.argv[1]))"
        self.process = subprocess.Popen(
            [sys.executable, "-c", bootstrap, str(child.fileno())], pass_fds=(child.fileno(),), cwd=ROOT, env=env
        )
        child.close()
        self.lock = threading.Lock()
        self.ready = False

    def wait_ready(self) -> None:
        """Block until the zygote has preloaded (it starts at once and imports in parallel with us)."""
        if self.ready:
            return
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            self.close()
            raise RuntimeError("the worker zygote did not start")
        self.ready = True

    def fork(self, config: FunctionConfig, child: multiprocessing.connection.Connection) -> int:
        with self.lock:
            self.wait_ready()
            self.conn.send(config)
            multiprocessing.reduction.send_handle(self.conn, child.fileno(), self.process.pid)
            return int(self.conn.recv())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Worker:
    """A worker process (forked by the zygote) and our end of its pipe."""

    def __init__(self, config: FunctionConfig, zygote: Zygote) -> None:
        self.conn, child = multiprocessing.Pipe()
        try:
            self.pid = zygote.fork(config, child)
        finally:
            child.close()
        self.name = f"{config.logical_id}[{self.pid}]"
        self.ready = False

    def wait_ready(self, timeout: float) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"worker {self.name} did not start within {timeout:.0f} s")
        status, payload = self.conn.recv()
        if status != "ready":
            self.kill()
            raise InvocationError(payload)
        self.ready = True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.conn.close()


class FunctionPool:
    """The warm workers of one function."""

    def __init__(self, config: FunctionConfig, zygote: Zygote, start_timeout: float = 60.0) -> None:
        self.config = config
        self.zygote = zygote
        self.start_timeout = start_timeout
        self.idle: list[Worker] = []
        self.count = 0
        self.lock = threading.Condition()
        self.closed = False

    def _acquire(self) -> Worker:
        with self.lock:
            while not self.idle and self.count >= MAX_WORKERS_PER_FUNCTION:
                self.lock.wait()
            if self.closed:
                raise RuntimeError("the local stack is shutting down")
            if self.idle:
                return self.idle.pop()
            self.count += 1
        try:
            worker = Worker(self.config, self.zygote)
            worker.wait_ready(self.start_timeout)
        except BaseException:
            with self.lock:
                self.count -= 1
                self.lock.notify()
            raise
        return worker

    def _release(self, worker: Worker | None) -> None:
        with self.lock:
            if worker is None or self.closed:
                self.count -= 1
                if worker is not None:
                    worker.stop()
            else:
                self.idle.append(worker)
            self.lock.notify()

    def warm(self) -> None:
        self._release(self._acquire())

    def invoke(self, event: Any) -> Any:
        """Run the handler on ``event``; returns its (JSON) result or raises :class:`InvocationError`."""
        worker = self._acquire()
        request_id = str(uuid.uuid4())
        deadline = time.time() + self.config.timeout
        try:
            worker.conn.send((request_id, event, deadline))
            if not worker.conn.poll(self.config.timeout + 1.0):
                worker.kill()
                worker = None  # type: ignore[assignment]
                raise InvocationError(
                    {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {self.config.timeout:.2f} seconds"}
                )
            status, payload = worker.conn.recv()
        except (EOFError, OSError) as exc:
            if worker is not None:
                worker.kill()
            worker = None  # type: ignore[assignment]
            raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": f"worker died: {exc!r}"}) from exc
        finally:
            self._release(worker)
        if status == "ok":
            return json.loads(payload)
        payload["requestId"] = request_id
        raise InvocationError(payload)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            workers, self.idle = self.idle, []
            self.lock.notify_all()
        for worker in workers:
            worker.stop()


class Runtime:
    """All the stack's functions, found by logical id, name or ARN."""

    def __init__(self, configs: list[FunctionConfig], zygote: Zygote | None = None) -> None:
        self.zygote = zygote or Zygote()
        self.pools = {c.logical_id: FunctionPool(c, self.zygote) for c in configs}
        self._by_name: dict[str, FunctionPool] = {}
        for config in configs:
            pool = self.pools[config.logical_id]
            for key in (config.logical_id, config.name, config.arn):
                self._by_name[key] = pool

    def find(self, name: str) -> FunctionPool | None:
        return self._by_name.get(function_name(name))

    def warm(self) -> None:
        """Start one worker per function, in parallel (a cold start each, done up front)."""
        threads = [threading.Thread(target=pool.warm, daemon=True) for pool in self.pools.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.zygote.close()
