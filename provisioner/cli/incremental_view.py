"""Terminal rendering of an incremental plan: per VM, what runs and why (rich). Only the CLI uses this."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from provisioner.incremental.subset import IncrementalPlan, VmPlan

MAX_LINES = 6  # per VM; the rest is summarised, `devbox provision --dry-run` shows the same table


def _why(vm: VmPlan) -> list[str]:
    if vm.nothing:
        return ["unchanged since its last successful run"]
    if vm.everything:
        return vm.reasons()
    lines = []
    for choice in vm.units:
        if choice.dirty:
            lines.extend(f"{choice.label}: {r}" for r in choice.reasons)
        else:
            lines.append(f"{choice.label}: {'; '.join(choice.reasons)}")
    return lines


def _runs(vm: VmPlan) -> str:
    if vm.nothing:
        return "nothing"
    if vm.everything:
        return "everything"
    roles = [c.label.split(" (play ")[0] for c in vm.units]
    return "\n".join(dict.fromkeys(r for r in roles))


def plan_table(plan: IncrementalPlan, title: str) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("VM", "runs", "why"):
        table.add_column(column)
    for vm in plan.vms:
        if plan.scope and vm.vm not in plan.scope:
            continue
        why = _why(vm)
        if len(why) > MAX_LINES:
            why = why[:MAX_LINES] + [f"... and {len(why) - MAX_LINES} more"]
        table.add_row(vm.vm, _runs(vm), "\n".join(why), style=None if vm.nothing else "bold")
    return table


def plan_title(plan: IncrementalPlan, *, ran: bool, dry_run: bool) -> str:
    if plan.nothing_to_do:
        return "nothing changed since the last successful run: no VM contacted (--full runs everything)"
    if dry_run:
        return "what `devbox provision` would run (dry run: nothing ran)"
    return "what ran, and why" if ran else "pending changes (`devbox provision` runs them)"
