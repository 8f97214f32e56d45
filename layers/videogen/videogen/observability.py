"""Powertools Logger, Metrics and Tracer shared by every function, and the pipeline's metrics."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from .models import StoredVideo

SERVICE = "videogen"
NAMESPACE = "VideoGen"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def job_submitted(route: str) -> None:
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)


def job_succeeded(video: StoredVideo) -> None:
    metrics.add_metric(name="JobsSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BytesStored", unit=MetricUnit.Bytes, value=video.bytes)


def job_failed(code: str) -> None:
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
