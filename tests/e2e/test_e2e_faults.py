"""Every simulator fault ends in the right terminal state, with nothing lost and nothing doubled.

All fault jobs are submitted at once (one module fixture), so the suite waits about as long
as the slowest case (a download the workflow retries) rather than for their sum.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.helpers import E2E

# name -> (request without the prompt, fault marker)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "duplicate_callbacks": ({"route": "task"}, "callback_duplicate"),
    "callback_lost": ({"route": "task"}, "callback_lost"),
    "callback_before_status": ({"route": "task"}, "callback_early"),
    "content_violation_task": ({"route": "task"}, "content_violation"),
    "content_violation_official": ({"route": "official"}, "content_violation"),
    "content_violation_legacy": ({"route": "legacy"}, "content_violation"),
    "rate_limited_submit": ({"route": "task"}, "rate_limited"),
    "server_error_submit": ({"route": "official"}, "server_error"),
    "server_error_every_attempt": ({"route": "task"}, "server_error=5"),
    "truncated_download": ({"route": "task"}, "truncated_download"),
    "truncated_download_legacy": ({"route": "legacy"}, "truncated_download"),
    "slow_download": ({"route": "task"}, "slow_download"),
    "expired_result_url": ({"route": "task"}, "expired_url"),
    "expired_video_official": ({"route": "official"}, "expired_url"),
    "not_mp4": ({"route": "official"}, "not_mp4"),
}


class Submitted:
    def __init__(self, prompt: str, status: int, body: dict[str, Any]) -> None:
        self.prompt = prompt
        self.status = status
        self.body = body

    @property
    def job_id(self) -> str:
        return self.body["id"] if self.status == 202 else self.body["error"]["job_id"]


@pytest.fixture(scope="module")
def submitted(e2e: E2E) -> dict[str, Submitted]:
    def submit(name: str) -> tuple[str, Submitted]:
        request, fault = CASES[name]
        prompt = e2e.prompt(f"Fault case {name} [fault:{fault}]")
        answer = e2e.submit({"prompt": prompt, **request})
        return name, Submitted(prompt, answer.status_code, answer.json())

    # A few at a time: every extra concurrent request costs the stack a cold worker.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(submit, CASES))


def provider_job(e2e: E2E, case: Submitted) -> dict[str, Any]:
    jobs = e2e.sim_jobs(case.prompt)
    assert len(jobs) == 1, f"expected one provider job for the prompt, found {len(jobs)}"
    return jobs[0]


def assert_nothing_stored(e2e: E2E, job: dict[str, Any]) -> None:
    assert job["video"] is None
    assert e2e.objects_for(job["id"]) == []
    assert not [u for u in e2e.open_uploads() if job["id"] in u["Key"]]


def assert_stored_once(e2e: E2E, job: dict[str, Any], provider: dict[str, Any]) -> None:
    assert [o["Key"] for o in e2e.objects_for(job["id"])] == [f"videos/{job['id']}.mp4"]
    assert not [u for u in e2e.open_uploads() if job["id"] in u["Key"]]
    assert provider["completed_downloads"] == 1


def final_callbacks(callbacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 2xx answers (each delivery ends with one, after any 503 it was asked to retry)."""
    return [c for c in callbacks if c["status"] is not None and 200 <= c["status"] < 300]


def test_duplicate_callbacks_store_once_and_succeed_once(e2e: E2E, submitted: dict[str, Submitted]) -> None:
    case = submitted["duplicate_callbacks"]
    job = e2e.wait(case.job_id)
    assert job["status"] == "succeeded"
    provider = provider_job(e2e, case)
    answered = final_callbacks(provider["callbacks"])
    # Three deliveries, every one acknowledged; exactly one of them stored and succeeded the job.
    assert len(answered) == 3
    results = [c["body"]["result"] for c in answered]
    assert results.count("succeeded") == 1, results
    # Under load the first store may run out of its callback budget and hand off (still one success).
    allowed = ("succeeded", "ignored: job already finished", "store already running", "ignored", "handed off")
    assert all(r in allowed for r in results), results
    assert_stored_once(e2e, job, provider)


