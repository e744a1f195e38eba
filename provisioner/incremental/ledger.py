"""The provision ledger: per VM, the inputs digests of each unit last applied successfully.

It lives in ``.devbox/state.json`` under the ``"ledger"`` key (``state.py`` carries keys it does not own through
unchanged): ``{"vms": {vm: {"units": {unit key: {input name: sha256}}}}}``. Only digests, never values.

What counts as applied is derived from ansible-runner's events (``roles_completed``, pure): a unit is recorded
for a host only when the play it belongs to finished for that host (see ``completed_units``), or, for a unit
that notifies no handler, when the host went on past it to a later unit without failing. A failed or interrupted
run therefore records nothing for the units that did not finish, nor for units whose handlers may still have been
pending (a host that fails never runs its pending handlers, and a later full run would not notify them again).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from provisioner.incremental.changes import ProjectDigests
from provisioner.incremental.subset import SubsetPlaybook

LEDGER_KEY = "ledger"
_RESULTS = ("runner_on_ok", "runner_on_skipped", "runner_on_failed", "runner_on_unreachable")


def ledger_of(state_other: Mapping) -> dict[str, dict[str, dict[str, str]]]:
    """The ledger (vm -> unit -> inputs) from the state file's extra keys; anything malformed counts as empty."""
    raw = state_other.get(LEDGER_KEY) or {}
    vms = raw.get("vms") if isinstance(raw, Mapping) else None
    if not isinstance(vms, Mapping):
        return {}
    out: dict[str, dict[str, dict[str, str]]] = {}
    for vm, entry in vms.items():
        units = entry.get("units") if isinstance(entry, Mapping) else None
        if isinstance(units, Mapping):
            out[vm] = {k: dict(v) for k, v in units.items() if isinstance(v, Mapping)}
    return out


def ledger_json(ledger: Mapping[str, Mapping[str, Mapping[str, str]]]) -> dict:
    return {"vms": {vm: {"units": {k: dict(sorted(v.items())) for k, v in sorted(units.items())}}
                    for vm, units in sorted(ledger.items())}}


def forget(ledger: Mapping, vms: Iterable[str]) -> dict:
    """A VM destroyed or created again has nothing applied any more."""
    gone = set(vms)
    return {vm: units for vm, units in ledger.items() if vm not in gone}


class EventLog:
    """An ``on_event`` callback keeping only what ``roles_completed`` reads (results carry whole facts)."""

    KINDS = frozenset({"playbook_on_play_start", "playbook_on_stats", "playbook_on_handler_task_start",
                       "playbook_on_task_start", *_RESULTS})

    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event: Mapping) -> None:
        kind = event.get("event")
        if kind in self.KINDS:
            data = event.get("event_data") or {}
            self.events.append({"event": kind, "event_data": {k: data.get(k) for k in
                                                              ("host", "role", "ignore_errors")}})


@dataclass
class PlayProgress:
    """One play of a run, as one host lived it."""

    steps: list[tuple[str | None, bool]] = field(default_factory=list)  # (role or None for play tasks, failed)
    ended: bool = False          # the run went past this play (next play started, or the final stats came)
    in_handlers: bool = False    # between a handler task start and the next normal task start
    handler_failed: bool = False
    any_failed: bool = False     # some host failed in this play (any_errors_fatal may have cut it short)

    @property
    def failed(self) -> bool:
        return self.handler_failed or any(f for _, f in self.steps)


def roles_completed(events: Iterable[Mapping], host: str) -> list[PlayProgress]:
    """Per play started in the run (in order): the roles ``host`` ran tasks of, whether each failed, and whether
    the play ended. Results with ``ignore_errors`` do not count as failures; unreachable does."""
    plays: list[PlayProgress] = []
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            if plays:
                plays[-1].ended = True
            plays.append(PlayProgress())
        elif kind == "playbook_on_stats":
            if plays:
                plays[-1].ended = True
        elif kind == "playbook_on_handler_task_start" and plays:
            plays[-1].in_handlers = True
        elif kind == "playbook_on_task_start" and plays:
            plays[-1].in_handlers = False  # handlers flush between sections; normal tasks follow
        elif kind in _RESULTS and plays:
            failed = kind == "runner_on_unreachable" or (kind == "runner_on_failed" and not data.get("ignore_errors"))
            plays[-1].any_failed |= failed
            if data.get("host") != host:
                continue
            if plays[-1].in_handlers:
                plays[-1].handler_failed |= failed
            else:
                plays[-1].steps.append((data.get("role") or None, failed))
    return plays


def completed_units(events: list[Mapping], host: str, subset: SubsetPlaybook,
                    digests: ProjectDigests) -> set[str]:
    """Unit keys of ``subset`` that finished on ``host``.

    A generated play finished for the host when it ended with no failure of any host in it (so nothing like
    ``any_errors_fatal`` can have cut it short), or when the host went on to run tasks of a later play (Ansible
    flushes a play's handlers before the next play). Otherwise only the units the host went past count, minus
    those notifying handlers (still pending), and nothing after that point in the run.
    """
    by_key = {u.key: u for u in digests.units}
    progress = roles_completed(events, host)
    done: set[str] = set()
    for index, (generated, lived) in enumerate(zip(subset.plays, progress)):
        if host not in generated.vms or generated.play is None:
            continue
        moved_on = any(later.steps for later in progress[index + 1:])
        clean = lived.ended and not lived.any_failed and not lived.handler_failed
        if not lived.failed and not lived.handler_failed and (clean or (lived.steps and moved_on)):
            done.update(generated.units)
            continue
        if lived.handler_failed:
            break
        # Walk the host's results: each role result moves to the first unit at or after the current one whose
        # closure contains that role; units strictly before the unit a failure (or the interruption) hit finished.
        units = [by_key[k] for k in generated.units if k in by_key and by_key[k].role is not None]
        current = 0
        for role, failed in lived.steps:
            if role is not None:
                for i in range(current, len(units)):
                    if role in units[i].role_names:
                        current = i
                        break
            if failed:
                break
        for unit in units[:current]:
            if not unit.notifies:
                done.add(unit.key)
        break
    return done


def record_run(ledger: Mapping[str, Mapping[str, Mapping[str, str]]], digests: ProjectDigests,
               completed: Mapping[str, set[str]]) -> dict[str, dict[str, dict[str, str]]]:
    """The ledger after a run: each VM's finished units get their current inputs; units no longer in the
    playbook are dropped (if one comes back it was not applied with whatever ran in between)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for vm in digests.vms:
        keys = {u.key for u in digests.units_for(vm)}
        units = {k: dict(v) for k, v in (ledger.get(vm) or {}).items() if k in keys}
        for unit in digests.units_for(vm):
            if unit.key in completed.get(vm, set()):
                units[unit.key] = digests.inputs_for(vm, unit)
        out[vm] = units
    for vm, units in ledger.items():
        out.setdefault(vm, {k: dict(v) for k, v in units.items()})  # VMs not in this inventory: kept as they were
    return out
