"""Which units of the run each VM needs again, and a subset playbook that runs exactly those (pure core).

``plan_incremental(ledger, digests)`` compares what the ledger says was applied to each VM (per unit: the inputs
digests of ``provisioner/incremental/changes.py``) with what a run would apply now, and selects units per VM. A unit whose
inputs differ, or that was never applied, is *dirty*. Then, until nothing more is added:

1. A dirty unit's exports may now have other values, so every later unit on the VM that reads one of them is
   dirty too (``set_fact``/``register``/``include_vars`` names read by later units; role defaults/vars read by any
   role of the same play; names read through ``hostvars`` by units on other VMs). A dirty unit that exports names
   devbox cannot list (an ``include_vars`` of any file, ``*_facts``, ``add_host``, ``meta: end_play``) makes every
   later unit on its VM dirty, and the units of other VMs reading its host's variables through ``hostvars``
   (``setup`` only those reading ``ansible_*`` names).
2. A selected unit must see the variables a full run would give it, so every unit it reads names from, on the same
   VM (or, through ``hostvars``, on another VM: only units that can set a name it reads there) and ahead of it in
   the run, is run as *support*, and so is any earlier unit exporting names devbox cannot list (on another VM:
   that may be among the names read). Support units are unchanged: re-running them is idempotent and
   only restores the facts and variables the selected unit reads.
3. A selected unit's notifications must find their handlers: the roles of the same play defining them run too
   (Ansible refuses a notification with no handler). A change in those handlers alone does *not* re-run the
   notifying role: a handler runs only when a task reports a change, and the notifying role's unchanged tasks would
   report none in a full run either, so a full run after ours would run that handler no more than ours does.
4. A unit reading the play's host list (``ansible_play_hosts``...) runs on every host of the play, or it would see
   a shorter list than a full run. A unit reading other hosts' facts (``hostvars`` near an ``ansible_`` name) gets
   a fact-gathering play for every VM whose facts a full run would have gathered before it. A unit reading
   ``hostvars`` or ``groups`` has the variables of every VM and the inventory's groups among its inputs
   (``changes.py``), so a web VM's new address re-runs the load balancer's role.
5. A play's own content (vars, pre_tasks, tasks, post_tasks, handlers) runs whenever any of its roles runs, and
   its digest is an input of each of its roles: a change to it re-runs the whole play for its hosts. A change to
   any variable of a VM, or to a global input, changes the inputs of all its units: everything runs on that VM.
6. Anything devbox cannot be sure of (a templated ``include_role`` name or ``notify``, a templated ``hosts`` or
   ``vars_files``, a VM never provisioned by devbox) runs everything on the VMs concerned, and says why.

Why a full run afterwards reports changed=0: every unit whose inputs are unchanged was last applied with exactly
these inputs, and rules 1-4 give every selected unit the same variables, facts, handlers and host list a full run
would give it. Tasks are assumed idempotent, as a full run of the same playbook already assumes.

``subset_playbook(plan, digests)`` derives the plays to run from the playbook each time: for every play, one copy
per distinct set of selected roles, with the play's own keywords unchanged (vars, pre_tasks, tasks, handlers,
gather_facts, serial...), its ``hosts`` intersected with the VMs selected (``[<hosts>, "&~^(vm1|vm2)$"]``) and its
``roles:`` list filtered, in the original order (a kept role's ``meta`` dependencies run with it, as usual).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from provisioner.incremental.changes import ProjectDigests, Unit

Ledger = Mapping[str, Mapping[str, Mapping[str, str]]]  # vm -> unit key -> input name -> digest
MAX_REASONS = 4


@dataclass(frozen=True)
class UnitChoice:
    unit: str
    label: str
    reasons: tuple[str, ...]
    dirty: bool  # True: its inputs (or what it reads) changed; False: run only to support another unit


@dataclass(frozen=True)
class VmPlan:
    vm: str
    everything: bool
    units: tuple[UnitChoice, ...]

    @property
    def nothing(self) -> bool:
        return not self.units

    def reasons(self) -> list[str]:
        return list(dict.fromkeys(r for c in self.units for r in c.reasons))

    def roles(self) -> list[str]:
        return [c.label for c in self.units]


@dataclass(frozen=True)
class IncrementalPlan:
    vms: tuple[VmPlan, ...]
    gather_facts_for: tuple[str, ...] = ()
    subset_blockers: tuple[str, ...] = ()   # non-empty: the playbook must be run as it is
    scope: tuple[str, ...] = ()             # the VMs the run may touch (the caller limits Ansible to them); () = all

    @property
    def nothing_to_do(self) -> bool:
        return all(v.nothing for v in self.vms)

    @property
    def run_whole_playbook(self) -> bool:
        in_scope = [v for v in self.vms if not self.scope or v.vm in self.scope]
        return bool(self.subset_blockers) or all(v.everything for v in in_scope)

    def vm(self, name: str) -> VmPlan:
        return next(v for v in self.vms if v.vm == name)

    def selected(self, vm: str) -> set[str]:
        return {c.unit for c in self.vm(vm).units}

    def to_json(self) -> dict:
        return {"vms": [{"vm": v.vm, "everything": v.everything,
                         "units": [{"unit": c.unit, "label": c.label, "reasons": list(c.reasons)} for c in v.units]}
                        for v in self.vms],
                "gather_facts_for": list(self.gather_facts_for), "subset_blockers": list(self.subset_blockers)}


def _diff(old: Mapping[str, str] | None, new: Mapping[str, str], unit: Unit) -> list[str]:
    if old is None:
        return [f"new play {unit.play}" if unit.role is None else f"role {unit.role} not applied yet (new in play {unit.play}?)"]
    reasons = [f"{k} changed" for k in new if k in old and old[k] != new[k]]
    reasons += [f"{k} added" for k in new if k not in old]
    reasons += [f"{k} removed" for k in old if k not in new]
    if len(reasons) > MAX_REASONS:
        reasons = reasons[:MAX_REASONS] + [f"and {len(reasons) - MAX_REASONS} more inputs"]
    return reasons


class _Selection:
    def __init__(self, digests: ProjectDigests):
        self.d = digests
        self.reasons: dict[tuple[str, str], list[str]] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.gather: set[str] = set()
        self.grew = False

    def add(self, vm: str, unit: Unit, reasons: list[str], *, dirty: bool) -> None:
        key = (vm, unit.key)
        if key not in self.reasons or (dirty and key not in self.dirty):
            # first selection, or a support unit found dirty: its reasons are the ones that select it now
            self.reasons[key] = list(dict.fromkeys(reasons))
            self.grew = True
            if dirty:
                self.dirty.add(key)


def plan_incremental(previous: Ledger | None, digests: ProjectDigests, *, full: bool = False) -> IncrementalPlan:
    previous = previous or {}
    sel = _Selection(digests)
    units_of = {vm: digests.units_for(vm) for vm in digests.vms}
    by_key = {u.key: u for u in digests.units}

    for vm in digests.vms:
        applied = previous.get(vm)
        whole = (["--full"] if full else
                 ["never provisioned by devbox"] if not applied else
                 [f"cannot be sure: {r}" for r in digests.vm_uncertain.get(vm, ())])
        for unit in units_of[vm]:
            if whole:
                sel.add(vm, unit, whole, dirty=True)
                continue
            current = digests.inputs_for(vm, unit)
            old = applied.get(unit.key)
            if old != current:
                sel.add(vm, unit, _diff(old, current, unit), dirty=True)

    while sel.grew:
        sel.grew = False
        for (vm, ukey) in list(sel.reasons):
            _propagate(sel, vm, by_key[ukey], units_of, digests, dirty=(vm, ukey) in sel.dirty)

    vm_plans = []
    for vm in digests.vms:
        choices = tuple(UnitChoice(unit=u.key, label=u.label, reasons=tuple(sel.reasons[(vm, u.key)]),
                                   dirty=(vm, u.key) in sel.dirty)
                        for u in units_of[vm] if (vm, u.key) in sel.reasons)
        vm_plans.append(VmPlan(vm=vm, everything=bool(units_of[vm]) and len(choices) == len(units_of[vm]),
                               units=choices))
    return IncrementalPlan(vms=tuple(vm_plans), gather_facts_for=tuple(v for v in digests.vms if v in sel.gather),
                           subset_blockers=digests.subset_blockers)


def _reads(reader: Unit, names: frozenset[str]) -> list[str]:
    return sorted((reader.mentions - reader.assigns) & names)


def _visible(src: Unit, dst: Unit) -> frozenset[str]:
    """Names ``src`` sets that ``dst`` can see on the same host."""
    names = src.exports if src.order < dst.order else frozenset()
    if src.play == dst.play:
        names = names | src.scoped_exports
    return names


def _propagate(sel: _Selection, vm: str, unit: Unit, units_of: Mapping[str, list[Unit]],
               digests: ProjectDigests, *, dirty: bool) -> None:
    play = digests.play(unit.play)
    # 5. the play's own content runs with any of its roles
    if unit.role is not None:
        own = next(u for u in units_of[vm] if u.play == unit.play and u.role is None)
        sel.add(vm, own, [f"runs with {unit.label}"], dirty=False)
    # 3. handlers notified across roles
    for hkey in unit.handler_units:
        holder = next(u for u in units_of[vm] if u.key == hkey)
        sel.add(vm, holder, [f"defines a handler that {unit.label} notifies"], dirty=False)
    # 4. the play's host list
    if unit.uses_play_hosts:
        for other in play.vms:
            sel.add(other, unit, [f"{unit.label} reads the play's host list"], dirty=False)
    if unit.reads_remote_facts:
        for earlier in digests.plays:
            if earlier.index <= play.index and earlier.gather_facts:
                sel.gather.update(earlier.vms)
    # 2. support: what the unit reads must be set as in a full run
    for other_vm, units in units_of.items():
        if other_vm != vm and not unit.uses_hostvars:
            continue
        for src in units:
            if src.key == unit.key:
                continue
            if other_vm != vm:
                # another host's unit matters only if it can set a name this unit reads through hostvars
                read = src.may_set(unit.remote_reads) if src.order < unit.order else []
                if read == ["variables"]:
                    sel.add(other_vm, src, [f"{_unlisted(src)}, ahead of {unit.label} on {vm}, which reads "
                                            f"{_names(sorted(unit.remote_reads))} through hostvars"], dirty=False)
                elif read:
                    sel.add(other_vm, src, [f"sets {_names(read)} read by {unit.label} on {vm}"], dirty=False)
                continue
            read = _reads(unit, _visible(src, unit))
            if read:
                sel.add(other_vm, src, [f"sets {_names(read)} read by {unit.label}"], dirty=False)
            elif src.unknown_exports and src.order < unit.order:
                sel.add(other_vm, src, [f"{src.unknown_exports[0]}, ahead of {unit.label}"], dirty=False)
    if not dirty:
        return
    # 1. a dirty unit's exports may change: later readers are dirty too
    for other_vm, units in units_of.items():
        for dst in units:
            if dst.key == unit.key:
                continue
            if other_vm == vm:
                read = _reads(dst, _visible(unit, dst))
                if read:
                    sel.add(vm, dst, [f"reads {_names(read)} from {unit.label}, which changed"], dirty=True)
                elif unit.unknown_exports and dst.order > unit.order:
                    sel.add(vm, dst, [f"runs after {unit.label}, which changed and {unit.unknown_exports[0]}"],
                            dirty=True)
            elif dst.uses_hostvars and dst.order > unit.order:
                read = unit.may_set(dst.remote_reads)
                if read:
                    what = _names(read) if read != ["variables"] else "variables"
                    sel.add(other_vm, dst, [f"reads {what} of {vm} set by {unit.label}, which changed"], dirty=True)


def _unlisted(src: Unit) -> str:
    return next((r for r in src.unknown_exports if r not in src.fact_exports), src.unknown_exports[0]
                if src.unknown_exports else f"{src.label} sets variables")


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


# ------------------------------------------------------------------------------------------- subset playbook

@dataclass(frozen=True)
class GeneratedPlay:
    play: str | None            # key of the original play; None for devbox's fact-gathering play
    vms: tuple[str, ...]
    units: tuple[str, ...]      # unit keys this play applies (the play's own content first, then roles in order)


@dataclass(frozen=True)
class SubsetPlaybook:
    plays: tuple[GeneratedPlay, ...]
    data: tuple[Mapping[str, Any], ...] = field(default=())  # the plays to write; empty: run the playbook as is


def _limit(hosts: Any, vms: list[str]) -> list:
    pattern = "&~^(" + "|".join(re.escape(vm) for vm in vms) + ")$"
    return [*(hosts if isinstance(hosts, list) else [hosts]), pattern]


def subset_playbook(plan: IncrementalPlan, digests: ProjectDigests) -> SubsetPlaybook:
    """The plays a run of ``plan`` consists of; ``data`` is empty when the playbook must run as it is."""
    if plan.run_whole_playbook:
        return SubsetPlaybook(plays=tuple(
            GeneratedPlay(play=p.key, vms=p.vms, units=(p.key, *(f"{p.key}/{r}" for r in p.role_keys)))
            for p in digests.plays))
    plays: list[GeneratedPlay] = []
    data: list[Mapping[str, Any]] = []
    if plan.gather_facts_for:
        plays.append(GeneratedPlay(play=None, vms=plan.gather_facts_for, units=()))
        data.append({"name": "devbox: facts that later plays read through hostvars",
                     "hosts": _limit("all", list(plan.gather_facts_for))[1][1:], "gather_facts": True, "tasks": []})
    for play in digests.plays:
        groups: dict[tuple[str, ...], list[str]] = {}
        for vm in play.vms:
            chosen = plan.selected(vm)
            if play.key not in chosen and not any(f"{play.key}/{r}" in chosen for r in play.role_keys):
                continue
            roles = tuple(r for r in play.role_keys if f"{play.key}/{r}" in chosen)
            groups.setdefault(roles, []).append(vm)
        for roles, vms in groups.items():
            copy = dict(play.data)
            copy["hosts"] = _limit(play.data.get("hosts", play.hosts), vms)
            copy["roles"] = [play.role_entries[r] for r in roles]
            data.append(copy)
            plays.append(GeneratedPlay(play=play.key, vms=tuple(vms),
                                       units=(play.key, *(f"{play.key}/{r}" for r in roles))))
    return SubsetPlaybook(plays=tuple(plays), data=tuple(data))


def render_playbook(subset: SubsetPlaybook, source: str) -> str:
    import yaml
    from ansible.parsing.yaml.dumper import AnsibleDumper

    header = (f"# Generated by devbox from {source} for an incremental run; regenerated on every run.\n"
              "# Do not edit or commit: the playbook it was derived from is the one to change.\n")
    return header + yaml.dump(list(subset.data), Dumper=AnsibleDumper, sort_keys=False, default_flow_style=False)
