"""pytest plugin: record every AWS call a function makes and check it against its role.

Registered from tests/conftest.py (``pytest_plugins``). Every botocore client created in the
test process gets a ``provide-client-params`` hook (presigned URLs emit it too), which records
the service, operation and parameters together with the function that made the call: the
``functions/<name>/app.py`` frame on the call stack, or :data:`CURRENT_FUNCTION` when a
harness sets it. Calls made by the tests themselves (no handler on the stack) are ignored.

At the end of each test, the calls it caused are evaluated against the function's role as
`sam` would create it (:mod:`tests.permissions.iam`); a call the role would deny fails that
test, naming function, action and resource. The terminal summary lists, per function, the
granted actions no call used. ``VIDEOGEN_PERMISSIONS_REPORT=path`` also writes every
function's used (action, resource) pairs as JSON (scripts/permissions_table.py turns that
into the table in docs/deploy.md).
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.permissions import iam

CURRENT_FUNCTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("videogen_current_function", default=None)
FUNCTIONS_DIR = str(iam.ROOT / "functions") + os.sep


@dataclass(frozen=True)
class Call:
    function: str  # directory under functions/
    service: str
    operation: str
    params_json: str
    region: str
    env: tuple[tuple[str, str], ...]
    presigned: bool


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[Call] = []
        self.used: dict[str, set[tuple[str, str]]] = {}
        self.checked: set[Call] = set()
        self.grants: dict[tuple[str, tuple[tuple[str, str], ...], str], list[iam.Grant]] = {}
        # The same, with physical names replaced by {LogicalId} (for reports and docs).
        self.used_symbolic: dict[str, set[tuple[str, str]]] = {}

    def record(self, call: Call) -> None:
        with self.lock:
            self.pending.append(call)

    def take(self) -> list[Call]:
        with self.lock:
            calls, self.pending = self.pending, []
        return calls

    def check(self, calls: list[Call]) -> list[str]:
        """Evaluate calls; returns one message per denied permission."""
        denied: list[str] = []
        if not calls:
            return denied
        template = iam.translated_template()
        code_dirs = iam.function_code_dirs(template)
        for call in calls:
            if call in self.checked:
                continue
            self.checked.add(call)
            logical_id = code_dirs.get(call.function)
            if logical_id is None:
                denied.append(f"functions/{call.function} is no function of template.yaml")
                continue
            params = json.loads(call.params_json)
            try:
                needs = iam.required(call.service, call.operation, params, call.region)
            except iam.UnmappedOperation as exc:
                denied.append(f"{logical_id}: {exc.args[0]} is not in the operation table (tests/permissions/iam.py)")
                continue
            role_grants = self._grants(logical_id, call)
            names = self._names(logical_id, call)
            for need in iam.required(call.service, call.operation, iam.symbolic_params(params, names), call.region):
                self.used_symbolic.setdefault(logical_id, set()).add(
                    (need.action, iam.symbolic_region(need.resource, call.region))
                )
            for need in needs:
                self.used.setdefault(logical_id, set()).add((need.action, need.resource))
                if not iam.allows(role_grants, need):
                    how = " (presigned URL)" if call.presigned else ""
                    denied.append(f"{logical_id} may not {need.action} on {need.resource}{how} ({call.service}.{call.operation})")
        return denied

    def _names(self, logical_id: str, call: Call) -> dict[str, str]:
        refs = iam.environment_refs(logical_id)
        return {refs[var]: value for var, value in call.env if var in refs and value}

    def _grants(self, logical_id: str, call: Call) -> list[iam.Grant]:
        key = (logical_id, call.env, call.region)
        if key not in self.grants:
            resolver = iam.Resolver(iam.translated_template(), region=call.region, names=self._names(logical_id, call))
            self.grants[key] = iam.grants(resolver, logical_id)
        return self.grants[key]


RECORDER = Recorder()


def _calling_function() -> str | None:
    current = CURRENT_FUNCTION.get()
    if current:
        return current
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(FUNCTIONS_DIR) and filename.endswith(os.sep + "app.py"):
            return filename[len(FUNCTIONS_DIR) :].split(os.sep, 1)[0]
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _env_snapshot() -> tuple[tuple[str, str], ...]:
    # Only the variables a template environment maps to a resource matter; which ones is
    # decided at check time, so keep every upper-case variable with a short value.
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.isupper() and len(v) < 512 and not k.startswith("AWS_SE")))


def _on_params(params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
    function = _calling_function()
    if function is None:
        return
    service = model.service_model.service_name
    region = (context or {}).get("client_region") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    RECORDER.record(
        Call(
            function=function,
            service=service,
            operation=model.name,
            params_json=json.dumps(_plain(params), sort_keys=True, default=str),
            region=region,
            env=_env_snapshot(),
            presigned=bool((context or {}).get("is_presign_request")),
        )
    )


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    # Bodies and item values are irrelevant to IAM; keep the names that locate resources.
    keep = (
        "Bucket",
        "Key",
        "CopySource",
        "TableName",
        "IndexName",
        "SecretId",
        "stateMachineArn",
        "executionArn",
        "QueueUrl",
        "TopicArn",
        "TargetArn",
        "Name",
        "Names",
        "FunctionName",
    )
    plain: dict[str, Any] = {k: params[k] for k in keep if k in params}
    if "RequestItems" in params:
        plain["RequestItems"] = dict.fromkeys(params["RequestItems"], 0)
    if "TransactItems" in params:
        plain["TransactItems"] = [
            {k: {"TableName": v.get("TableName")} for k, v in item.items()} for item in params["TransactItems"]
        ]
    if "Entries" in params:
        plain["Entries"] = [{"EventBusName": e.get("EventBusName")} for e in params["Entries"]]
    return plain


_original_create_client = botocore.session.Session.create_client


def _create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
    client = _original_create_client(self, *args, **kwargs)
    region = client.meta.region_name

    def hook(params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **rest: Any) -> None:
        _on_params(params, model, {**(context or {}), "client_region": region}, **rest)

    client.meta.events.register("provide-client-params", hook)
    return client


botocore.session.Session.create_client = _create_client  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    RECORDER.take()  # calls from setup belong to fixtures, not to this test's handlers
    result = yield
    denied = RECORDER.check(RECORDER.take())
    if denied:
        pytest.fail("AWS calls the deployed roles would deny:\n  " + "\n  ".join(sorted(set(denied))), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    result = yield
    # Calls made while fixtures finish (e.g. a workflow execution still running) count too.
    denied = RECORDER.check(RECORDER.take())
    if denied:
        pytest.fail("AWS calls the deployed roles would deny:\n  " + "\n  ".join(sorted(set(denied))), pytrace=False)
    return result


def unused_grants() -> dict[str, list[str]]:
    """Per function with recorded calls: granted (non-managed) action/resource pairs no call used."""
    return iam.unused_grants(RECORDER.used_symbolic)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDER.used:
        return
    terminalreporter.section("AWS permissions (tests/permissions)")
    for logical_id in sorted(RECORDER.used):
        actions = sorted({a for a, _ in RECORDER.used[logical_id]})
        terminalreporter.write_line(f"{logical_id}: used {', '.join(actions)}")
    for logical_id, lines in sorted(unused_grants().items()):
        terminalreporter.write_line(f"{logical_id}: granted, no call in this run used: {'; '.join(lines)}")
    report = os.environ.get("VIDEOGEN_PERMISSIONS_REPORT")
    if report:
        Path(report).write_text(
            json.dumps(
                {
                    "used": {k: sorted(map(list, v)) for k, v in sorted(RECORDER.used_symbolic.items())},
                    "unused": unused_grants(),
                },
                indent=1,
            )
        )
