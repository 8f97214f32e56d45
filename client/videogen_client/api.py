"""The HTTP API of a videogen deployment, as the client sees it.

Reads (``GET``) are retried with exponential backoff and full jitter on 429, 5xx and
network errors, honouring ``Retry-After``. ``POST /videos`` is sent exactly once: it starts
paid work at a provider, and only the caller can decide whether to repeat it (with the same
``Idempotency-Key`` a repeat is safe and returns the first answer).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from . import __version__

TERMINAL = ("succeeded", "failed")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The first bytes of an MP4 file: a box size, then "ftyp".
MP4_BRAND_OFFSET = slice(4, 8)


class ApiError(Exception):
    """The API answered with an error (or could not be reached): what a person needs to fix it."""

    def __init__(self, status: int, error: dict[str, Any], *, hint: str = "") -> None:
        self.status = status
        self.error = error
        self.hint = hint
        super().__init__(self.message)

    @property
    def code(self) -> str:
        return str(self.error.get("code") or (f"http_{self.status}" if self.status else "unreachable"))

    @property
    def message(self) -> str:
        return str(self.error.get("message") or "request failed")

    @property
    def field(self) -> str | None:
        value = self.error.get("field")
        return str(value) if value is not None else None

    @property
    def allowed(self) -> list[Any] | None:
        value = self.error.get("allowed")
        if value is None:
            return None
        return list(value) if isinstance(value, list | tuple) else [value]

    @property
    def job_id(self) -> str | None:
        """A refused or unavailable provider fails the job at submit: the error names it."""
        value = self.error.get("job_id")
        return str(value) if value else None

    def document(self) -> dict[str, Any]:
        """The JSON written by ``--json``: the API's error object and the HTTP status."""
        return {"error": self.error, "http_status": self.status}

    @classmethod
    def from_response(cls, response: httpx.Response, *, signed: bool) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = dict(body["error"])
        elif isinstance(body, dict) and "message" in body:  # API Gateway's own answers: {"message": "Forbidden"}
            error = {"code": f"http_{response.status_code}", "message": str(body["message"])}
        else:
            text = response.text.strip()[:200] or response.reason_phrase
            error = {"code": f"http_{response.status_code}", "message": text}
        hint = ""
        if response.status_code in (401, 403) and "error" not in (body or {}):
            hint = (
                "the API refused the signature: check your AWS credentials and that they may call execute-api:Invoke"
                if signed
                else "the API wants IAM-signed requests: drop --no-sign (it is only for ClientAuth=NONE and the local stack)"
            )
        return cls(response.status_code, error, hint=hint)


class DownloadError(Exception):
    """The video could not be downloaded (nothing is left at the target path)."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter: attempt n sleeps up to ``base * 2**n`` (capped)."""

    retries: int = 4
    base: float = 0.5
    cap: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.base * 2**attempt))
        if retry_after:
            with contextlib.suppress(ValueError):  # an HTTP date: the jittered delay will do
                delay = max(delay, min(self.cap, float(retry_after)))
        return delay


