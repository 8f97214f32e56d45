"""``videogen``: create video jobs, follow their progress, download the MP4s.

Exit codes: 0 the job succeeded (or the request was answered), 1 the job failed (its error
code is printed), 2 a usage or API error, 3 timed out waiting, 130 interrupted (Ctrl-C; the
job keeps running, and the command to resume is printed).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import Session
from rich.markup import escape

from . import __version__
from .api import ApiClient, ApiError, DownloadError, WaitTimeout, wait_for
from .display import Display
from .signing import SigningError, SigV4

OK, JOB_FAILED, ERROR, TIMED_OUT, INTERRUPTED = 0, 1, 2, 3, 130
API_ENV = "VIDEOGEN_API_URL"
# The API takes at most 4 MB of decoded image in a request (Lambda caps a request at 6 MB).
MAX_IMAGE_UPLOAD_BYTES = 4 * 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])


class Exit(Exception):
    """Leave the command with ``code`` (after the message was shown)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Target:
    """Where the API is and how to talk to it, from ``--api``/``--stack``/``--no-sign``/``--json``."""

    api: str | None
    stack: str | None
    no_sign: bool
    as_json: bool
    api_from_flag: bool
    display: Display = field(init=False)

    def __post_init__(self) -> None:
        self.display = Display(as_json=self.as_json)

    def url(self) -> str:
        if self.api and self.stack:
            raise click.UsageError("give --api or --stack, not both")
        if self.stack:
            return stack_api_url(self.stack)
        if not self.api:
            raise click.UsageError(f"no API given: pass --api URL, set {API_ENV}, or pass --stack NAME")
        if not self.api.startswith(("https://", "http://")):
            raise click.UsageError(f"--api must be an http(s) URL, not {self.api!r}")
        return self.api

    def client(self) -> ApiClient:
        url = self.url()
        try:
            auth = None if self.no_sign else SigV4.from_environment(url)
        except SigningError as exc:
            raise click.UsageError(str(exc)) from exc
        return ApiClient(url, auth=auth)

    def resume_args(self) -> list[str]:
        """The connection flags to repeat in a printed follow-up command."""
        args: list[str] = []
        if self.stack:
            args += ["--stack", self.stack]
        elif self.api_from_flag and self.api:
            args += ["--api", self.api]
        if self.no_sign:
            args.append("--no-sign")
        return args


def stack_api_url(stack: str) -> str:
    """The ``ApiUrl`` output of a deployed CloudFormation stack (normal AWS credentials and region)."""
    try:
        cloudformation = Session().create_client("cloudformation")
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise click.UsageError(f"cannot read stack {stack!r}: {exc}") from exc
    for output in stacks[0].get("Outputs", []) if stacks else []:
        if output.get("OutputKey") == "ApiUrl":
            return str(output["OutputValue"])
    raise click.UsageError(f"stack {stack!r} has no ApiUrl output (is it a videogen stack?)")


def checked_out(_ctx: click.Context, _param: click.Parameter, out: Path | None) -> Path | None:
    """An ``--out`` file whose folder exists: found out now, not after a long wait."""
    if out is not None and not out.expanduser().resolve().parent.is_dir():
        raise click.BadParameter(f"folder {out.parent} does not exist")
    return out


def api_options(command: F) -> F:
    """``--api``, ``--stack``, ``--no-sign`` and ``--json``, accepted after every command's name."""

    @click.option("--json", "as_json", is_flag=True, help="For scripts: no bars, one JSON document on stdout.")
    @click.option("--no-sign", is_flag=True, help="Do not SigV4-sign requests (ClientAuth=NONE, the local stack).")
    @click.option("--stack", metavar="NAME", help="Read the API URL from this CloudFormation stack's ApiUrl output.")
    @click.option("--api", metavar="URL", help=f"Base URL of the HTTP API [env: {API_ENV}].")
    @functools.wraps(command)
    def wrapper(api: str | None, stack: str | None, no_sign: bool, as_json: bool, **kwargs: Any) -> None:
        env_api = os.environ.get(API_ENV) or None
        target = Target(
            api=api or (None if stack else env_api), stack=stack, no_sign=no_sign, as_json=as_json, api_from_flag=api is not None
        )
        try:
            command(target, **kwargs)
        except ApiError as exc:
            target.display.api_error(exc)
            raise SystemExit(ERROR) from exc
        except Exit as exc:
            raise SystemExit(exc.code) from exc
        except BotoCoreError as exc:  # credentials that fail when used (an expired SSO token, …)
            target.display.failure(f"AWS credentials: {exc}")
            raise SystemExit(ERROR) from exc
        except KeyboardInterrupt:  # outside a wait or a download (those say how to resume)
            target.display.failure("interrupted")
            raise SystemExit(INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="videogen")
