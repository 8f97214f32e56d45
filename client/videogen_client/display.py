"""What a person sees: one-line errors, job summaries, tables and progress bars (Rich).

Bars, status lines and errors go to stderr; results (a job, a table, ``--json`` documents)
go to stdout, so ``videogen … --json | jq`` and ``videogen … > file`` stay clean.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from .api import ApiError

MIN_PROMPT_WIDTH = 12
STATUS_STYLE = {"queued": "yellow", "in_progress": "cyan", "succeeded": "green", "failed": "red"}


class Display:
    """The two streams and the ``--json`` switch."""

    def __init__(self, *, as_json: bool, out: Console | None = None, err: Console | None = None) -> None:
        self.as_json = as_json
        # No emoji codes or highlighting: prompts and paths are shown as they are.
        self.out = out or Console(highlight=False, soft_wrap=True, emoji=False)
        self.err = err or Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

    # ---- results ----------------------------------------------------------------------

    def document(self, value: Any) -> None:
        """One JSON document on stdout (``--json``)."""
        click.echo(json.dumps(value, indent=2))

    def note(self, text: str) -> None:
        """A line for the person (stderr), never in ``--json`` output."""
        self.err.print(text)

    def job(self, job: dict[str, Any]) -> None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for name, value in job_rows(job):
            table.add_row(name, value)
        self.out.print(table)

    def jobs(self, jobs: list[dict[str, Any]]) -> None:
        columns: dict[str, list[str]] = {
            "id": [str(job.get("id")) for job in jobs],
            "status": [str(job.get("status")) for job in jobs],
            "done": [f"{job.get('progress', 0)}%" for job in jobs],
            "route / model": [f"{job.get('route')} / {job.get('model')}" for job in jobs],
            "created": [str(job.get("created_at", ""))[:16].replace("T", " ") for job in jobs],
        }
        prompts = [str(job.get("prompt", "")) for job in jobs]

        # Every column at full width and the prompt gets the rest of the line; on a narrow
        # terminal the least useful columns go first, so ids are never cut.
        def width() -> int:
            return sum(max([len(name), *(len(v) for v in values)]) + 2 for name, values in columns.items())

        for optional in ("created", "route / model", "done"):
            if self.out.width - width() >= MIN_PROMPT_WIDTH:
                break
            del columns[optional]
        room = max(MIN_PROMPT_WIDTH, self.out.width - width())
        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in [*columns, "prompt"]:
            table.add_column(name, no_wrap=True)
        for row, prompt in enumerate(prompts):
            cells = [status_text(values[row]) if name == "status" else escape(values[row]) for name, values in columns.items()]
            table.add_row(*cells, escape(shorten(prompt, room)))
        self.out.print(table)

    def models(self, catalog: dict[str, Any]) -> None:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("route", "model", "seconds", "sizes / orientations", "image", "price"):
            table.add_column(column)
        default_route = catalog.get("default_route")
        for route, spec in catalog.get("routes", {}).items():
            for model, info in spec.get("models", {}).items():
                shapes = info.get("sizes") or info.get("orientations") or []
                default_shape = info.get("default_size") or info.get("default_orientation")
                table.add_row(
                    route + (" (default)" if route == default_route else ""),
                    model + (" *" if model == spec.get("default_model") else ""),
                    ", ".join(marked(s, info.get("default_seconds")) for s in info.get("seconds", [])),
                    ", ".join(marked(s, default_shape) for s in shapes),
                    ", ".join(info["image"]["formats"]) if info.get("image") else "no",
                    price_text(info.get("price") or {}),
                )
        self.out.print(table)
        self.err.print("[dim]* default model of its route; [bold]bold[/bold]: default value[/dim]")

    # ---- errors -----------------------------------------------------------------------

    def api_error(self, error: ApiError) -> None:
        if self.as_json:
            self.document(error.document())
        self.err.print(f"[red]Error:[/red] {escape(error_line(error))}")
        if error.hint:
            self.err.print(f"[dim]hint: {escape(error.hint)}[/dim]")

    def failure(self, text: str) -> None:
        self.err.print(f"[red]Error:[/red] {escape(text)}")

    # ---- progress ---------------------------------------------------------------------

    @contextmanager
    def job_progress(self, *job_ids: str) -> Iterator[JobProgress]:
        """Bars for these jobs (more can be added with :meth:`JobProgress.track`)."""
        progress = JobProgress(self)
        for job_id in job_ids:
            progress.track(job_id)
        try:
            yield progress
        finally:
            progress.close()

    @contextmanager
    def byte_progress(self, label: str) -> Iterator[ByteProgress]:
        progress = ByteProgress(self, label)
        try:
            yield progress
        finally:
            progress.close()


class JobProgress:
    """A live bar per job (progress, status, elapsed) on a terminal; a line per change otherwise."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self.started = time.monotonic()
        self.labels: dict[str, str] = {}
        self.tasks: dict[str, TaskID] = {}
        self.last: dict[str, tuple[Any, Any]] = {}
        self.bar: Progress | None = None
        if not display.as_json and display.err.is_terminal:
            self.bar = Progress(
                SpinnerColumn(finished_text="•"),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=display.err,
            )
            self.bar.start()

    def track(self, job_id: str, label: str | None = None) -> None:
        self.labels[job_id] = label or f"job {job_id[:12]}"
        if self.bar is not None:
            self.tasks[job_id] = self.bar.add_task(self.labels[job_id], total=100, status=status_text("queued"))

    def update(self, job: dict[str, Any]) -> None:
        job_id = str(job.get("id"))
        if job_id not in self.labels:
            self.track(job_id)
        status, progress = job.get("status"), int(job.get("progress") or 0)
        if self.bar is not None:
            self.bar.update(self.tasks[job_id], completed=progress, status=status_text(str(status)))
        elif not self.display.as_json and (status, progress) != self.last.get(job_id):
            elapsed = time.monotonic() - self.started
            self.display.err.print(f"  {elapsed:6.1f}s  {self.labels[job_id]}  {status:<11} {progress:3d}%", markup=False)
        self.last[job_id] = (status, progress)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class ByteProgress:
    """A byte bar (size, speed, time left) for a download."""

    def __init__(self, display: Display, label: str) -> None:
        self.bar: Progress | None = None
        if not display.as_json and display.err.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=display.err,
            )
            self.task = self.bar.add_task(label, total=None)
            self.bar.start()

    def update(self, done: int, total: int | None) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def error_line(error: ApiError) -> str:
    """One line: the API's message, then the field and the allowed values, then status and code."""
    parts = [error.message]
    details = []
    if error.field:
        details.append(f"field: {error.field}")
    if error.allowed is not None:
        details.append("allowed: " + ", ".join(str(v) for v in error.allowed))
    if error.job_id and error.job_id not in error.message:
        details.append(f"job: {error.job_id}")
    if details:
        parts.append(f"({'; '.join(details)})")
    parts.append(f"[HTTP {error.status} {error.code}]" if error.status else f"[{error.code}]")
    return " ".join(parts)


