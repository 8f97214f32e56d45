"""Record every AWS API call a handler makes, for the permission check (tests/permissions).

:func:`install` adds a botocore ``provide-client-params`` hook to every client created from
then on (presigned URLs emit it too) and hands each call made under a handler to a sink: the
function is the ``functions/<name>/app.py`` frame on the call stack (or
:data:`CURRENT_FUNCTION`, when a harness sets it). Calls the tests or the local stack make
themselves have no handler on the stack and are not recorded.

In the local stack's worker processes :func:`install_from_environment` does the same when
``VIDEOGEN_RECORD_AWS_CALLS`` names a file: each call is appended to it as one JSON line, and
the test process's permission plugin reads them back.
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import botocore.session

RECORD_FILE_VARIABLE = "VIDEOGEN_RECORD_AWS_CALLS"
FUNCTIONS_DIR = str(Path(__file__).resolve().parents[1] / "functions") + os.sep
CURRENT_FUNCTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("videogen_current_function", default=None)
# The parameters that locate a resource; bodies and item values are irrelevant to IAM.
LOCATING_PARAMETERS = (
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


@dataclass(frozen=True)
class Call:
    """One AWS API call made under a handler."""

    function: str  # directory under functions/
    service: str  # botocore's service name
    operation: str
    params_json: str
    region: str
    env: tuple[tuple[str, str], ...]  # the process environment then (resource names)
    presigned: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Call:
        data = json.loads(line)
        data["env"] = tuple(tuple(pair) for pair in data["env"])
        return cls(**data)


_sinks: list[Callable[[Call], None]] = []


def calling_function() -> str | None:
    current = CURRENT_FUNCTION.get()
    if current:
        return current
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(FUNCTIONS_DIR) and filename.endswith(os.sep + "app.py"):
            return filename[len(FUNCTIONS_DIR) :].split(os.sep, 1)[0]
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _env_snapshot() -> tuple[tuple[str, str], ...]:
    # Which variables name resources is decided at check time (from the template); keep the
    # upper-case ones with short values, never credentials.
    return tuple(
        sorted((k, v) for k, v in os.environ.items() if k.isupper() and len(v) < 512 and not k.startswith(("AWS_SE", "AWS_AC")))
    )


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {k: params[k] for k in LOCATING_PARAMETERS if k in params}
    if "RequestItems" in params:
        plain["RequestItems"] = dict.fromkeys(params["RequestItems"], 0)
    if "TransactItems" in params:
        plain["TransactItems"] = [
            {k: {"TableName": v.get("TableName")} for k, v in item.items()} for item in params["TransactItems"]
        ]
    if "Entries" in params:
        plain["Entries"] = [{"EventBusName": e.get("EventBusName")} for e in params["Entries"]]
    return plain


def _on_params(params: dict[str, Any], model: Any, region: str, context: dict[str, Any] | None) -> None:
    function = calling_function()
    if function is None:
        return
    call = Call(
        function=function,
        service=model.service_model.service_name,
        operation=model.name,
        params_json=json.dumps(_plain(params), sort_keys=True, default=str),
        region=region,
        env=_env_snapshot(),
        presigned=bool((context or {}).get("is_presign_request")),
    )
    for sink in _sinks:
        sink(call)


_original_create_client = botocore.session.Session.create_client


def _create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
    client = _original_create_client(self, *args, **kwargs)
    region = client.meta.region_name or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")

    def hook(params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
        _on_params(params, model, region, context)

    client.meta.events.register("provide-client-params", hook)
    return client


def install(sink: Callable[[Call], None]) -> None:
    """Send every handler's AWS calls to ``sink`` (clients created from now on)."""
    _sinks.append(sink)
    botocore.session.Session.create_client = _create_client  # type: ignore[method-assign]


def install_from_environment() -> None:
    """In a local-stack worker: append calls to the file ``VIDEOGEN_RECORD_AWS_CALLS`` names."""
    path = os.environ.get(RECORD_FILE_VARIABLE)
    if not path:
        return

    def append(call: Call) -> None:
        # One short write per line, O_APPEND: lines from concurrent workers never interleave.
        with open(path, "a", encoding="utf-8") as sink:
            sink.write(call.to_json() + "\n")

    install(append)


def read_new(path: str, offset: int) -> tuple[list[Call], int]:
    """Calls appended to ``path`` after byte ``offset``, and the new offset (complete lines only)."""
    try:
        with open(path, "rb") as source:
            source.seek(offset)
            data = source.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode().splitlines()
    return [Call.from_json(line) for line in lines if line], offset + end