def cli() -> None:
    """Create videos with a videogen deployment and follow them to the MP4.

    \b
    videogen create "A paper boat on a rainy street" --wait --out boat.mp4 --api URL
    videogen list --api URL
    """


# ---- create ---------------------------------------------------------------------------


@cli.command()
@click.argument("prompt")
@click.option("--route", help="Provider route: task, official or legacy (default: the deployment's).")
@click.option("--model", help="A model of that route (see `videogen models`).")
@click.option("--seconds", type=click.IntRange(min=1), help="Video length the model allows.")
@click.option("--size", metavar="WxH", help="e.g. 1280x720 (models with sizes); or --orientation.")
@click.option("--orientation", help="portrait or landscape; or --size.")
@click.option("--image", metavar="FILE_OR_URL", help="Image-to-video: a local JPEG/PNG/WebP file, or an https URL.")
@click.option("--metadata", metavar="JSON", help='A small JSON object kept with the job, e.g. \'{"campaign": "autumn"}\'.')
@click.option("--idempotency-key", metavar="K", help="Repeating a request with the same key returns the first job.")
@click.option("--webhook-url", metavar="URL", help="Where the deployment sends the job's webhooks.")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it is finished.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), callback=checked_out, help="With --wait: download the MP4 here."
)
@click.option("--timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True, help="With --wait: seconds.")
@api_options
def create(target: Target, prompt: str, out: Path | None, wait: bool, timeout: float, **options: Any) -> None:
    """Submit a job for PROMPT (POST /videos, sent once)."""
    if out is not None and not wait:
        raise click.UsageError("--out needs --wait (or download later: videogen download ID --out FILE)")
    body, idempotency_key = create_body(prompt, **options)
    display = target.display
    with target.client() as api:
        try:
            job = api.create(body, idempotency_key=idempotency_key)
        except ApiError as exc:
            display.api_error(exc)
            # A provider that refused the job, or stayed unavailable, failed a recorded job.
            raise Exit(JOB_FAILED if exc.job_id and exc.status in (422, 502) else ERROR) from exc
        if not wait:
            if display.as_json:
                display.document(job)
            else:
                display.job(job)
                display.note(f"[dim]follow it: {escape(resume_command(target, job['id'], None))}[/dim]")
            return
        try:
            display.note(escape(f"job {job['id']} accepted ({job.get('route')} / {job.get('model')})"))
            follow(target, api, job["id"], timeout=timeout, out=out, first=job)
        except KeyboardInterrupt:  # between the answer and the wait: the job exists, say how to follow it
            stopped_waiting(target, job, out)


def create_body(
    prompt: str,
    *,
    route: str | None,
    model: str | None,
    seconds: int | None,
    size: str | None,
    orientation: str | None,
    image: str | None,
    metadata: str | None,
    idempotency_key: str | None,
    webhook_url: str | None,
) -> tuple[dict[str, Any], str | None]:
    """The ``POST /videos`` body from the command's options (usage errors for what is wrong locally)."""
    if size and orientation:
        raise click.UsageError("give --size or --orientation, not both")
    body: dict[str, Any] = {"prompt": prompt}
    for name, value in (("route", route), ("model", model), ("seconds", seconds), ("size", size), ("orientation", orientation)):
        if value is not None:
            body[name] = value
    if image is not None:
        body.update(image_field(image))
    if metadata is not None:
        try:
            parsed = json.loads(metadata)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from exc
        if not isinstance(parsed, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--metadata")
        body["metadata"] = parsed
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    return body, idempotency_key


def image_field(image: str) -> dict[str, str]:
    """A URL goes as ``image_url`` (the API takes https only); a local file as ``image_base64``."""
    if "://" in image:
        return {"image_url": image}
    path = Path(image).expanduser()
    if not path.is_file():
        raise click.BadParameter(f"no such file: {image} (a URL must start with https://)", param_hint="--image")
    size = path.stat().st_size
    if size > MAX_IMAGE_UPLOAD_BYTES:
        raise click.BadParameter(
            f"{image} is {size} bytes; the API takes at most {MAX_IMAGE_UPLOAD_BYTES} bytes uploaded "
            "(give an https URL for a larger image)",
            param_hint="--image",
        )
    return {"image_base64": base64.b64encode(path.read_bytes()).decode("ascii")}


# ---- get / list / models --------------------------------------------------------------


@cli.command()
@click.argument("job_id", metavar="ID")
@api_options
def get(target: Target, job_id: str) -> None:
    """Show a job (GET /videos/ID)."""
    with target.client() as api:
        job = api.get(job_id)
    if target.display.as_json:
        target.display.document(job)
    else:
        target.display.job(job)


@cli.command("list")
@click.option("--status", help="Only jobs in this status: queued, in_progress, succeeded or failed.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Jobs per page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow next_token through every page.")
@api_options
def list_jobs(target: Target, status: str | None, limit: int, all_pages: bool) -> None:
    """List jobs, newest first (GET /videos)."""
    jobs: list[dict[str, Any]] = []
    with target.client() as api:
        page = api.list(status=status, limit=limit)
        jobs += page.get("jobs", [])
        while all_pages and page.get("next_token"):
            page = api.list(status=status, limit=limit, next_token=page["next_token"])
            jobs += page.get("jobs", [])
    next_token = None if all_pages else page.get("next_token")
    display = target.display
    if display.as_json:
        display.document({"jobs": jobs, "next_token": next_token})
        return
    display.jobs(jobs)
    if next_token:
        display.note("[dim]more jobs: add --all[/dim]")


@cli.command()
@api_options
def models(target: Target) -> None:
    """The deployment's models: durations, sizes or orientations, images, prices (GET /models)."""
    with target.client() as api:
        try:
            catalog = api.models()
        except ApiError as exc:
            if exc.status == 404:
                exc.hint = "this deployment predates GET /models: a 400 from `videogen create` lists the allowed values"
            raise
    if target.display.as_json:
        target.display.document(catalog)
    else:
        target.display.models(catalog)


# ---- wait / download ------------------------------------------------------------------


@cli.command("wait")
@click.argument("job_id", metavar="ID")
@click.option("--timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), callback=checked_out, help="Download the MP4 here when it succeeds."
)
@api_options
def wait_command(target: Target, job_id: str, timeout: float, out: Path | None) -> None:
    """Follow a job with a progress bar until it is finished."""
    with target.client() as api:
        follow(target, api, job_id, timeout=timeout, out=out)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), callback=checked_out, help="Target file [default: ID.mp4]."
)
@api_options
def download(target: Target, job_id: str, out: Path | None) -> None:
    """Download a finished job's MP4 (through its presigned URL), with a byte progress bar."""
    display = target.display
    with target.client() as api:
        job = api.get(job_id)
        if job.get("status") == "failed":
            job_failed(display, job)
        if job.get("status") != "succeeded" or not job.get("video"):
            display.failure(f"job {job_id} is {job.get('status')}, not finished yet")
            display.note(f"[dim]wait for it: {escape(resume_command(target, job_id, out or Path(f'{job_id}.mp4')))}[/dim]")
            if display.as_json:
                display.document(job)
            raise Exit(ERROR)
        saved = save_video(target, api, job, out or Path(f"{job_id}.mp4"))
    finish(display, job, saved)


