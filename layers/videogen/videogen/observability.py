"""Powertools Logger, Metrics and Tracer shared by every function, and the pipeline's metrics."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from .models import StoredVideo

SERVICE = "videogen"
NAMESPACE = "VideoGen"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


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
