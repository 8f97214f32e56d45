"""Client of the task API (seed 003): ``generateTask`` / ``statusTask``, callbacks.

Answers are wrapped ``{"code", "message"|"msg", "data"}``; a callback carries the same
body as the status answer. ``resultJson`` is a JSON *string* holding ``resultUrls``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequest, ProviderRejected, ProviderUnavailable
from ..http import request_timeout, send_once, send_with_retries
from . import (
    BaseProvider,
    CallbackReport,
    Outcome,
    ProviderClient,
    StartRequest,
    error_message,
    job_error,
    provider_job_id,
)

if TYPE_CHECKING:
    from ..models import Job, Route

TASK_STATES = ("pending", "processing", "success", "failed")


class TaskData(BaseModel):
    """The ``data`` object of a status answer or a callback."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    task_id: str = Field(alias="taskId", min_length=1, max_length=200)
    state: str
    result_json: str | None = Field(default=None, alias="resultJson")
    fail_code: str | None = Field(default=None, alias="failCode")
    fail_msg: str | None = Field(default=None, alias="failMsg")
    create_time: int | None = Field(default=None, alias="createTime")
    complete_time: int | None = Field(default=None, alias="completeTime")
    cost_time: int | None = Field(default=None, alias="costTime")


def parse_task_payload(body: Any) -> TaskData:
    """Validate a wrapped ``{code, message, data}`` body or a bare ``data`` object."""
    if not isinstance(body, dict):
        raise InvalidRequest("callback body must be a JSON object", field="body")
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    try:
        task = TaskData.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "data"
        raise InvalidRequest(f"invalid task payload: {field}: {first['msg']}", field=f"data.{field}") from exc
    if task.state not in TASK_STATES:
        raise InvalidRequest(f"unknown task state {task.state!r}", field="data.state", allowed=list(TASK_STATES))
    return task


def result_urls(task: TaskData) -> list[str]:
    """The ``resultUrls`` inside ``resultJson`` (parsed a second time); raises on bad shapes."""
    if not task.result_json:
        raise InvalidRequest("successful task has no resultJson", field="data.resultJson")
    try:
        parsed = json.loads(task.result_json)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("resultJson is not valid JSON", field="data.resultJson") from exc
    urls = parsed.get("resultUrls") if isinstance(parsed, dict) else None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise InvalidRequest("resultJson.resultUrls must be a non-empty list of URLs", field="data.resultJson")
    return urls


def outcome_of(task: TaskData) -> Outcome:
    """The one mapping of task-API states to job outcomes."""
    if task.state == "success":
        return Outcome(phase="succeeded", progress=100, result_url=result_urls(task)[0])
    if task.state == "failed":
        return Outcome(phase="failed", error=job_error(task.fail_code, task.fail_msg))
    return Outcome(phase="running" if task.state == "processing" else "pending")


class TaskApi(ProviderClient):
    """``POST /api/v1/generateTask/{model}`` and ``GET /api/v1/statusTask/{model}``."""

    def _unwrap(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if 400 <= response.status_code < 500:
            raise ProviderRejected(f"{what} refused by provider: {error_message(response)}", http_status=response.status_code)
        if response.status_code >= 300:
            raise ProviderUnavailable(f"{what}: unexpected HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(f"{what}: provider answered non-JSON") from exc
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{what}: provider answered an unexpected shape")
        # Some deployments answer HTTP 200 with the real status in the body's "code".
        code = body.get("code")
        if isinstance(code, int) and code != 200:
            if code == 429 or code >= 500:
                raise ProviderUnavailable(f"{what}: provider code {code}: {error_message(response)}")
            raise ProviderRejected(f"{what} refused by provider: {error_message(response)}", http_status=code)
        data = body.get("data") if "data" in body else body
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"{what}: provider answer has no data object")
        return data

    def create(
        self,
        model: str,
        *,
        prompt: str,
        seconds: int,
        orientation: str | None,
        image_urls: list[str] | None,
        callback_url: str | None,
        deadline: float | None = None,
    ) -> str:
        """Start a task; returns its ``taskId``. Sent at most once (see :func:`send_once`)."""
        task_input: dict[str, Any] = {
            "mode": "image-to-video" if image_urls else "text-to-video",
            "prompt": prompt,
            "duration": seconds,
            "remove_watermark": True,
        }
        if orientation:
            task_input["aspect_ratio"] = orientation
        if image_urls:
            task_input["image_urls"] = image_urls
        body: dict[str, Any] = {"provider": self.settings.task_provider, "input": task_input}
        if callback_url:
            body.update(request_type="callback", callback_url=callback_url)
        else:
            body["request_type"] = "async"
        url = f"{self.base_url}/api/v1/generateTask/{model}"
        response = send_once(
            lambda: self.client.post(url, json=body, headers=self.headers, timeout=request_timeout(self.settings, deadline)),
            self.settings,
            what="generateTask",
            deadline=deadline,
        )
        data = self._unwrap(response, "generateTask")
        task_id = data.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderUnavailable("generateTask: provider answer has no taskId")
        return task_id

    def status(self, model: str, task_id: str, *, deadline: float | None = None) -> TaskData:
        """The task's current status (the provider's truth, used to verify callbacks)."""
        url = f"{self.base_url}/api/v1/statusTask/{model}"
        params = {"taskId": task_id}
        response = send_with_retries(
            lambda: self.client.get(url, params=params, headers=self.headers, timeout=request_timeout(self.settings, deadline)),
            self.settings,
            what="statusTask",
            deadline=deadline,
        )
        data = self._unwrap(response, "statusTask")
        try:
            return parse_task_payload(data)
        except InvalidRequest as exc:
            raise ProviderUnavailable(f"statusTask: {exc.message}") from exc


class TaskProvider(BaseProvider):
    """The ``task`` route: started by ``generateTask``, finished by our callback (or a poll)."""

    route: ClassVar[Route] = "task"
    calls_back: ClassVar[bool] = True

    api: TaskApi

    def create(self, job: Job, start: StartRequest) -> str:
        return self.api.create(
            start.provider_model,
            prompt=job.prompt,
            seconds=job.seconds or 10,
            orientation=job.orientation,
            image_urls=[start.image_url] if start.image_url else None,
            callback_url=start.callback_url,
            deadline=start.deadline,
        )

    def status(self, job: Job, *, deadline: float | None = None) -> Outcome:
        return outcome_of(self.api.status(job.model, provider_job_id(job), deadline=deadline))

    def first_wait_seconds(self, expected_seconds: int) -> int:
        # The callback normally ends the job; the workflow looks shortly after it is due.
        return expected_seconds + self.settings.fallback_wait_seconds

    def read_callback(self, body: Any) -> CallbackReport:
        task = parse_task_payload(body)
        return CallbackReport(provider_job_id=task.task_id, outcome=outcome_of(task))