# ---- shared steps ---------------------------------------------------------------------


def follow(
    target: Target, api: ApiClient, job_id: str, *, timeout: float, out: Path | None, first: dict[str, Any] | None = None
) -> None:
    """Wait with a progress bar; then download (``out``) and exit with the job's outcome."""
    display = target.display
    last: dict[str, Any] = first or {"id": job_id}
    try:
        with display.job_progress(job_id) as bar:

            def update(job: dict[str, Any]) -> None:
                nonlocal last
                last = job
                bar.update(job)

            job = wait_for(api, job_id, timeout=timeout, on_update=update, first=first)
    except KeyboardInterrupt:
        stopped_waiting(target, last, out)
    except WaitTimeout as exc:
        if display.as_json:
            display.document(exc.job)
        display.failure(f"{exc}; the job keeps running")
        display.note(escape(f"resume with: {resume_command(target, job_id, out)}"))
        raise Exit(TIMED_OUT) from None
    if job.get("status") == "failed":
        job_failed(display, job)
    saved = save_video(target, api, job, out) if out is not None else None
    finish(display, job, saved)


def stopped_waiting(target: Target, job: dict[str, Any], out: Path | None) -> NoReturn:
    """Ctrl-C while waiting: the job is the server's, it keeps running; print how to resume."""
    job_id = str(job.get("id"))
    target.display.note(
        escape(
            f"\nStopped waiting. Job {job_id} keeps running ({job.get('status', 'unknown')}, {job.get('progress', 0)}%).\n"
            f"Resume with: {resume_command(target, job_id, out)}"
        )
    )
    raise Exit(INTERRUPTED)


