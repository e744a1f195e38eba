"""Snapshots of the development VMs: save, restore, list, delete, the automatic ``converged`` one, and reset.

The VMs' disks (and memory, when a VM runs) are the provider's own snapshots, taken through Vagrant one VM at a
time (libvirt: internal qcow2 snapshots). What devbox knew about each VM at that moment is kept beside them in
``.devbox/snapshots.json``: the provisioning ledger (what devbox had applied), the machine record (connection,
last run, revision) and the VM's definition (box, memory, cpus, address, network). A restore puts both back, so
``devbox status`` and an incremental ``devbox provision`` afterwards are exact: they re-run what changed in the
playbooks since the snapshot was taken.

A VM that no longer matches what the Vagrantfile says (it was booted with other memory, another box...) is not
snapshotted: restoring it later would bring back a machine the project no longer describes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from provisioner.adapters.vagrant_driver import NOT_CREATED, POWEROFF, RUNNING
from provisioner.errors import DevboxError, UsageError
from provisioner.incremental.ledger import LEDGER_KEY, ledger_json, ledger_of
from provisioner.machines import lifecycle
from provisioner.machines.snapshot_book import (APPLIED_AT_BOOT, CONVERGED, NAME, SnapshotEntry, definition_of,
                                                load_book, mismatches, save_book)
from provisioner.plan.planning import generated_set_problem, load_plan
from provisioner.plan.shares import NO_MEMORY_SNAPSHOT, machines_sharing
from provisioner.project.context import Project
from provisioner.project.state import MachineRecord, State, load_state, now_iso, save_state


def _mismatch_hint(names_reasons: Mapping[str, list[str]]) -> str:
    recreate = [n for n, reasons in names_reasons.items()
                if any(not r.split(" ", 1)[0] in APPLIED_AT_BOOT for r in reasons)]
    reboot = [n for n in names_reasons if n not in recreate]
    hints = []
    if reboot:
        hints.append(f"`devbox halt {' '.join(reboot)}` then `devbox up {' '.join(reboot)}` applies the Vagrantfile")
    if recreate:
        hints.append(f"`devbox destroy {' '.join(recreate)}` then `devbox up {' '.join(recreate)}` builds "
                     f"{'it' if len(recreate) == 1 else 'them'} again from the Vagrantfile")
    return "; ".join(hints) + "; then take the snapshot again"


def shared_folder_refusal(names: Sequence[str]) -> str:
    return (f"{', '.join(names)} {'runs' if len(names) == 1 else 'run'} with a folder shared from this machine "
            f"(devbox.yml shared_folders), and libvirt cannot save the memory of a running VM while a 9p or "
            f"virtiofs folder is attached and mounted; no snapshot was taken")


def shared_folder_hint(names: Sequence[str]) -> str:
    vms = " ".join(names)
    return (f"`devbox halt {vms}`, take the snapshot (of a halted VM: its disk only), then `devbox up {vms}` (it "
            f"mounts the folders again); or save the snapshot of the other VMs only, naming them")


# ------------------------------------------------------------------------------------------------ results

@dataclass(frozen=True)
class SnapshotRun:
    """save / restore / delete: the snapshot, the VMs, how long each took, what the user should know."""

    snapshot: str
    names: tuple[str, ...]
    seconds: Mapping[str, float]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotRow:
    snapshot: str
    vm: str
    taken: str
    state: str
    revision: str | None
    automatic: bool

    def to_json(self) -> dict:
        return {"snapshot": self.snapshot, "vm": self.vm, "taken": self.taken, "state": self.state,
                "revision": self.revision, "automatic": self.automatic}


@dataclass(frozen=True)
class ResetResult:
    restore: SnapshotRun
    provision: "lifecycle.ProvisionResult"


class SnapshotRefused(DevboxError):
    pass


# ---------------------------------------------------------------------------------------------- commands

def check_name(snapshot: str, *, user: bool = True) -> None:
    if not NAME.match(snapshot or ""):
        raise UsageError(f"snapshot name {snapshot!r} is not allowed",
                         "use letters, digits, '.', '_' and '-', starting with a letter or digit (64 at most)")
    if user and snapshot == CONVERGED:
        raise UsageError(f"`{CONVERGED}` is the snapshot devbox keeps after each successful full provisioning",
                         "choose another name; `devbox reset` goes back to it")


def save(project: Project, snapshot: str, names: Sequence[str] = (), *, replace: bool = False) -> SnapshotRun:
    check_name(snapshot)
    with project.lock(f"devbox snapshot save {snapshot}"):
        selected = lifecycle.select(project, names)
        return _save_locked(project, snapshot, selected, replace=replace)


def _save_locked(project: Project, snapshot: str, selected: Sequence[str], *, replace: bool,
                 states: Mapping[str, str] | None = None) -> SnapshotRun:
    paths = project.paths
    problem = generated_set_problem(paths.root)
    if problem:
        raise SnapshotRefused(f"the generated files are not one set: {problem}; no snapshot was taken",
                              "run `devbox up` (it renders the set again), then save the snapshot")
    topology = load_plan(paths.root)
    config = project.config()
    if states is None:
        states = {n: s.state for n, s in project.vagrant.status().items()}
    missing = [n for n in selected if states.get(n, NOT_CREATED) == NOT_CREATED]
    if missing:
        raise SnapshotRefused(f"not created: {', '.join(missing)}; no snapshot was taken",
                              f"`devbox up {' '.join(missing)}` creates {'it' if len(missing) == 1 else 'them'}")
    odd = {n: states[n] for n in selected if states[n] not in (RUNNING, POWEROFF)}
    if odd:
        raise SnapshotRefused("only running or halted VMs are snapshotted: "
                              + ", ".join(f"{n} is {s}" for n, s in odd.items()) + "; no snapshot was taken",
                              "`devbox up` starts them, `devbox halt` stops them")
    shared = [n for n in machines_sharing(config, [topology.machine(n) for n in selected], NO_MEMORY_SNAPSHOT)
              if states[n] == RUNNING]
    if shared:
        raise SnapshotRefused(shared_folder_refusal(shared), shared_folder_hint(shared))
    state = load_state(paths.state)
    reasons = {n: r for n in selected
               if (r := mismatches(state.machine(n).definition, definition_of(config, topology.machine(n))))}
    if reasons:
        raise SnapshotRefused("these VMs no longer match the Vagrantfile, so a snapshot of them could not be "
                              "restored as the project describes them; no snapshot was taken:\n"
                              + "\n".join(f"  {n}: {'; '.join(r)}" for n, r in reasons.items()),
                              _mismatch_hint(reasons))
    book = load_book(paths)
    taken_already = [n for n in selected if n in book.entries(snapshot)]
    if taken_already and not replace:
        raise SnapshotRefused(f"snapshot {snapshot} of {', '.join(taken_already)} exists; nothing was taken",
                              f"`devbox snapshot save {snapshot} --force` replaces it, or choose another name")
    ledger = ledger_of(state.other)
    seconds = {}
    for n in selected:
        project.progress(n, f"saving snapshot {snapshot}")
        run = project.vagrant.snapshot_save(name=n, snapshot=snapshot)
        seconds[n] = run.seconds
        rec = state.machine(n)
        entry = SnapshotEntry(vm=n, taken=now_iso(), state=states[n], definition=dict(rec.definition),
                              record=_record_json(rec), ledger=ledger.get(n))
        book = load_book(paths)   # written after each VM: an interruption keeps what the provider has
        book.put(snapshot, entry)
        save_book(paths, book)
        project.progress(n, f"snapshot {snapshot} saved")
    return SnapshotRun(snapshot, tuple(selected), seconds)


def _record_json(rec: MachineRecord) -> dict:
    return asdict(rec)


def restore(project: Project, snapshot: str, names: Sequence[str] = ()) -> SnapshotRun:
    check_name(snapshot, user=False)
    with project.lock(f"devbox snapshot restore {snapshot}"):
        return _restore_locked(project, snapshot, names)


def _missing_snapshot(snapshot: str, what: str) -> DevboxError:
    if snapshot == CONVERGED:
        return DevboxError(f"no `{CONVERGED}` snapshot {what}",
                           "devbox keeps one after each successful full provisioning (`devbox up` of new VMs, "
                           "`devbox provision --full`) unless devbox.yml says `snapshots: {converged: false}`; "
                           "or take one yourself: `devbox snapshot save NAME`, then `devbox snapshot restore NAME`")
    return DevboxError(f"no snapshot {snapshot} {what}",
                       f"`devbox snapshot list` shows the snapshots; `devbox snapshot save {snapshot}` takes one")


def _restore_locked(project: Project, snapshot: str, names: Sequence[str]) -> SnapshotRun:
    paths = project.paths
    topology = load_plan(paths.root)
    selected = lifecycle._select(topology, names)
    book = load_book(paths)
    entries = book.entries(snapshot)
    if not entries:
        raise _missing_snapshot(snapshot, "yet")
    lacking = [n for n in selected if n not in entries]
    if lacking:
        raise _missing_snapshot(snapshot, f"of {', '.join(lacking)}") if names else UsageError(
            f"snapshot {snapshot} does not hold {', '.join(lacking)}",
            f"name the VMs it holds: `devbox {'reset' if snapshot == CONVERGED else f'snapshot restore {snapshot}'} "
            f"{' '.join(n for n in selected if n in entries)}`")
    states = {n: s.state for n, s in project.vagrant.status().items()}
    missing = [n for n in selected if states.get(n, NOT_CREATED) == NOT_CREATED]
    if missing:
        raise DevboxError(f"not created: {', '.join(missing)}; nothing was restored",
                          "destroying a VM deletes its snapshots; `devbox up` creates it again")
    held = project.vagrant.snapshot_list()
    gone = [n for n in selected if snapshot not in held.get(n, ())]
    if gone:
        raise DevboxError(f"the provider holds no snapshot {snapshot} of {', '.join(gone)} (deleted outside "
                          f"devbox?); nothing was restored", "`devbox snapshot list` shows what devbox knows; "
                          f"`devbox snapshot delete {snapshot} {' '.join(gone)}` forgets it")
    config = project.config()
    notes = []
    seconds = {}
    for n in selected:
        entry = entries[n]
        project.progress(n, f"restoring snapshot {snapshot}")
        run = project.vagrant.snapshot_restore(name=n, snapshot=snapshot)
        seconds[n] = run.seconds
        state = load_state(paths.state)
        before = state.machine(n).ssh
        _put_back(state, entry)
        save_state(paths.state, state)
        # a kept-open SSH connection to it belongs to a VM that no longer exists in that form
        project.playbooks.close_connections(targets=sorted({(s["host"], int(s["port"]), s["user"])
                                                            for s in (before, state.machine(n).ssh) if s}))
        project.progress(n, f"snapshot {snapshot} restored ({entry.state})")
        differs = mismatches(entry.definition, definition_of(config, topology.machine(n)))
        if differs:
            notes.append(f"{n} runs as when the snapshot was taken: {'; '.join(differs)}")
        if entry.state != RUNNING:
            notes.append(f"{n} is halted, as it was when the snapshot was taken: `devbox up {n}` boots it")
    state = load_state(paths.state)
    lifecycle.write_connection_inventory(paths, topology, state)
    # a VM restored running answers only once its network is back: wait for SSH as `up` does, so the next
    # command (status, provision) finds it reachable
    running = [n for n in selected if entries[n].state == RUNNING]
    if running:
        results = project.ssh_probe.wait_ready(targets=lifecycle._targets(paths, state, running),
                                               timeout=lifecycle.SSH_TIMEOUT,
                                               on_ready=lambda n: project.progress(n, "SSH ready"))
        errors = [r.error for r in results.values() if not r.ready]
        if errors:
            raise lifecycle.SshNotReady(errors)
    return SnapshotRun(snapshot, tuple(selected), seconds, tuple(notes))


def _put_back(state: State, entry: SnapshotEntry) -> None:
    """The VM's record and ledger as they were when the snapshot was taken; the state as the provider has it."""
    state.machines[entry.vm] = MachineRecord.from_json(dict(entry.record))
    state.record_seen(entry.vm, entry.state)
    ledger = ledger_of(state.other)
    if entry.ledger is None:
        ledger.pop(entry.vm, None)
    else:
        ledger[entry.vm] = {k: dict(v) for k, v in entry.ledger.items()}
    state.other[LEDGER_KEY] = ledger_json(ledger)   # drops the quick check's marker: the next check is a full one


