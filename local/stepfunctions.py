"""The real ``statemachine/job.asl.json`` in moto's in-process Step Functions engine.

moto (5.2, ``execute_state_machine`` on) interprets the ASL for real: Wait, Choice, Task,
Retry, Catch. Its Lambda tasks reach the real handlers, run in this process, through
``local.bridge``; :class:`LambdaRouter` records every invocation. The state machine's
substitutions and the functions behind them are read from template.yaml (``local.template``,
as the local stack does), so the tests cannot drift from the template.

Used by ``tests/workflow`` (and the other tests that run the workflow) and by
``scripts/transitions.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from local import bridge, inprocess
from local import template as cfn
from local.bridge import LambdaBridge, function_name
from local.inprocess import FakeContext, load_handler
from local.inprocess import invoke as inprocess_invoke

ACCOUNT = "123456789012"
REGION = "us-east-1"
# moto with Step Functions executing and Lambda without Docker (local.bridge runs the handlers).
MOTO_CONFIG: Any = {**inprocess.MOTO_CONFIG, **bridge.MOTO_CONFIG}
STATE_MACHINE = "JobStateMachine"
ASL_PATH = cfn.state_machines()[STATE_MACHINE].definition_path
STATE_MACHINE_NAME = "videogen-jobs"

# One handler invocation at a time in this process, as in Lambda (one event per execution
# environment): the Powertools Logger/Metrics singletons are not made for concurrent
# invocations in one process. Races between invocations (callback vs. workflow) still happen.
HANDLERS_LOCK = threading.RLock()


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    """:func:`local.inprocess.invoke`, serialized with the workflow's task invocations."""
    with HANDLERS_LOCK:
        return inprocess_invoke(function, event)


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
    """``DefinitionSubstitutions`` of the state machine -> the functions they name."""
    functions = cfn.functions()
    found: dict[str, TaskFunction] = {}
    for name, value in cfn.state_machines()[STATE_MACHINE].substitutions.items():
        logical_id = value["Fn::GetAtt"][0]
        function = functions[logical_id]
        found[name] = TaskFunction(logical_id, function.code_dir.name, function.timeout)
    return found


def definition(functions: dict[str, TaskFunction] | None = None) -> str:
    """The ASL text with every ``${Name}`` substituted as CloudFormation would (unknown names fail)."""
    functions = functions or task_functions()
    return cfn.substitute_definition(ASL_PATH.read_text(), {n: f.arn for n, f in functions.items()})


@dataclass
class Invocation:
    handler: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class LambdaRouter:
    """Finds the handler behind a Task state's function (for ``local.bridge``); records every invocation."""

    functions: dict[str, TaskFunction]
    invocations: list[Invocation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, name_or_arn: str) -> Any:
        name = function_name(name_or_arn)
        function = next((f for f in self.functions.values() if f.arn.endswith(f":function:{name}")), None)
        if function is None:
            return None
        return lambda event: self._run(function, name, event)

    def _run(self, function: TaskFunction, name: str, event: Any) -> Any:
        record = Invocation(function.handler, event)
        with self._lock:
            self.invocations.append(record)
        context = FakeContext(function_name=name, invoked_function_arn=function.arn, remaining_ms=function.timeout * 1000)
        try:
            with HANDLERS_LOCK:
                record.result = load_handler(function.handler).lambda_handler(event, context)
        except Exception as exc:
            record.error = type(exc).__name__
            raise
        return record.result

    def warm_up(self) -> None:
        """Import every handler now, so the first invocation is not slowed by imports."""
        for function in self.functions.values():
            load_handler(function.handler)

    def calls(self, handler: str, action: str | None = None) -> list[Invocation]:
        return [i for i in self.invocations if i.handler == handler and (action is None or i.event.get("action") == action)]

    @contextmanager
    def installed(self) -> Iterator[LambdaRouter]:
        with LambdaBridge(self.find).installed():
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
