"""The poll task's wait follows the job: progress rate, expected time, growing intervals.

``next_wait`` is pure (waits come from its inputs); the poll task is run on a fixed clock.
"""

from __future__ import annotations

import pytest
import respx

from tests.workflow.test_workflow_tasks import OFFICIAL_JOB, STATUS_URL, TASK_ID, TASK_JOB, VIDEO_ID, VIDEO_URL, make_job, video
from videogen import context as videogen_context
from videogen.providers import Outcome
from videogen.settings import Settings
from videogen.tasks import PollInput, PollMemory, next_wait, poll, remaining_estimate


def running(progress: int | None = None, hint: float | None = None) -> Outcome:
    return Outcome(phase="running", progress=progress, poll_after_seconds=hint)


@pytest.fixture
def tasks(aws) -> videogen_context.Context:
    return videogen_context.get_context()


# -- the estimate -------------------------------------------------------------------------------


def test_first_look_estimates_the_rest_from_the_progress_since_the_job_was_created():
    # 50 % after 100 s: 0.5 %/s, so 100 s to go; stretched x1.1 + 2 s
    assert remaining_estimate(50, None, now=1000.0, age_seconds=100.0) == pytest.approx(100.0)
    assert next_wait(running(50), 15, 300, None, now=1000.0, age_seconds=100.0) == 112


def test_later_looks_use_the_rate_between_the_last_two_polls():
    # 40 % -> 60 % in 40 s: 0.5 %/s, 80 s to go (the job's age would say 333 s)
    previous = PollMemory(progress=40, polled_at=960.0, wait_seconds=40)
    assert remaining_estimate(60, previous, now=1000.0, age_seconds=500.0) == pytest.approx(80.0)
    assert next_wait(running(60), 15, 300, None, previous=previous, now=1000.0, age_seconds=500.0) == 90


@pytest.mark.parametrize("progress", [None, 0, 100])
def test_progress_that_says_nothing_gives_no_estimate(progress):
    assert remaining_estimate(progress, None, now=1000.0, age_seconds=100.0) is None


def test_progress_standing_still_gives_no_estimate_and_the_waits_grow():
    previous = PollMemory(progress=60, polled_at=970.0, wait_seconds=30)
    assert remaining_estimate(60, previous, now=1000.0, age_seconds=500.0) is None
    assert next_wait(running(60), 15, 300, None, previous=previous, now=1000.0, age_seconds=500.0) == 60


def test_an_almost_done_job_is_looked_at_again_after_the_interval_not_sooner():
    # 99 % after 300 s: about 3 s to go, but never more often than the configured interval
    assert next_wait(running(99), 15, 120, None, now=1000.0, age_seconds=300.0) == 15


def test_a_long_estimate_is_capped():
    assert next_wait(running(5), 15, 120, None, now=1000.0, age_seconds=100.0) == 120


# -- no progress: the catalog's expected time, then growing intervals ---------------------------


def test_without_progress_a_job_younger_than_expected_waits_for_the_expected_time():
    assert next_wait(running(), 15, 300, None, now=1000.0, age_seconds=200.0, expected_seconds=300) == 100


@pytest.mark.parametrize(("previous_wait", "wait"), [(15, 30), (30, 60), (60, 120), (120, 120), (None, 15)])
def test_without_progress_past_the_expected_time_each_wait_doubles_up_to_the_cap(previous_wait, wait):
    previous = PollMemory(wait_seconds=previous_wait)
    assert next_wait(running(), 15, 120, None, previous=previous, now=1000.0, age_seconds=400.0, expected_seconds=300) == wait


# -- what always holds ------------------------------------------------------------------------


def test_the_servers_hint_is_never_undercut():
    assert next_wait(running(99, hint=40.0), 15, 120, None, now=1000.0, age_seconds=300.0) == 40