def delete(project: Project, snapshot: str, names: Sequence[str] = ()) -> SnapshotRun:
    check_name(snapshot, user=False)
    with project.lock(f"devbox snapshot delete {snapshot}"):
        paths = project.paths
        topology = load_plan(paths.root)
        selected = lifecycle._select(topology, names)
        entries = load_book(paths).entries(snapshot)
        targets = [n for n in selected if n in entries]
        if not targets:
            raise _missing_snapshot(snapshot, f"of {', '.join(selected)}" if names else "yet")
        states = {n: s.state for n, s in project.vagrant.status().items()}
        held = project.vagrant.snapshot_list()
        seconds, notes = {}, []
        for n in targets:
            if states.get(n, NOT_CREATED) != NOT_CREATED and snapshot in held.get(n, ()):
                project.progress(n, f"deleting snapshot {snapshot}")
                seconds[n] = project.vagrant.snapshot_delete(name=n, snapshot=snapshot).seconds
            else:
                notes.append(f"{n}: the provider no longer held it; devbox's record of it is removed")
            book = load_book(paths)
            book.drop(snapshot, n)
            save_book(paths, book)
            project.progress(n, f"snapshot {snapshot} deleted")
        return SnapshotRun(snapshot, tuple(targets), seconds, tuple(notes))


