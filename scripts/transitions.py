"""State transitions and AWS cost of a job, counted from real execution histories.

Runs ``statemachine/job.asl.json`` in moto's Step Functions engine with the real handlers
behind its Lambda tasks (``local.stepfunctions``, the tests' harness too), the default settings (first
wait, poll interval, fallback wait, catalog), and a provider simulated in *virtual time*:
every Wait state advances a virtual clock by its full duration (and sleeps only
``duration / --time-scale`` real seconds), the simulated provider answers by that clock,
and the poll task reads it too (``videogen.tasks.wall_clock``), so its progress-rate
estimates see the provider's real pace. The state transitions are therefore exactly those
the real intervals imply.

    .venv/bin/python scripts/transitions.py [--json] [--queue 10] [--time-scale 1000]

Scenarios: official jobs ready after 190 s and 310 s (polled), task-route jobs whose callback
arrives or is lost, and a legacy job (the streaming call). For each: transitions, Lambda
invocations, how long after the provider had the video it was stored, and the AWS cost per
1000 jobs: Step Functions transitions, Lambda requests and GB-seconds (measured handler
durations, plus the virtual time a handler spends in a provider call, times the template's
memory sizes), DynamoDB request units, S3 requests and Secrets Manager calls (every AWS call a
handler makes, recorded with ``local.aws_calls``). Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
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

from local import aws_calls  # noqa: E402
from local import stepfunctions as harness  # noqa: E402
from local import template as cfn  # noqa: E402
from local.inprocess import create_aws_resources, load_event, mp4_bytes  # noqa: E402
from videogen import context, tasks  # noqa: E402
from videogen.settings import Settings  # noqa: E402

# Prices used (USD, us-east-1, on-demand list prices), named at the top of the report.
PRICES: dict[str, tuple[float, str]] = {
    "sfn_transition": (0.025 / 1000, "Step Functions Standard: $0.025 per 1,000 state transitions"),
    "lambda_request": (0.20 / 1_000_000, "Lambda: $0.20 per 1M requests"),
    "lambda_gb_second": (0.0000166667, "Lambda x86_64: $0.0000166667 per GB-second"),
    "dynamodb_write": (0.625 / 1_000_000, "DynamoDB on-demand: $0.625 per 1M write request units"),
    "dynamodb_read": (0.125 / 1_000_000, "DynamoDB on-demand: $0.125 per 1M read request units"),
    "s3_put": (0.005 / 1000, "S3 Standard: $0.005 per 1,000 PUT/COPY/POST/LIST requests"),
    "s3_get": (0.0004 / 1000, "S3 Standard: $0.0004 per 1,000 GET/HEAD requests"),
    "secrets": (0.05 / 10_000, "Secrets Manager: $0.05 per 10,000 API calls"),
    "other": (1.00 / 1_000_000, "any other AWS API call (EventBridge, SQS, SNS): $1.00 per 1M, an upper bound"),
}
# Goals (issue 13): transitions per scenario, stored within 120 s of ready, <= $0.50 per 1000 jobs.
TRANSITION_GOALS = {("official", 190): 8, ("official", 310): 12, ("task", "callback"): 5, ("task", "callback_lost"): 10}
STORED_AFTER_READY_GOAL_S = 120.0
USD_PER_1000_GOAL = 0.50
OFFICIAL = "https://official.provider.test"
TASK = "https://task.provider.test"
CDN = "https://cdn.provider.test"
LEGACY = "https://legacy.provider.test"
S3_PUT_CLASS = ("Put", "Copy", "Post", "List", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
S3_GET_CLASS = ("Get", "Head", "Select")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
DYNAMODB_READS = ("GetItem", "Query", "Scan", "BatchGetItem")


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
    invoke: Callable[[str, dict[str, Any]], dict[str, Any]] = harness.invoke
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
        router.post(f"{LEGACY}/v1/chat/completions").mock(side_effect=self._chat)

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

    def _chat(self, request: httpx.Request) -> httpx.Response:
        """The legacy streaming call: it lasts the queue and the generation (virtual time)."""
        self.created_at = self.clock.now
        self.clock.advance(self.queue_seconds + self.generation_seconds)
        lines = (
            "> ⌛️ Task is in queue, please wait patiently...\n\n",
            "> 🏃 Progress: 50.0%\n\n",
            f"> ✅ Video generated successfully, [Click here]({CDN}/task_1.mp4) to view video~~~\n\n",
        )
        chunks = [
            {"id": "chat_1", "choices": [{"index": 0, "delta": {"content": line}, "finish_reason": None}]} for line in lines
        ]
        chunks.append({"id": "chat_1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        body = "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

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
        answer = self.invoke("callback", event)
        self.callbacks.append({"at": self.clock.now, "status": answer["statusCode"], "body": answer.get("json")})


class Meter:
    """One scenario's bill: every handler invocation (billed seconds) and AWS call it made."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.invocations: list[tuple[str, float]] = []  # (function directory, seconds)
        self.calls: list[aws_calls.Call] = []
        self.job_id: str | None = None
        self.stored_at: float | None = None

    def timed(self, handler: str, run: Callable[[], Any]) -> Any:
        """Run one invocation; its duration is the real time plus the virtual time it spent
        in a provider call (the legacy stream lasts the whole generation)."""
        virtual, real = self.clock.now, time.perf_counter()
        try:
            return run()
        finally:
            self.invocations.append((handler, time.perf_counter() - real + self.clock.now - virtual))
            if self.stored_at is None and self.job_id is not None:
                job = context.get_context().repo.find(self.job_id)
                if job is not None and job.status.value == "succeeded":
                    self.stored_at = self.clock.now

    def invoke(self, handler: str, event: dict[str, Any]) -> dict[str, Any]:
        return dict(self.timed(handler, lambda: harness.invoke(handler, event)))