def test_no_wait_passes_the_deadline():
    assert next_wait(running(5), 15, 120, 7.0, now=1000.0, age_seconds=100.0) == 7
    assert next_wait(running(), 15, 120, -3.0, previous=PollMemory(wait_seconds=60)) == 0


def test_with_nothing_known_the_wait_is_the_interval():
    assert next_wait(running(), 15, 120, None) == 15
    assert next_wait(running(), 0, 0, None, previous=PollMemory(wait_seconds=60), now=1.0, age_seconds=5.0) == 0


# -- the poll task carries what the next poll needs ---------------------------------------------


@respx.mock
def test_poll_estimates_from_the_previous_answer_in_the_workflow_state(tasks):
    # Given an official job at 50 %, and a previous poll that saw 20 % 60 s earlier
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(VIDEO_URL).mock(return_value=video("in_progress", 50))
    previous = {"phase": "running", "progress": 20, "polled_at": 5_000_000_000 - 60, "wait_seconds": 60}
    request = PollInput.model_validate(
        {
            "action": "poll",
            "job_id": OFFICIAL_JOB,
            "poll_interval_seconds": 15,
            "workflow": {"job_id": OFFICIAL_JOB, "poll": previous},
        }
    )

    # When it polls (at a fixed time)
    answer = poll(tasks, request, now=lambda: 5_000_000_000.0)

    # Then 0.5 %/s leaves 100 s: it waits 112 s (capped at 120), and answers its time and progress
    assert answer["phase"] == "running" and answer["progress"] == 50
    assert answer["wait_seconds"] == 112 and answer["polled_at"] == 5_000_000_000.0


@respx.mock
def test_poll_of_a_task_job_without_its_callback_waits_longer_each_time(tasks):
    # Given a task job still processing, after a first look that waited 30 s
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    respx.get(STATUS_URL).mock(
        return_value=respx.MockResponse(200, json={"code": 200, "data": {"taskId": TASK_ID, "state": "processing"}})
    )
    state = {"expected_seconds": 0, "poll": {"phase": "running", "progress": 0, "wait_seconds": 30}, "unrelated": [1, 2]}
    request = PollInput.model_validate({"action": "poll", "job_id": TASK_JOB, "poll_interval_seconds": 15, "workflow": state})

    # When it polls, Then the next wait doubles
    assert poll(tasks, request)["wait_seconds"] == 60


@respx.mock
def test_poll_without_workflow_state_still_polls(tasks):
    # An execution started with an older input (no expected time, no previous poll)
    make_job(tasks, "task", TASK_JOB, TASK_ID)
    respx.get(STATUS_URL).mock(
        return_value=respx.MockResponse(200, json={"code": 200, "data": {"taskId": TASK_ID, "state": "processing"}})
    )
    request = PollInput.model_validate({"action": "poll", "job_id": TASK_JOB, "poll_interval_seconds": 15})
    assert poll(tasks, request)["wait_seconds"] == 15


def test_a_task_job_is_first_looked_at_shortly_after_its_expected_time(tasks):
    assert Settings().fallback_wait_seconds == 30
    assert tasks.provider("task").first_wait_seconds(300) == 330


@pytest.mark.parametrize(
    "state",
    [{"poll": {"progress": "lots", "polled_at": []}}, {"expected_seconds": -5}, {"poll": "running"}],
)
@respx.mock
def test_poll_ignores_a_workflow_state_that_does_not_fit(tasks, state):
    # The state only tunes the wait: a part that does not fit never fails the job
    make_job(tasks, "official", OFFICIAL_JOB, VIDEO_ID)
    respx.get(VIDEO_URL).mock(return_value=video("in_progress", 0))
    request = PollInput.model_validate({"action": "poll", "job_id": OFFICIAL_JOB, "poll_interval_seconds": 15, "workflow": state})
    answer = poll(tasks, request)
    assert answer["phase"] == "running" and answer["wait_seconds"] == 15
    assert tasks.repo.get(OFFICIAL_JOB).status == "in_progress"
