"""moto's Lambda, routed to the real handlers: the workflow's Lambda tasks run our code.

moto (5.2, ``execute_state_machine`` on) interprets the ASL for real: Wait, Choice, Task,
Retry, Catch. Its Lambda Task states call moto's Lambda service; with ``use_docker`` off that
ends in ``LambdaSimpleBackend.invoke(self, function_name, qualifier, body, headers,
response_headers)``, which returns the response bytes. :class:`LambdaBridge` replaces it (a
private moto API: moto is pinned in requirements-dev.txt) and hands the event to a function
found by name. The answer follows Lambda's error protocol: a failure sets
``X-Amz-Function-Error: Unhandled`` and answers an ``errorType``/``errorMessage`` payload
whose ``errorType`` is the exception's class name, as in AWS Lambda, so the ASL's
``Retry``/``Catch`` match it by name.

The local stack finds functions in its worker pools (``local.lambdas``); the tests and
``scripts/transitions.py`` run the handlers in-process (``local.stepfunctions``). moto is
imported only when the bridge is installed: the Lambda workers import this module too.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# A function by its name (or ARN, possibly qualified): event -> JSON-able result. It raises
# InvocationError (its payload is Lambda's error object) or any exception (named by class).
Invoke = Callable[[Any], Any]
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


class InvocationError(Exception):
    """The function failed: ``payload`` is Lambda's error object (errorType, errorMessage...)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", "function error"))
        self.payload = payload


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error object for an exception raised by a handler."""
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(exc.__traceback__)[-10:],
    }


def function_name(name_or_arn: str) -> str:
    """``arn:aws:lambda:...:function:NAME[:QUALIFIER]`` or ``NAME[:QUALIFIER]`` -> ``NAME``."""
    name = name_or_arn.split(":function:", 1)[-1]
    return name.split(":", 1)[0]


class LambdaBridge:
    """Replaces moto's do-nothing Lambda invoke with ``find(name)``'s function."""

    def __init__(self, find: Callable[[str], Invoke | None]) -> None:
        self.find = find
        self.original: Any = None

    def install(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        bridge = self
        self.original = LambdaSimpleBackend.invoke

        def invoke(backend: Any, name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> bytes | None:
            return bridge.invoke(name, body, response_headers)

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        if self.original is not None:
            LambdaSimpleBackend.invoke = self.original  # type: ignore[method-assign]
            self.original = None

    @contextmanager
    def installed(self) -> Iterator[LambdaBridge]:
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def invoke(self, name: str, body: Any, response_headers: dict[str, str]) -> bytes | None:
        """One invocation: the response payload, or ``None`` (moto answers 404) for an unknown function."""
        function = self.find(name)
        if function is None:
            return None
        raw = body.decode() if isinstance(body, bytes) else (body or "{}")
        try:
            event = json.loads(raw) if raw else {}
        except ValueError:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "Runtime.UnmarshalError", "errorMessage": "payload is not JSON"}).encode()
        try:
            result = function(event)
        except InvocationError as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(exc.payload).encode()
        except Exception as exc:  # noqa: BLE001 - a handler's exception is Lambda's Unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(error_payload(exc)).encode()
        return json.dumps(result).encode()