class MeteredRouter(harness.LambdaRouter):
    """The tests' Lambda router, each workflow task invocation timed by the scenario's meter."""

    meter: Meter | None = None

    def _run(self, function: harness.TaskFunction, name: str, event: Any) -> Any:
        assert self.meter is not None
        return self.meter.timed(function.handler, lambda: super(MeteredRouter, self)._run(function, name, event))


_METERS: list[Meter] = []


def _record_call(call: aws_calls.Call) -> None:
    if _METERS and not call.presigned:
        _METERS[-1].calls.append(call)


@dataclass
class Scenario:
    route: str
    case: str
    queue: float
    generation: float
    goal: bool = True  # False: shown for context, no goal applies

    @property
    def ready_after_s(self) -> float:
        return self.queue + self.generation

    @property
    def label(self) -> str:
        return f"{self.route} {self.case}, ready after {self.ready_after_s:.0f} s"


@dataclass
class Result:
    scenario: Scenario
    status: str
    job_status: str
    transitions: int
    lambda_invocations: int
    stored_after_ready_s: float | None
    path: list[str]
    costs: dict[str, float]  # USD per job, by line
    usage: dict[str, float]  # counts per job, by line

    @property
    def usd_per_1000(self) -> float:
        return 1000 * sum(self.costs.values())


def bill(transitions: int, meter: Meter, memory: dict[str, int]) -> tuple[dict[str, float], dict[str, float]]:
    """Usage and cost of one job, by price line."""
    usage = dict.fromkeys(PRICES, 0.0)
    usage["sfn_transition"] = transitions
    usage["lambda_request"] = len(meter.invocations)
    # Lambda bills duration rounded up to the millisecond, times the configured memory.
    usage["lambda_gb_second"] = sum(memory[h] / 1024 * (int(s * 1000) + 1) / 1000 for h, s in meter.invocations)
    for call in meter.calls:
        params = json.loads(call.params_json)
        if call.service == "dynamodb":
            if call.operation == "TransactWriteItems":
                usage["dynamodb_write"] += 2 * len(params.get("TransactItems", []))
            elif call.operation == "TransactGetItems":
                usage["dynamodb_read"] += 2 * len(params.get("TransactItems", []))
            elif call.operation in DYNAMODB_WRITES:
                usage["dynamodb_write"] += 1
            elif call.operation in DYNAMODB_READS:
                usage["dynamodb_read"] += 1  # items under 4 KB, strongly consistent: 1 unit (upper bound)
        elif call.service == "s3":
            if call.operation.startswith(S3_PUT_CLASS):
                usage["s3_put"] += 1
            elif call.operation.startswith(S3_GET_CLASS):
                usage["s3_get"] += 1
            # DeleteObject and AbortMultipartUpload are free
        elif call.service == "secretsmanager":
            usage["secrets"] += 1
        elif call.service != "stepfunctions":  # StartExecution is paid for by the transitions
            usage["other"] += 1
    costs = {line: usage[line] * PRICES[line][0] for line in PRICES}
    return usage, costs