def job_rows(job: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("id", str(job.get("id"))),
        ("status", status_text(str(job.get("status")))),
        ("progress", f"{job.get('progress', 0)}%"),
        ("route / model", f"{job.get('route')} / {job.get('model')}"),
    ]
    shape = ", ".join(str(v) for v in (job.get("size"), job.get("orientation")) if v)
    rows.append(("video", f"{job.get('seconds')} s" + (f", {shape}" if shape else "")))
    rows.append(("prompt", escape(shorten(str(job.get("prompt", "")), 200))))
    rows.append(("created", str(job.get("created_at"))))
    if job.get("completed_at"):
        rows.append(("completed", str(job.get("completed_at"))))
    error = job.get("error")
    if error:
        rows.append(("error", f"[red]{escape(str(error.get('code')))}[/red]: {escape(str(error.get('message')))}"))
    video = job.get("video")
    if video:
        rows.append(("stored", f"s3://{video.get('bucket')}/{video.get('key')} ({video.get('bytes')} bytes)"))
    cost = job.get("cost")
    if cost:
        rows.append(("cost", f"{cost.get('amount')} {cost.get('currency')} (estimate)"))
    if job.get("metadata"):
        rows.append(("metadata", escape(json.dumps(job["metadata"]))))
    return rows


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else escape(status)


def marked(value: Any, default: Any) -> str:
    return f"[bold]{value}[/bold]" if value == default else str(value)


def price_text(price: dict[str, Any]) -> str:
    if price.get("per_call") is not None:
        return f"${price['per_call']} / call"
    per_second = price.get("per_second")
    if isinstance(per_second, dict):
        rates = sorted(set(per_second.values()))
        return " / ".join(f"${r}" for r in rates) + " / s"
    if per_second is not None:
        return f"${per_second} / s"
    return "not set"


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
