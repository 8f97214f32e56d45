"""Run the real ``statemachine/job.asl.json`` in moto's Step Functions engine.

moto (5.2, ``execute_state_machine`` on) interprets the ASL for real: Wait, Choice, Task,
Retry, Catch. Its Lambda Task states call moto's Lambda service; with ``use_docker`` off that
ends in ``LambdaSimpleBackend.invoke(self, function_name, qualifier, body, headers,
response_headers)``, which returns the response bytes. :class:`LambdaRouter` replaces it and
runs our real handlers in-process; an exception becomes an ``Unhandled`` function error whose
``errorType`` is the exception's class name, as in AWS Lambda, so the ASL's
``Retry``/``Catch`` match it by name. The state machine's substitutions and the functions
behind them are read from template.yaml, so the tests cannot drift from the template.

Used by ``tests/workflow`` and by ``scripts/transitions.py``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from tests.conftest import FakeContext, load_handler
from tests.conftest import invoke as conftest_invoke
from tests.template import resource, template

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "job.asl.json"
ACCOUNT = "123456789012"
REGION = "us-east-1"
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
STATE_MACHINE_NAME = "videogen-jobs"

# One handler invocation at a time in this process, as in Lambda (one event per execution
# environment): the Powertools Logger/Metrics singletons are not made for concurrent
# invocations in one process. Races between invocations (callback vs. workflow) still happen.
HANDLERS_LOCK = threading.RLock()


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    """:func:`tests.conftest.invoke`, serialized with the workflow's task invocations."""
    with HANDLERS_LOCK:
        return conftest_invoke(function, event)


@dataclass(frozen=True)
class TaskFunction:
    """A function behind a Task state: its logical id, handler directory and timeout."""

    logical_id: str
    handler: str
    timeout: int

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:videogen-{self.handler}"


def task_functions() -> dict[str, TaskFunction]:
    """``DefinitionSubstitutions`` of ``JobStateMachine`` -> the functions they name."""
    props = resource("JobStateMachine")["Properties"]
    globals_timeout = _template_globals().get("Timeout", 3)
    functions: dict[str, TaskFunction] = {}
    for name, value in props["DefinitionSubstitutions"].items():
        logical_id = value["Fn::GetAtt"][0]
        function = resource(logical_id)["Properties"]
        handler = Path(function["CodeUri"].rstrip("/")).name
        functions[name] = TaskFunction(logical_id, handler, int(function.get("Timeout", globals_timeout)))
    return functions


def _template_globals() -> dict[str, Any]:
    return dict(template().get("Globals", {}).get("Function", {}))


def definition(functions: dict[str, TaskFunction] | None = None) -> str:
    """The ASL text with every ``${Name}`` substituted as CloudFormation would."""
    functions = functions or task_functions()
    text = ASL_PATH.read_text()
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(functions))
    if missing:
        raise AssertionError(f"ASL placeholders without a DefinitionSubstitution in template.yaml: {missing}")
    for name, function in functions.items():
        text = text.replace("${" + name + "}", function.arn)
    return text


@dataclass
class Invocation:
    handler: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class LambdaRouter:
    """Routes moto's Lambda invocations to the real handlers; records every invocation."""

    functions: dict[str, TaskFunction]
    invocations: list[Invocation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, function_name: str, body: Any) -> tuple[bytes, str | None]:
        # An ARN (possibly with a qualifier) or a bare name -> the function's name.
        name = function_name.split(":function:")[-1].split(":")[0]
        function = next((f for f in self.functions.values() if f.arn.endswith(f":function:{name}")), None)
        if function is None:
            return json.dumps({"errorType": "ResourceNotFoundException", "errorMessage": name}).encode(), "Unhandled"
        event = json.loads(body) if body else {}
        record = Invocation(function.handler, event)
        with self._lock:
            self.invocations.append(record)
        context = FakeContext(function_name=name, invoked_function_arn=function.arn, remaining_ms=function.timeout * 1000)
        try:
            with HANDLERS_LOCK:
                result = load_handler(function.handler).lambda_handler(event, context)
        except Exception as exc:
            record.error = type(exc).__name__
            payload = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return json.dumps(payload).encode(), "Unhandled"
        record.result = result
        return json.dumps(result).encode(), None

    def warm_up(self) -> None:
        """Import every handler now, so the first invocation is not slowed by imports."""
        for function in self.functions.values():
            load_handler(function.handler)

    def calls(self, handler: str, action: str | None = None) -> list[Invocation]:
        return [i for i in self.invocations if i.handler == handler and (action is None or i.event.get("action") == action)]

    @contextmanager
    def installed(self) -> Iterator[LambdaRouter]:
        router = self

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> bytes:
            payload, function_error = router.invoke(function_name, body)
            if function_error:
                response_headers["x-amz-function-error"] = function_error
            return payload

        with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
            yield self


@contextmanager
def instant_retries(sleeps: list[float]) -> Iterator[None]:
    """The ASL ``Retry`` sleeps (``time.sleep`` in moto's retrier) recorded, not slept."""
    fake_time = SimpleNamespace(sleep=sleeps.append, time=time.time, monotonic=time.monotonic)
    with mock.patch.object(retrier_decl, "time", fake_time):
        yield


def create_state_machine(functions: dict[str, TaskFunction] | None = None) -> str:
    """Create the job state machine in moto from the ASL file; returns its ARN."""
    client = boto3.client("stepfunctions", region_name=REGION)
    answer = client.create_state_machine(
        name=STATE_MACHINE_NAME,
        definition=definition(functions),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/videogen-jobs-state-machine",
        type="STANDARD",
    )
    return str(answer["stateMachineArn"])


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def wait_for(arn: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Block until the execution ``arn`` has ended; returns ``describe_execution``."""
    client = boto3.client("stepfunctions", region_name=REGION)
    end = time.monotonic() + timeout
    while True:
        described = client.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return dict(described)
        if time.monotonic() > end:
            raise AssertionError(f"execution {arn} still running after {timeout} s")
        time.sleep(0.02)


def wait_all(state_machine_arn: str, *, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait for every execution of the state machine to end (safe to leave moto after)."""
    client = boto3.client("stepfunctions", region_name=REGION)
    executions = client.list_executions(stateMachineArn=state_machine_arn)["executions"]
    return [wait_for(e["executionArn"], timeout=timeout) for e in executions]


def history(arn: str) -> list[dict[str, Any]]:
    """Every event of an execution, oldest first."""
    client = boto3.client("stepfunctions", region_name=REGION)
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = client.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def states_entered(events: list[dict[str, Any]]) -> list[str]:
    """Names of the states the execution entered, in order."""
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def transitions(events: list[dict[str, Any]]) -> int:
    """Billed state transitions: every state entered, plus every retry attempt of a task."""
    entered = sum(1 for e in events if e["type"].endswith("StateEntered"))
    tasks = sum(1 for e in events if e["type"] == "TaskStateEntered")
    attempts = sum(1 for e in events if e["type"] == "LambdaFunctionScheduled")
    return entered + (attempts - tasks)


def lambda_invocations(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["type"] == "LambdaFunctionScheduled")


def task_outputs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outputs of the successful Lambda invocations, in order."""
    return [
        json.loads(e["lambdaFunctionSucceededEventDetails"]["output"]) for e in events if e["type"] == "LambdaFunctionSucceeded"
    ]


def task_errors(events: list[dict[str, Any]]) -> list[str]:
    """Error names of the failed Lambda invocations, in order."""
    return [e["lambdaFunctionFailedEventDetails"]["error"] for e in events if e["type"] == "LambdaFunctionFailed"]