def run(scenario: Scenario, *, time_scale: float, memory: dict[str, int]) -> Result:
    """One job through submit, the workflow (and the callback), in a fresh moto world."""
    context.reset()
    clock = VirtualClock(time_scale)
    meter = Meter(clock)
    provider = SimulatedProvider(
        clock, scenario.queue, scenario.generation, deliver_callbacks=scenario.case == "callback", invoke=meter.invoke
    )
    router = MeteredRouter(harness.task_functions())
    router.meter = meter
    router.warm_up()
    epoch = time.time()

    def virtual_wait(self: Any, env: Any, wait_seconds: int) -> None:
        clock.advance(wait_seconds)

    sleeps: list[float] = []
    with (
        mock_aws(config=harness.MOTO_CONFIG),
        router.installed(),
        harness.instant_retries(sleeps),
        mock.patch.object(WaitFunction, "_wait_interval", virtual_wait),
        mock.patch.object(tasks, "wall_clock", lambda: epoch + clock.now),
        respx.mock(assert_all_called=False) as http,
        mock.patch.dict(os.environ, {}),
    ):
        create_aws_resources()
        os.environ["STATE_MACHINE_ARN"] = harness.create_state_machine(router.functions)
        context.reset()
        provider.install(http)
        event = load_event("submit")
        body = {"prompt": "A golden retriever playing fetch on a sunny beach", "route": scenario.route}
        event["body"] = json.dumps(body)
        _METERS.append(meter)
        try:
            answer = meter.invoke("submit", event)
            if answer["statusCode"] != 202:
                raise SystemExit(f"{scenario.label}: submit answered {answer['statusCode']}: {answer['body']}")
            job_id = meter.job_id = answer["json"]["id"]
            clock.running.set()
            arn = harness.execution_arn(os.environ["STATE_MACHINE_ARN"], job_id)
            described = harness.wait_for(arn, timeout=120)
            harness.wait_all(os.environ["STATE_MACHINE_ARN"], timeout=120)
        finally:
            _METERS.remove(meter)
        events = harness.history(arn)
        job = context.get_context().repo.get(job_id)
    context.reset()
    transitions = harness.transitions(events)
    usage, costs = bill(transitions, meter, memory)
    stored_at = meter.stored_at
    return Result(
        scenario=scenario,
        status=described["status"],
        job_status=job.status.value,
        transitions=transitions,
        lambda_invocations=len(meter.invocations),
        stored_after_ready_s=None if stored_at is None else round(stored_at - scenario.ready_after_s, 1),
        path=harness.states_entered(events),
        costs=costs,
        usage=usage,
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


def goal_misses(r: Result) -> list[str]:
    """What a goal scenario missed (empty: every goal met)."""
    s = r.scenario
    if not s.goal:
        return []
    misses = []
    if r.job_status != "succeeded":
        misses.append(f"job {r.job_status}")
    limit = TRANSITION_GOALS.get((s.route, round(s.ready_after_s))) or TRANSITION_GOALS.get((s.route, s.case))
    if limit is not None and r.transitions > limit:
        misses.append(f"{r.transitions} transitions > {limit}")
    if s.case == "callback_lost" and (r.stored_after_ready_s is None or r.stored_after_ready_s > STORED_AFTER_READY_GOAL_S):
        misses.append(f"stored {r.stored_after_ready_s} s after ready > {STORED_AFTER_READY_GOAL_S:.0f}")
    if s.route != "legacy" and r.usd_per_1000 > USD_PER_1000_GOAL:
        misses.append(f"${r.usd_per_1000:.3f} per 1000 jobs > ${USD_PER_1000_GOAL:.2f}")
    return misses


def print_report(results: list[Result], defaults: Settings) -> None:
    print("Job workflow: statemachine/job.asl.json in moto's engine, real handlers, virtual clock")
    print(
        f"defaults: official first wait min(expected, {defaults.official_first_wait_seconds}) s, task first wait expected + "
        f"{defaults.fallback_wait_seconds} s, poll interval {defaults.poll_interval_seconds} s (a floor), wait cap "
        f"{defaults.poll_max_interval_seconds} s, deadline {defaults.workflow_deadline_seconds} s"
    )
    print("prices (USD):")
    for _, text in PRICES.values():
        print(f"  {text}")
    print()
    width = max(len(r.scenario.label) for r in results)
    columns = ("transitions", "λ calls", "stored after ready s", "SFN", "λ req", "λ GB-s", "DynamoDB", "S3", "secrets")
    columns += ("$/1000 jobs",)
    header = f"{'scenario':<{width}}  " + "  ".join(columns)
    print(header)
    print("-" * len(header))
    for r in results:
        per_1000 = {k: 1000 * v for k, v in r.costs.items()}
        values = (
            str(r.transitions),
            str(r.lambda_invocations),
            "-" if r.stored_after_ready_s is None else f"{r.stored_after_ready_s:.0f}",
            f"{per_1000['sfn_transition']:.3f}",
            f"{per_1000['lambda_request']:.4f}",
            f"{per_1000['lambda_gb_second']:.4f}",
            f"{per_1000['dynamodb_write'] + per_1000['dynamodb_read']:.4f}",
            f"{per_1000['s3_put'] + per_1000['s3_get']:.4f}",
            f"{per_1000['secrets'] + per_1000['other']:.4f}",
            f"{r.usd_per_1000:.3f}",
        )
        print(f"{r.scenario.label:<{width}}  " + "  ".join(f"{v:>{len(c)}}" for v, c in zip(values, columns, strict=True)))
    print("(cost columns: USD per 1000 jobs; secrets includes any other AWS call)")
    print()
    for r in results:
        u = r.usage
        print(
            f"{r.scenario.label}: execution {r.status}, job {r.job_status}; per job {u['lambda_gb_second']:.3f} GB-s, "
            f"DynamoDB {u['dynamodb_write']:.0f} WRU + {u['dynamodb_read']:.0f} RRU, "
            f"S3 {u['s3_put']:.0f} PUT + {u['s3_get']:.0f} GET, {u['secrets']:.0f} secret reads"
        )
        print(f"  {compact(r.path)}")
    print()
    print("Lambda durations are this machine's in-process figures (moto, no network) plus the virtual time a")
    print("handler spends in a provider call; provider latency and network transfer time are not in them.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=float, default=10.0, help="seconds a video waits in the provider's queue first")
    parser.add_argument("--time-scale", type=float, default=1000.0, help="virtual seconds per real second (0: no sleeping)")
    parser.add_argument("--json", action="store_true", help='print {"scenarios": [...]} for scripts instead of the report')
    args = parser.parse_args()

    aws_calls.install(_record_call)
    memory = {f.code_dir.name: f.memory for f in cfn.functions().values()}
    q = args.queue
    scenarios = [
        Scenario("official", "polled", q, 190.0 - q),
        Scenario("official", "polled", q, 310.0 - q),
        Scenario("task", "callback", q, 310.0 - q),
        Scenario("task", "callback_lost", q, 310.0 - q),
        Scenario("legacy", "streamed", q, 190.0 - q),
        Scenario("task", "callback_lost", q, 610.0 - q, goal=False),  # much slower than the catalog expects
    ]
    # Whatever the handlers print (metric lines) goes to stderr: stdout is the report alone.
    with contextlib.redirect_stdout(sys.stderr):
        results = [run(s, time_scale=args.time_scale, memory=memory) for s in scenarios]
    misses = {r.scenario.label: goal_misses(r) for r in results}

    if args.json:
        rows = [
            {
                "route": r.scenario.route,
                "case": r.scenario.case,
                "ready_after_s": r.scenario.ready_after_s,
                "transitions": r.transitions,
                "lambda_invocations": r.lambda_invocations,
                "stored_after_ready_s": r.stored_after_ready_s,
                "aws_usd_per_1000_jobs": round(r.usd_per_1000, 4),
                "aws_usd_per_1000_jobs_by_line": {k: round(1000 * v, 5) for k, v in r.costs.items()},
                "job_status": r.job_status,
                "goal": r.scenario.goal,
                "goal_misses": misses[r.scenario.label],
            }
            for r in results
        ]
        print(json.dumps({"prices_usd": {k: v[0] for k, v in PRICES.items()}, "scenarios": rows}, indent=1))
    else:
        print_report(results, Settings())
        for r in results:
            if r.scenario.goal:
                missed = misses[r.scenario.label]
                print(f"goal {r.scenario.label}: {'PASS' if not missed else 'FAIL (' + '; '.join(missed) + ')'}")
    return 1 if any(misses.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