def listing(project: Project) -> list[SnapshotRow]:
    """Every snapshot devbox took, per VM, from ``.devbox/snapshots.json`` (no provider call)."""
    book = load_book(project.paths)
    return [SnapshotRow(snapshot=name, vm=vm, taken=e.taken, state=e.state, revision=e.record.get("revision"),
                        automatic=name == CONVERGED)
            for name, entries in sorted(book.snapshots.items()) for vm, e in sorted(entries.items())]


# ------------------------------------------------------------------------------ converged snapshot, reset

def keep_converged(project: Project, outcome: "lifecycle.ProvisionResult") -> str | None:
    """After a successful run (the caller holds the lock): refresh the ``converged`` snapshot of every VM the run
    applied the whole playbook to. Returns what happened, for the user (None: nothing to say)."""
    if outcome.partial or outcome.check or outcome.plan is None or outcome.playbook is None:
        return None
    if not project.config().converged_snapshot:
        return None
    succeeded = {h.host for h in outcome.playbook.hosts if h.succeeded}
    in_plan = {v.vm for v in outcome.plan.vms}
    whole = [n for n in outcome.names if n in in_plan and n in succeeded and outcome.plan.vm(n).everything]
    # VMs with a shared folder cannot be snapshotted running (see shared_folder_refusal): the others still are
    skipped = _with_shared_folders(project, whole)
    skipped_note = (f"; not of {', '.join(skipped)}: libvirt cannot save the memory of a running VM with a shared "
                    f"folder mounted, so `devbox reset` leaves {'it' if len(skipped) == 1 else 'them'} out"
                    if skipped else "")
    whole = [n for n in whole if n not in skipped]
    if not whole:
        return f"note: the `{CONVERGED}` snapshot was not taken{skipped_note}" if skipped else None
    try:
        # the run just reached them over SSH: running, no `vagrant status` needed
        run = _save_locked(project, CONVERGED, whole, replace=True, states={n: RUNNING for n in whole})
    except DevboxError as exc:   # the run itself succeeded: say why there is no snapshot, do not fail it
        why = " ".join(line.strip() for line in str(exc).splitlines())
        return f"note: the `{CONVERGED}` snapshot was not taken: {why}" + (f" ({exc.hint})" if exc.hint else "")
    return (f"`{CONVERGED}` snapshot taken of {', '.join(run.names)} in {sum(run.seconds.values()):.0f}s "
            f"(`devbox reset` goes back to it; `snapshots: {{converged: false}}` in devbox.yml turns it off)"
            + skipped_note)


def _with_shared_folders(project: Project, names: Sequence[str]) -> list[str]:
    config = project.config()
    if not config.shared_folders:
        return []
    topology = load_plan(project.paths.root)
    return machines_sharing(config, [topology.machine(n) for n in names], NO_MEMORY_SNAPSHOT)


def reset(project: Project, names: Sequence[str] = (), *, verbosity: int = 0) -> ResetResult:
    """Back to the ``converged`` snapshot, then apply only what changed since (an incremental provision)."""
    with project.lock("devbox reset"):
        restored = _restore_locked(project, CONVERGED, names)
        provisioned = lifecycle.provision_locked(project, names, verbosity=verbosity)
    return ResetResult(restore=restored, provision=provisioned)


