"""Terminal rendering for the lifecycle commands: live per-VM progress and result tables (rich).

Only the CLI uses this module. On a terminal the progress is one live-updating line per VM; elsewhere (CI logs,
pipes) each update is printed as a plain ``subject: message`` line, so logs read well.
"""
from __future__ import annotations

import time
from typing import Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


class LiveProgress:
    """A ``progress(subject, message)`` callback that shows the latest message per subject (VM)."""

    def __init__(self, title: str):
        self.title = title
        self.console = console(stderr=True)
        self.rows: dict[str, tuple[str, float]] = {}
        self.started = time.monotonic()
        self._live: Live | None = None

    def __call__(self, subject: str, message: str) -> None:
        self.rows[subject] = (message, time.monotonic())
        if self._live is not None:
            self._live.update(self._table())
        else:
            self.console.print(f"{subject}: {message}", markup=False)

    def _table(self) -> Table:
        table = Table(title=f"{self.title} ({time.monotonic() - self.started:.0f}s)", title_justify="left",
                      show_header=False, box=None)
        table.add_column("subject", style="bold")
        table.add_column("message", overflow="ellipsis", no_wrap=True)
        for subject, (message, _at) in self.rows.items():
            table.add_row(subject, message)
        return table

    def __enter__(self) -> "LiveProgress":
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)
            self._live = None


def host_summary_table(hosts: Iterable, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("host", "ok", "changed", "failed", "unreachable", "skipped", "duration"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for h in hosts:
        style = "red" if not h.succeeded else None
        table.add_row(h.host, str(h.ok), str(h.changed), str(h.failed), str(h.unreachable), str(h.skipped),
                      f"{h.duration:.0f}s", style=style)
    return table


def status_table(machines: Iterable, refreshed: bool) -> Table:
    source = "states from vagrant" if refreshed else "states as last seen (--refresh asks vagrant)"
    table = Table(title=source, title_justify="left")
    for column in ("VM", "state", "ssh", "address", "last provisioned", "revision"):
        table.add_column(column)
    for m in machines:
        ssh = "-" if m.ssh is None else ("answers" if m.ssh else "no answer")
        table.add_row(m.name, m.state, ssh, m.address or "-", m.last_provisioned or "never", m.revision or "-")
    return table


def doctor_table(checks: Iterable) -> Table:
    table = Table(title="devbox doctor", title_justify="left")
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for c in checks:
        table.add_row(c.name, marks.get(c.status, c.status), Text(c.detail), Text(c.hint or ""))
    return table
