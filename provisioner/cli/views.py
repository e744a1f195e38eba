"""Terminal rendering for the commands: live per-VM progress and result tables (rich).

Only the CLI uses this module: it builds tables, the commands print them with ``context.console``. On a terminal
the progress is one live-updating line per VM; elsewhere (CI logs, pipes) each update is printed as a plain
``subject: message`` line, so logs read well.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

from provisioner.cli.context import console


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
        from rich.table import Table
        table = Table(title=f"{self.title} ({time.monotonic() - self.started:.0f}s)", title_justify="left",
                      show_header=False, box=None)
        table.add_column("subject", style="bold")
        table.add_column("message", overflow="ellipsis", no_wrap=True)
        for subject, (message, _at) in self.rows.items():
            table.add_row(subject, message)
        return table

    def __enter__(self) -> "LiveProgress":
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)
            self._live = None


def host_summary_table(hosts: Iterable, title: str) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("host", "ok", "changed", "failed", "unreachable", "skipped", "duration"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for h in hosts:
        style = "red" if not h.succeeded else None
        table.add_row(h.host, str(h.ok), str(h.changed), str(h.failed), str(h.unreachable), str(h.skipped),
                      f"{h.duration:.0f}s", style=style)
    return table


def status_table(machines: Iterable, refreshed: bool) -> Table:
    from rich.table import Table

    source = "states from vagrant" if refreshed else "states as last seen (--refresh asks vagrant)"
    table = Table(title=source, title_justify="left")
    for column in ("VM", "state", "ssh", "address", "name (devbox hosts)", "last provisioned", "revision"):
        table.add_column(column)
    for m in machines:
        ssh = "-" if m.ssh is None else ("answers" if m.ssh else "no answer")
        name = f"{m.fqdn} ({m.private_address})" if m.fqdn else "-"
        table.add_row(m.name, m.state.replace("_", " "), ssh, m.address or "-", name, m.last_provisioned or "never",
                      m.revision or "-")
    return table


def url_lines(machines: Iterable) -> list[str]:
    """The smoke checks' URLs per VM, by name (`devbox hosts --write` makes the names resolve)."""
    return [f"{m.name}: {u.url}  (smoke check: {u.check})" for m in machines for u in m.urls]


def doctor_table(checks: Iterable) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="devbox doctor", title_justify="left")
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for c in checks:
        table.add_row(c.name, marks.get(c.status, c.status), Text(c.detail), Text(c.hint or ""))
    return table


def topology_table(topology, source: str) -> Table:
    """The VMs of a plan (`devbox plan`, `devbox init`)."""
    from rich.table import Table

    table = Table(title=f"{len(topology.machines)} development VMs {source}", title_justify="left")
    spread = bool(topology.hypervisors)
    columns = ("VM", "hypervisor", "address", "memory", "cpus", "groups", "stands for") if spread else \
        ("VM", "address", "memory", "cpus", "groups", "stands for")
    for column in columns:
        table.add_column(column, overflow="fold")
    for m in topology.machines:
        shown = ", ".join(m.represents[:4]) + (f" (+{len(m.represents) - 4} more)" if len(m.represents) > 4 else "")
        where = (m.hypervisor or "-",) if spread else ()
        table.add_row(m.name, *where, m.address, f"{m.memory} MiB", str(m.cpus), ", ".join(m.groups), shown)
    return table


def hypervisor_table(topology) -> Table:
    """Where the plan puts the VMs (`hypervisors:` in devbox.yml): each hypervisor's subnet and memory in use."""
    from rich.table import Table

    table = Table(title=f"{len(topology.hypervisors)} hypervisors", title_justify="left")
    for column in ("hypervisor", "uri", "subnet", "memory used", "CPUs", "VMs"):
        table.add_column(column, overflow="fold")
    for h in topology.hypervisors:
        table.add_row(h.name, h.uri, h.subnet, f"{h.used_memory} of {h.memory} MiB", str(h.cpus),
                      ", ".join(h.machines) or "-")
    return table


def env_hosts_table(plan) -> Table:
    """The hosts of a named environment a run will apply to (`provision --env`)."""
    from rich.table import Table

    table = Table(title=f"{len(plan.hosts)} hosts of {plan.environment.name} to apply to "
                        f"({plan.environment.inventory})", title_justify="left")
    for col in ("host", "address", "port"):
        table.add_column(col)
    for h in plan.hosts:
        table.add_row(h.name, h.address, str(h.port))
    return table


def env_revisions_table(env_name: str | None, revisions: Iterable) -> Table:
    """What devbox last applied to each host of an environment (`status --env`)."""
    from rich.table import Table

    table = Table(title=f"what each host of {env_name or 'dev'} runs (recorded by devbox)", title_justify="left")
    for col in ("host", "revision", "applied at (UTC)", "by", "partial"):
        table.add_column(col, overflow="fold")
    for r in revisions:
        s = r.stamp or {}
        table.add_row(r.host, r.revision, str(s.get("applied_at", "")), str(s.get("applied_by", "")),
                      ("yes: " + ", ".join(f"{k} {s[k]}" for k in ("limit", "tags") if s.get(k))) if s.get("partial")
                      else ("no" if s else ""))
    return table


def host_keys_table(environment, checks: Iterable) -> Table:
    """The SSH host keys offered by an environment's hosts, and whether they are pinned (`devbox trust`)."""
    from rich.table import Table

    table = Table(title=f"host keys of {environment.name} ({environment.known_hosts})", title_justify="left")
    for col in ("host", "known_hosts name", "status", "key", "SHA256 fingerprint"):
        table.add_column(col, overflow="fold")
    for c in checks:
        first = True
        for k in c.offered or ():
            table.add_row(c.host.name if first else "", c.entry if first else "", c.status if first else "",
                          k.key_type, k.fingerprint)
            first = False
        if first:
            table.add_row(c.host.name, c.entry, c.status, "", c.detail)
    return table
