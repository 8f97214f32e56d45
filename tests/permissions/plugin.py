"""pytest plugin: record every AWS call a function makes and check it against its role.

Registered from tests/conftest.py (``pytest_plugins``). Every botocore client created in the
test process gets a ``provide-client-params`` hook (presigned URLs emit it too), which records
the service, operation and parameters together with the function that made the call
(local/aws_calls.py). The local stack's workers (e2e tests) append theirs to a file this
plugin names in ``VIDEOGEN_RECORD_AWS_CALLS``; they are read back after each test.

At the end of each test, the calls it caused are evaluated against the function's role as
`sam` would create it (:mod:`tests.permissions.iam`); a call the role would deny fails that
test, naming function, action and resource. The terminal summary lists, per function, the
granted actions no call used. ``VIDEOGEN_PERMISSIONS_REPORT=path`` also writes every
function's used (action, resource) pairs as JSON (scripts/permissions_table.py turns that
into the table in docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from local.aws_calls import RECORD_FILE_VARIABLE, Call, install, read_new
from tests.permissions import iam


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[Call] = []
        self.offset = 0
        self.used: dict[str, set[tuple[str, str]]] = {}
        self.checked: set[Call] = set()
        self.grants: dict[tuple[str, tuple[tuple[str, str], ...], str], list[iam.Grant]] = {}
        # The same, with physical names replaced by {LogicalId} (for reports and docs).
        self.used_symbolic: dict[str, set[tuple[str, str]]] = {}

    def record(self, call: Call) -> None:
        with self.lock:
            self.pending.append(call)

    def take(self) -> list[Call]:
        """Calls recorded since the last take: in this process, and by local-stack workers."""
        from_workers, self.offset = read_new(RECORD_FILE, self.offset)
        with self.lock:
            calls, self.pending = self.pending + from_workers, []
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
install(RECORDER.record)
# The local stack (e2e tests) runs handlers in worker processes: they append their calls here.
_OWN_RECORD_DIR = tempfile.mkdtemp(prefix="videogen-aws-calls-")
RECORD_FILE = os.environ.setdefault(RECORD_FILE_VARIABLE, os.path.join(_OWN_RECORD_DIR, "calls.jsonl"))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_OWN_RECORD_DIR, ignore_errors=True)


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
