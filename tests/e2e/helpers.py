"""Helpers over the running local stack's HTTP surfaces (the fixture is in conftest.py)."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from local.simulator import SAMPLE_MP4
from local.stack import StackProcess

TERMINAL = ("succeeded", "failed")


@dataclass
class E2E:
    """The running stack and small helpers over its HTTP surfaces."""

    stack: StackProcess
    api: httpx.Client
    sim: httpx.Client

    @property
    def info(self) -> dict[str, Any]:
        return self.stack.info

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.info["aws_endpoint"],
            region_name=self.info["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 2}),
        )

    @staticmethod
    def prompt(text: str) -> str:
        """A prompt unique to this run (the simulator counts submit attempts per prompt)."""
        return f"{text} #{uuid.uuid4().hex[:8]}"

    def submit(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return self.api.post("/videos", json=body, headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/videos/{job_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait(self, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
        """Poll ``GET /videos/{id}`` until the job is terminal."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                pytest.fail(
                    f"job {job_id} still {job['status']} after {timeout:.0f} s\n--- stack log ---\n{self.stack.log_tail()}"
                )
            time.sleep(0.25)

    def sim_job(self, provider_job_id: str) -> dict[str, Any]:
        answer = self.sim.get(f"/_sim/jobs/{provider_job_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def sim_jobs(self, prompt: str) -> list[dict[str, Any]]:
        return self.sim.get("/_sim/jobs", params={"prompt": prompt}).json()["jobs"]

    def submit_attempts(self, route: str, prompt: str) -> int:
        key = f"{route}:{hashlib.sha256(prompt.encode()).hexdigest()}"
        return int(self.sim.get("/_sim/submits").json()["attempts"].get(key, 0))

    def objects_for(self, job_id: str) -> list[dict[str, Any]]:
        """Every object in the bucket whose key names the job (but its poster: the probe's, derived)."""
        listing = self.aws("s3").list_objects_v2(Bucket=self.info["bucket"])
        return [o for o in listing.get("Contents", []) if job_id in o["Key"] and not o["Key"].startswith("posters/")]

    def open_uploads(self) -> list[dict[str, Any]]:
        return self.aws("s3").list_multipart_uploads(Bucket=self.info["bucket"]).get("Uploads", [])

    def stored_bytes(self, key: str) -> bytes:
        return self.aws("s3").get_object(Bucket=self.info["bucket"], Key=key)["Body"].read()


SAMPLE_SHA256 = hashlib.sha256(SAMPLE_MP4.read_bytes()).hexdigest()
