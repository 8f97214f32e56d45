"""State transitions (and AWS cost) of a typical job, counted from a real execution history.

Runs ``statemachine/job.asl.json`` in moto's Step Functions engine with the real handlers
behind its Lambda tasks (``local.stepfunctions``, the tests' harness too), the default settings (first
wait, poll interval, fallback wait, catalog), and a provider simulated in *virtual time*:
every Wait state advances a virtual clock by its full duration (and sleeps only
``duration / --time-scale`` real seconds), and the simulated provider answers by that
clock. The state transitions are therefore exactly those the real intervals imply.

    .venv/bin/python scripts/transitions.py [--generation 180] [--queue 10] [--time-scale 1000]

Scenarios: a typical official job (3-minute generation), a task-route job whose callback
arrives (the workflow only checks it once), and for context a slow official job and a
task-route job whose callback is lost (the fallback polls and stores). Exit status 1 when a
goal is missed (official <= 20 transitions, callback job <= 6).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from local import inprocess  # noqa: E402

inprocess.use_env()  # fake credentials, table and bucket names, provider hosts
# Keep stdout for the report: no EMF metric lines, only error logs.
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
warnings.filterwarnings("ignore", message="No application metrics to publish")

import httpx  # noqa: E402
import respx  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction  # noqa: E402

from local import stepfunctions as harness  # noqa: E402
from local.inprocess import create_aws_resources, load_event, mp4_bytes  # noqa: E402
from videogen import context  # noqa: E402
from videogen.settings import Settings  # noqa: E402

STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1000  # USD, Standard workflows
LAMBDA_PER_REQUEST = 0.20 / 1_000_000  # USD, requests only (duration is billed separately)
GOALS = {"official": 20, "callback": 6}
OFFICIAL = "https://official.provider.test"
TASK = "https://task.provider.test"
CDN = "https://cdn.provider.test"


class VirtualClock:
    """Seconds since the scenario began; Wait states advance it and run what fell due."""

    def __init__(self, time_scale: float) -> None:
        self.now = 0.0
        self.time_scale = time_scale
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        # Virtual time stands still until submit has answered (it takes milliseconds for real,
        # which must not count as minutes of virtual time for the already-started workflow).
        self.running = threading.Event()

    def at(self, when: float, action: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._due, (when, next(self._order), action))

    def advance(self, seconds: float) -> None:
        if not self.running.wait(timeout=60):
            raise RuntimeError("the virtual clock was never started")
        target = self.now + seconds
        while True:
            with self._lock:
                if not self._due or self._due[0][0] > target:
                    break
                when, _, action = heapq.heappop(self._due)
            self.now = max(self.now, when)
            action()
        self.now = target
        if self.time_scale > 0:
            time.sleep(seconds / self.time_scale)


@dataclass
class SimulatedProvider:
    """The official and task APIs in virtual time: queued, then generating, then done."""

    clock: VirtualClock
    queue_seconds: float
    generation_seconds: float
    deliver_callbacks: bool
    video: bytes = field(default_factory=lambda: mp4_bytes(256 * 1024))
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0

    def state(self) -> tuple[str, int]:
        elapsed = self.clock.now - self.created_at
        if elapsed < self.queue_seconds:
            return "queued", 0
        if elapsed < self.queue_seconds + self.generation_seconds:
            return "in_progress", int(100 * (elapsed - self.queue_seconds) / self.generation_seconds)
        return "completed", 100

    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{OFFICIAL}/v1/videos").mock(side_effect=self._create_video)
        router.get(f"{OFFICIAL}/v1/videos/video_1").mock(side_effect=lambda _: self._video())
        router.get(f"{OFFICIAL}/v1/videos/video_1/content").mock(side_effect=self._content)
        router.post(url__regex=rf"{TASK}/api/v1/generateTask/.+").mock(side_effect=self._create_task)
        router.get(url__regex=rf"{TASK}/api/v1/statusTask/.+").mock(side_effect=lambda _: self._task())
        router.get(f"{CDN}/task_1.mp4").mock(side_effect=self._content)

    def _create_video(self, request: httpx.Request) -> httpx.Response:
        self.created_at = self.clock.now
        return self._video()

    def _video(self) -> httpx.Response:
        status, progress = self.state()
        return httpx.Response(200, json={"id": "video_1", "object": "video", "status": status, "progress": progress})

    def _content(self, request: httpx.Request) -> httpx.Response:
        if self.state()[0] != "completed":
            return httpx.Response(404, json={"error": {"message": "not ready", "type": "invalid_request_error"}})
        return httpx.Response(200, content=self.video, headers={"content-type": "video/mp4"})

    def _create_task(self, request: httpx.Request) -> httpx.Response:
        self.created_at = self.clock.now
        body = json.loads(request.content)
        if self.deliver_callbacks:
            url = urlparse(body["callback_url"])
            job_id = url.path.rsplit("/", 1)[-1]
            token = parse_qs(url.query)["token"][0]
            self.clock.at(self.created_at + self.queue_seconds + self.generation_seconds, lambda: self._callback(job_id, token))
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "task_1"}})

    def _task_data(self) -> dict[str, Any]:
        status, _ = self.state()
        state = {"queued": "pending", "in_progress": "processing", "completed": "success"}[status]
        data: dict[str, Any] = {"taskId": "task_1", "state": state}
        if state == "success":
            data["resultJson"] = json.dumps({"resultUrls": [f"{CDN}/task_1.mp4"]})
        return data

    def _task(self) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": self._task_data()})

    def _callback(self, job_id: str, token: str) -> None:
        event = load_event("callback-success")
        event["queryStringParameters"] = {"token": token}
        event["rawQueryString"] = f"token={token}"
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{job_id}"
        event["pathParameters"] = {"id": job_id}
        event["body"] = json.dumps({"code": 200, "message": "success", "data": self._task_data()})
        answer = harness.invoke("callback", event)
        self.callbacks.append({"at": self.clock.now, "status": answer["statusCode"], "body": answer.get("json")})


@dataclass
class Result:
    scenario: str
    status: str
    job_status: str
    transitions: int
    workflow_invocations: int
    all_invocations: int
    path: list[str]
    finished_at: float


def run(scenario: str, route: str, *, queue: float, generation: float, callbacks: bool, time_scale: float) -> Result:
    """One job through submit, the workflow (and the callback), in a fresh moto world."""
    context.reset()
    clock = VirtualClock(time_scale)
    provider = SimulatedProvider(clock, queue, generation, deliver_callbacks=callbacks)
    router = harness.LambdaRouter(harness.task_functions())
    router.warm_up()

    def virtual_wait(self: Any, env: Any, wait_seconds: int) -> None:
        clock.advance(wait_seconds)

    sleeps: list[float] = []
    with (
        mock_aws(config=harness.MOTO_CONFIG),
        router.installed(),
        harness.instant_retries(sleeps),
        mock.patch.object(WaitFunction, "_wait_interval", virtual_wait),
        respx.mock(assert_all_called=False) as http,
        mock.patch.dict(os.environ, {}),
    ):
        create_aws_resources()
        os.environ["STATE_MACHINE_ARN"] = harness.create_state_machine(router.functions)
        context.reset()
        provider.install(http)
        event = load_event("submit")
        event["body"] = json.dumps({"prompt": "A golden retriever playing fetch on a sunny beach", "route": route})
        answer = harness.invoke("submit", event)
        if answer["statusCode"] != 202:
            raise SystemExit(f"{scenario}: submit answered {answer['statusCode']}: {answer['body']}")
        job_id = answer["json"]["id"]
        clock.running.set()
        arn = harness.execution_arn(os.environ["STATE_MACHINE_ARN"], job_id)
        described = harness.wait_for(arn, timeout=120)
        harness.wait_all(os.environ["STATE_MACHINE_ARN"], timeout=120)
        events = harness.history(arn)
        job = context.get_context().repo.get(job_id)
    context.reset()
    workflow = harness.lambda_invocations(events)
    return Result(
        scenario=scenario,
        status=described["status"],
        job_status=job.status.value,
        transitions=harness.transitions(events),
        workflow_invocations=workflow,
        all_invocations=workflow + 1 + len(provider.callbacks),
        path=harness.states_entered(events),
        finished_at=clock.now,
    )


def compact(path: list[str]) -> str:
    """``Poll > NextStep > WaitForNextPoll`` runs folded into ``(…) xN``."""
    cycle = ["WaitForNextPoll", "Poll", "NextStep"]
    out: list[str] = []
    i = 0
    while i < len(path):
        n = 0
        while path[i + 3 * n : i + 3 * n + 3] == cycle:
            n += 1
        if n:
            out.append(f"({' > '.join(cycle)}) x{n}")
            i += 3 * n
        else:
            out.append(path[i])
            i += 1
    return " > ".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generation", type=float, default=180.0, help="typical official generation time, seconds")
    parser.add_argument("--queue", type=float, default=10.0, help="seconds a video waits in the provider's queue first")
    parser.add_argument("--task-generation", type=float, default=300.0, help="task-route generation time, seconds")
    parser.add_argument("--time-scale", type=float, default=1000.0, help="virtual seconds per real second (0: no sleeping)")
    args = parser.parse_args()

    defaults = Settings()
    print("Job workflow state transitions: statemachine/job.asl.json in moto's engine, real handlers, virtual clock")
    print(
        f"defaults: official first wait min(expected, {defaults.official_first_wait_seconds}) s, poll interval "
        f"{defaults.poll_interval_seconds} s, task fallback {defaults.fallback_wait_seconds} s past the expected time, "
        f"deadline {defaults.workflow_deadline_seconds} s"
    )
    scenarios = [
        ("official", "official, typical", "official", args.queue, args.generation, False),
        ("callback", "task route, callback arrives", "task", args.queue, args.task_generation, True),
        (None, "official, slow", "official", args.queue, 300.0, False),
        (None, "task route, callback lost (fallback)", "task", args.queue, args.task_generation, False),
    ]
    results: list[tuple[str | None, Result]] = []
    for goal, name, route, queue, generation, callbacks in scenarios:
        label = f"{name} ({queue:.0f} s queue + {generation:.0f} s generation)"
        result = run(label, route, queue=queue, generation=generation, callbacks=callbacks, time_scale=args.time_scale)
        results.append((goal, result))

    print()
    width = max(len(r.scenario) for _, r in results)
    columns = ("transitions", "workflow λ", "all λ", "SFN $/1000 jobs", "λ req $/1000 jobs")
    header = f"{'scenario':<{width}}  " + "  ".join(f"{c:>{len(c)}}" for c in columns)
    print(header)
    print("-" * len(header))
    for _, r in results:
        sfn_cost = r.transitions * STEP_FUNCTIONS_PER_TRANSITION * 1000
        lambda_cost = r.all_invocations * LAMBDA_PER_REQUEST * 1000
        values = (
            str(r.transitions),
            str(r.workflow_invocations),
            str(r.all_invocations),
            f"{sfn_cost:.4f}",
            f"{lambda_cost:.5f}",
        )
        print(f"{r.scenario:<{width}}  " + "  ".join(f"{v:>{len(c)}}" for v, c in zip(values, columns, strict=True)))
    print()
    for _, r in results:
        print(f"{r.scenario}: execution {r.status}, job {r.job_status}, done at t={r.finished_at:.0f} s")
        print(f"  {compact(r.path)}")
    print()
    print("Cost: $0.025 per 1000 state transitions (Standard); Lambda $0.20 per 1M requests (all λ: submit, callback")
    print("and workflow tasks; Lambda duration, DynamoDB, S3 and Secrets Manager are billed on top and not counted here).")

    failed = False
    for goal, r in results:
        if goal is None:
            continue
        ok = r.transitions <= GOALS[goal] and r.job_status == "succeeded"
        failed |= not ok
        print(f"goal {goal}: <= {GOALS[goal]} transitions, job succeeded: {'PASS' if ok else 'FAIL'} ({r.transitions})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
