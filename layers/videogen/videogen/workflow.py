"""Starting the job's workflow (``statemachine/job.asl.json``): its input is built here only."""

from __future__ import annotations

import json
from typing import Any

from . import aws, observability
from .models import Job
from .settings import Settings

logger = observability.logger


def start_workflow(
    settings: Settings,
    job: Job,
    *,
    first_wait_seconds: int,
    expected_seconds: int | None = None,
    name: str | None = None,
    **extra: Any,
) -> None:
    """Start the job's workflow execution (named by the job id, so a repeat is harmless).
    ``expected_seconds`` (the catalog's expected generation time) guides the poll waits."""
    if not settings.state_machine_arn:
        return
    payload = {
        "job_id": job.id,
        "route": job.route,
        "mode": "run",
        "first_wait_seconds": max(0, first_wait_seconds),
        "poll_interval_seconds": settings.poll_interval_seconds,
        "deadline_seconds": settings.workflow_deadline_seconds,
        **({} if expected_seconds is None else {"expected_seconds": max(0, expected_seconds)}),
        **extra,
    }
    stepfunctions = aws.client("stepfunctions")
    try:
        stepfunctions.start_execution(stateMachineArn=settings.state_machine_arn, name=name or job.id, input=json.dumps(payload))
    except stepfunctions.exceptions.ExecutionAlreadyExists:
        logger.info("workflow execution already exists", extra={"execution": name or job.id})


def hand_off_store(settings: Settings, job: Job, result_url: str) -> None:
    """Give a transfer the callback could not finish to the workflow's store task."""
    start_workflow(settings, job, first_wait_seconds=0, name=f"{job.id}-store", mode="store", result_url=result_url)