def save_video(target: Target, api: ApiClient, job: dict[str, Any], out: Path) -> dict[str, Any]:
    """Download the job's video to ``out``; a failed attempt is retried with a fresh presigned URL."""
    display = target.display
    backoff = api.backoff
    for attempt in range(backoff.retries + 1):
        video = job.get("video") or {}
        try:
            with display.byte_progress(f"{out.name}") as bar:
                written = api.download(str(video.get("url")), out, expected_bytes=video.get("bytes"), on_progress=bar.update)
            return {"path": str(out), "bytes": written}
        except KeyboardInterrupt:
            display.note(
                escape(
                    f"\nDownload stopped (nothing was kept at {out}). The video stays stored; "
                    f"get it with: {download_command(target, str(job.get('id')), out)}"
                )
            )
            raise Exit(INTERRUPTED) from None
        except OSError as exc:  # the target cannot be written (permissions, disk full)
            display.failure(f"cannot write {out}: {exc}")
            raise Exit(ERROR) from exc
        except DownloadError as exc:
            if attempt >= backoff.retries:
                display.failure(f"could not download job {job.get('id')}'s video: {exc}")
                raise Exit(ERROR) from exc
            backoff.sleep(backoff.delay(attempt))
            job = api.get(str(job["id"]))  # a fresh presigned URL
    raise AssertionError("unreachable")


def finish(display: Display, job: dict[str, Any], saved: dict[str, Any] | None) -> None:
    if display.as_json:
        display.document({**job, "download": saved} if saved else job)
        return
    video = job.get("video") or {}
    line = f"[green]succeeded[/green]: job {escape(str(job.get('id')))}"
    if video:
        line += escape(f", {video.get('bytes')} bytes stored at s3://{video.get('bucket')}/{video.get('key')}")
    display.out.print(line)
    if saved:
        display.out.print(escape(f"saved {saved['path']} ({saved['bytes']} bytes)"))


def job_failed(display: Display, job: dict[str, Any]) -> NoReturn:
    error = job.get("error") or {}
    if display.as_json:
        display.document(job)
    display.err.print(
        "[red]failed[/red]: " + escape(f"job {job.get('id')}: {error.get('code', 'unknown')}: {error.get('message', '')}")
    )
    raise Exit(JOB_FAILED)


def resume_command(target: Target, job_id: str, out: Path | None) -> str:
    args = ["videogen", "wait", job_id, *(["--out", str(out)] if out is not None else []), *target.resume_args()]
    return shlex.join(args)


def download_command(target: Target, job_id: str, out: Path) -> str:
    return shlex.join(["videogen", "download", job_id, "--out", str(out), *target.resume_args()])


def main() -> None:
    try:
        cli(prog_name="videogen")
    except httpx.HTTPError as exc:  # anything the client did not turn into an ApiError already
        Display(as_json=False).failure(str(exc))
        raise SystemExit(ERROR) from exc