def test_lost_callback_is_completed_by_the_workflow_fallback(e2e: E2E, submitted: dict[str, Submitted]) -> None:
    case = submitted["callback_lost"]
    job = e2e.wait(case.job_id)
    assert job["status"] == "succeeded"
    provider = provider_job(e2e, case)
    assert provider["callbacks"] == []  # no callback ever came
    assert provider["status_polls"] >= 1  # the workflow asked statusTask instead
    assert_stored_once(e2e, job, provider)


def test_callback_before_the_status_shows_success_is_retried(e2e: E2E, submitted: dict[str, Submitted]) -> None:
    case = submitted["callback_before_status"]
    job = e2e.wait(case.job_id)
    assert job["status"] == "succeeded"
    provider = provider_job(e2e, case)
    # The first delivery is told to come back (503: not bound yet, or the status API not final).
    first = provider["callbacks"][0]
    assert first["status"] == 503 and first["body"]["error"]["code"] in ("not_final", "not_ready")
    assert_stored_once(e2e, job, provider)


@pytest.mark.parametrize("name", ["content_violation_task", "content_violation_official", "content_violation_legacy"])
def test_content_violation_fails_the_job(e2e: E2E, submitted: dict[str, Submitted], name: str) -> None:
    case = submitted[name]
    job = e2e.wait(case.job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "content_violation", job["error"]
    assert_nothing_stored(e2e, job)
    assert provider_job(e2e, case)["downloads"] == 0


@pytest.mark.parametrize(("name", "route"), [("rate_limited_submit", "task"), ("server_error_submit", "official")])
def test_429_and_5xx_at_submit_are_retried(e2e: E2E, submitted: dict[str, Submitted], name: str, route: str) -> None:
    case = submitted[name]
    assert case.status == 202, case.body
    job = e2e.wait(case.job_id)
    assert job["status"] == "succeeded"
    # Two refusals, then the third attempt started exactly one provider job.
    assert e2e.submit_attempts(route, case.prompt) == 3
    assert_stored_once(e2e, job, provider_job(e2e, case))


def test_provider_down_at_submit_fails_the_job_cleanly(e2e: E2E, submitted: dict[str, Submitted]) -> None:
    case = submitted["server_error_every_attempt"]
    # The client learns at once, with the job id, and the job is failed (not left queued).
    assert case.status == 502
    assert case.body["error"]["code"] == "provider_unavailable"
    job = e2e.wait(case.job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "provider_unavailable"
    assert e2e.submit_attempts("task", case.prompt) == 3
    assert e2e.sim_jobs(case.prompt) == []
    assert_nothing_stored(e2e, job)


@pytest.mark.parametrize("name", ["truncated_download", "truncated_download_legacy"])
def test_truncated_download_fails_after_retries_and_stores_nothing(e2e: E2E, submitted: dict[str, Submitted], name: str) -> None:
    case = submitted[name]
    job = e2e.wait(case.job_id, timeout=120)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "download_failed", job["error"]
    assert_nothing_stored(e2e, job)
    provider = provider_job(e2e, case)
    assert provider["downloads"] >= 2  # retried
    assert provider["completed_downloads"] == 0


def test_slow_download_is_handed_to_the_workflow_and_stored_once(e2e: E2E, submitted: dict[str, Submitted]) -> None:
    case = submitted["slow_download"]
    job = e2e.wait(case.job_id)
    assert job["status"] == "succeeded"
    provider = provider_job(e2e, case)
    # The callback ran out of its time budget and handed the transfer over (still answering 2xx).
    results = [c["body"]["result"] for c in final_callbacks(provider["callbacks"])]
    assert results == ["handed off"], results
    assert_stored_once(e2e, job, provider)


@pytest.mark.parametrize(("name", "code"), [("expired_result_url", "download_failed"), ("expired_video_official", "expired")])
def test_expired_results_fail_the_job(e2e: E2E, submitted: dict[str, Submitted], name: str, code: str) -> None:
    case = submitted[name]
    job = e2e.wait(case.job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == code, job["error"]
    assert_nothing_stored(e2e, job)
    assert provider_job(e2e, case)["completed_downloads"] == 0


def test_non_mp4_body_is_refused(e2e: E2E, submitted: dict[str, Submitted]) -> None:
    case = submitted["not_mp4"]
    job = e2e.wait(case.job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "download_failed", job["error"]
    assert_nothing_stored(e2e, job)