class ApiClient:
    """One deployment's HTTP API. ``auth`` signs requests (SigV4) or is ``None`` (ClientAuth=NONE)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signed = auth is not None
        self.backoff = backoff or Backoff()
        self.http = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"videogen-cli/{__version__}", "Accept": "application/json"},
        )
        # Presigned video URLs carry their own authorization: never send them a SigV4 header.
        self.downloads = httpx.Client(timeout=httpx.Timeout(timeout, read=120.0), transport=transport, follow_redirects=True)

    def close(self) -> None:
        self.http.close()
        self.downloads.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- the routes -------------------------------------------------------------------

    def create(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /videos``, sent once (never retried); the accepted job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            response = self.http.post("/videos", json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(
                0,
                {"code": "unreachable", "message": f"POST {self.base_url}/videos failed: {exc}"},
                hint="the job may or may not have been created: check `videogen list`"
                + (", or repeat with the same --idempotency-key" if idempotency_key else ""),
            ) from exc
        return self._json(response)

    def get(self, job_id: str) -> dict[str, Any]:
        """``GET /videos/{id}``."""
        return self._read(f"/videos/{quote(job_id, safe='')}")

    def list(self, *, status: str | None = None, limit: int | None = None, next_token: str | None = None) -> dict[str, Any]:
        """``GET /videos``: one page, newest first."""
        params = {k: v for k, v in {"status": status, "limit": limit, "next_token": next_token}.items() if v is not None}
        return self._read("/videos", params)

    def models(self) -> dict[str, Any]:
        """``GET /models``: the deployment's model catalog."""
        return self._read("/models")

    # ---- plumbing ---------------------------------------------------------------------

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ApiError.from_response(response, signed=self.signed)
        try:
            body = response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, {"code": "bad_response", "message": "the API answered with non-JSON"}) from exc
        if not isinstance(body, dict):
            raise ApiError(response.status_code, {"code": "bad_response", "message": "the API answered with a non-object"})
        return body

    def _read(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = self.http.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt >= self.backoff.retries:
                    raise ApiError(0, {"code": "unreachable", "message": f"GET {self.base_url}{path} failed: {exc}"}) from exc
                self.backoff.sleep(self.backoff.delay(attempt))
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self.backoff.retries:
                    return self._json(response)
                self.backoff.sleep(self.backoff.delay(attempt, response.headers.get("retry-after")))
            attempt += 1

    def download(
        self,
        url: str,
        target: Path,
        *,
        expected_bytes: int | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> int:
        """Stream ``url`` into ``target`` (via a ``.part`` file, renamed when complete and checked).

        Returns the byte count. Raises :class:`DownloadError` and leaves nothing behind when the
        transfer fails, is short, or is not an MP4.
        """
        partial = target.with_name(f".{target.name}.part")
        written = 0
        try:
            with self.downloads.stream("GET", url) as response:
                if response.status_code != 200:
                    raise DownloadError(f"the video URL answered HTTP {response.status_code}")
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else expected_bytes
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(256 * 1024):
                        out.write(chunk)
                        written += len(chunk)
                        if on_progress:
                            on_progress(written, total)
            if expected_bytes is not None and written != expected_bytes:
                raise DownloadError(f"got {written} bytes, the job says {expected_bytes}")
            with partial.open("rb") as check:
                if check.read(12)[MP4_BRAND_OFFSET] != b"ftyp":
                    raise DownloadError("the downloaded file is not an MP4")
            partial.replace(target)
            return written
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"the download failed: {exc}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


class WaitTimeout(Exception):
    """The job was not terminal within the timeout; ``job`` is the last state seen."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        super().__init__(f"job {job.get('id')} still {job.get('status')} after {timeout:g} s")
        self.job = job


def wait_for(
    api: ApiClient,
    job_id: str,
    *,
    timeout: float | None,
    on_update: Callable[[dict[str, Any]], None],
    first: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    min_interval: float = 0.5,
    max_interval: float = 5.0,
) -> dict[str, Any]:
    """Poll ``GET /videos/{id}`` until the job is terminal; ``on_update`` sees every poll.

    The interval starts at ``min_interval`` and grows by half while nothing changes (up to
    ``max_interval``), so a quick job is seen quickly and a long one costs few requests.
    """
    deadline = None if timeout is None else clock() + timeout
    job = first or api.get(job_id)
    on_update(job)
    interval = min_interval
    seen = (job.get("status"), job.get("progress"))
    while job.get("status") not in TERMINAL:
        if deadline is not None and clock() >= deadline:
            raise WaitTimeout(job, timeout or 0)
        pause = interval if deadline is None else max(0.0, min(interval, deadline - clock()))
        sleep(pause)
        job = api.get(job_id)
        on_update(job)
        now_seen = (job.get("status"), job.get("progress"))
        interval = min_interval if now_seen != seen else min(max_interval, interval * 1.5)
        seen = now_seen
    return job
