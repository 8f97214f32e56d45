"""Powertools Logger, Metrics and Tracer shared by every function, and the pipeline's metrics.

The Tracer is Powertools' own when tracing is on (the template's ``Tracing`` parameter set to
``Active`` leaves ``POWERTOOLS_TRACE_DISABLED`` false) and the X-Ray SDK is installed (the
layer ships it from ``requirements-xray.txt``). Otherwise it is :class:`NoTracer`, whose
decorators return the function unchanged: Powertools' ``Tracer()`` imports and configures the
X-Ray SDK (and patches botocore and httpx) even when disabled, which a cold start pays for
(``bench/cold_start.py`` measures it) without any trace to show for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    from .models import StoredVideo

SERVICE = "videogen"
NAMESPACE = "VideoGen"
_TRUTHY = ("1", "true", "yes", "on", "y", "t")


class NoTracer:
    """The part of Powertools' ``Tracer`` the functions use, doing nothing (tracing is off)."""

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return lambda_handler if lambda_handler is not None else _unchanged

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        return method if method is not None else _unchanged

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        pass


def _unchanged(function: Callable[..., Any]) -> Callable[..., Any]:
    return function


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether Powertools would trace here: in Lambda (not SAM local), unless disabled by env."""
    source = os.environ if env is None else env
    if source.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUTHY:
        return False
    return bool(source.get("LAMBDA_TASK_ROOT")) and not source.get("AWS_SAM_LOCAL")


def make_tracer(env: Mapping[str, str] | None = None) -> Tracer | NoTracer:
    """Powertools' Tracer when tracing is on and the X-Ray SDK is installed, else :class:`NoTracer`."""
    if tracing_enabled(env) and find_spec("aws_xray_sdk") is not None:
        from aws_lambda_powertools import Tracer

        return Tracer(service=SERVICE)
    return NoTracer()


logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer: Any = make_tracer()


def _count(name: str, **dimensions: str) -> None:
    # A metric of its own, so its dimensions (route, error code) do not leak into the others.
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, value in dimensions.items():
            metric.add_dimension(name=key, value=value)


def job_submitted(route: str) -> None:
    _count("JobsSubmitted", route=route)
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)


def job_succeeded(route: str, video: StoredVideo) -> None:
    _count("JobsSucceeded", route=route)
    metrics.add_metric(name="JobsSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BytesStored", unit=MetricUnit.Bytes, value=video.bytes)


def job_failed(route: str, code: str) -> None:
    _count("JobsFailed", route=route, code=code)
    _count("JobsFailedByCode", code=code)  # alarms need exact dimensions (JobsTimedOutAlarm)
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
