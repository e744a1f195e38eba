"""Incremental provisioning around one Ansible run: plan before it, record the ledger after it.

``prepare(...)`` reads the ledger from ``.devbox/state.json``, digests the project (``changes.scan_project``),
plans (``incremental.plan_incremental``) and, when only part of the run is needed, writes the subset playbook to
``.devbox/incremental/`` (see ``write_subset``). ``record(...)`` turns the run's events into the new ledger.
No Ansible run happens here: the caller runs ``IncrementalRun.playbook`` through its PlaybookRunner.

The quick check: when a full check finds nothing to do, ``prepare`` stores a fingerprint of every file the
digests were read from (contents, not times), the ANSIBLE_* environment, ansible-core's version and the ledger.
While that fingerprint still matches, "nothing to do" is answered without importing or parsing anything; any
edit, a run (which rewrites the ledger) or a VM forgotten makes it miss, and the full check runs again.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from provisioner.incremental.changes import ProjectDigests, scan_project
from provisioner.errors import UsageError
from provisioner.fsutil import atomic_write
from provisioner.incremental.subset import (GeneratedPlay, IncrementalPlan, SubsetPlaybook, VmPlan, plan_incremental,
                          render_playbook, subset_playbook)
from provisioner.incremental.ledger import LEDGER_KEY, completed_units, forget, ledger_json, ledger_of, record_run
from provisioner.project.state import load_state, save_state

SUBSET_DIR = "incremental"


@dataclass(frozen=True)
class IncrementalRun:
    digests: ProjectDigests | None  # None: the quick check found every input as it was (nothing to do)
    plan: IncrementalPlan
    subset: SubsetPlaybook
    playbook: Path          # what to run: the project's playbook, or the generated subset
    names: tuple[str, ...]  # VMs the run may touch

    @property
    def nothing_to_do(self) -> bool:
        return all(self.plan.vm(n).nothing for n in self.names)

    @property
    def vms_to_run(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if not self.plan.vm(n).nothing)

    @property
    def hosts_to_contact(self) -> tuple[str, ...]:
        """The VMs the run connects to: those with work, and those whose facts it gathers for them."""
        return tuple(dict.fromkeys((*self.vms_to_run, *self.plan.gather_facts_for)))


def _only(plan: IncrementalPlan, names: Sequence[str]) -> IncrementalPlan:
    """The plan for ``names`` only (the other VMs run nothing)."""
    keep = set(names)
    return IncrementalPlan(vms=tuple(v if v.vm in keep else VmPlan(vm=v.vm, everything=False, units=())
                                     for v in plan.vms),
                           gather_facts_for=plan.gather_facts_for, subset_blockers=plan.subset_blockers,
                           scope=tuple(names))


def prepare(*, devbox_dir: Path, playbook: Path, inventory: Path, project_dir: Path, names: Sequence[str] = (),
            full: bool = False, extra_vars: Mapping | None = None, extra_files: Iterable[Path] = (),
            write: bool = True) -> IncrementalRun:
    """Plan the run; with ``write`` (a real run) also write the subset playbook and the quick-check marker."""
    state_path = devbox_dir / "state.json"
    state = load_state(state_path)
    ledger = ledger_of(state.other)
    quiet = None if full else _quiet_marker(state.other, ledger, extra_vars)
    if quiet is not None:
        names = tuple(n for n in (names or quiet) if n in quiet)
        plan = IncrementalPlan(vms=tuple(VmPlan(vm=vm, everything=False, units=()) for vm in quiet),
                               scope=names if set(names) != set(quiet) else ())
        return IncrementalRun(digests=None, plan=plan, subset=SubsetPlaybook(plays=()),
                              playbook=Path(playbook).resolve(), names=names)
    digests = scan_project(playbook, inventory, project_dir=project_dir, extra_vars=extra_vars,
                           extra_files=extra_files)
    plan = plan_incremental(ledger, digests, full=full)
    if write and not full and plan.nothing_to_do:
        # Remember the inputs as they are now: the next plain run can say "nothing" without parsing anything.
        state = load_state(state_path)
        state.other.setdefault(LEDGER_KEY, ledger_json(ledger_of(state.other)))[QUIET_KEY] = {
            "fingerprint": fingerprint(digests.sources, ledger_of(state.other), extra_vars),
            "sources": list(digests.sources), "vms": list(digests.vms)}
        save_state(state_path, state)
    names = tuple(n for n in (names or digests.vms) if n in digests.vms)
    if set(names) != set(digests.vms):
        plan = _only(plan, names)
    subset = subset_playbook(plan, digests)
    to_run = Path(playbook).resolve()
    if subset.data and write:
        to_run = write_subset(subset, to_run, devbox_dir / SUBSET_DIR)
    elif subset.data:
        to_run = devbox_dir / SUBSET_DIR / to_run.name
    elif set(names) != set(digests.vms):
        # The playbook runs as it is, but only on the VMs asked for: record only those.
        subset = SubsetPlaybook(plays=tuple(GeneratedPlay(play=g.play, vms=tuple(v for v in g.vms if v in names),
                                                          units=g.units) for g in subset.plays))
    return IncrementalRun(digests=digests, plan=plan, subset=subset, playbook=to_run, names=names)


QUIET_KEY = "quiet"  # in the ledger section: fingerprint of every input when a full check found nothing to do


def _files(path: Path) -> Iterable[Path]:
    if not path.is_dir():
        yield path
        return
    for folder, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            yield Path(folder, name)


def fingerprint(sources: Iterable[str], ledger: Mapping, extra_vars: Mapping | None) -> str:
    """sha256 over the content of every file under ``sources`` (hidden folders left out, as in the digests),
    ansible-core's version, the ANSIBLE_* environment (roles_path...), devbox's extra vars and the ledger itself.
    Reads files only: no Ansible import, no parsing."""
    from importlib.metadata import version

    h = hashlib.sha256()
    settings = {k: v for k, v in os.environ.items() if k.startswith("ANSIBLE_")}
    h.update(json.dumps([version("ansible-core"), settings, extra_vars or {}], sort_keys=True, default=str).encode())
    for source in sorted(set(sources)):
        for file in _files(Path(source)):
            try:
                content = hashlib.sha256(file.read_bytes()).hexdigest()
            except OSError:
                content = "missing"
            h.update(f"{file}\0{content}\n".encode())
    h.update(json.dumps(ledger, sort_keys=True).encode())
    return h.hexdigest()


def _quiet_marker(state_other: Mapping, ledger: Mapping, extra_vars: Mapping | None) -> list[str] | None:
    """The VMs, if every input is exactly as when a full check last found nothing to do; else None."""
    section = state_other.get(LEDGER_KEY)
    quiet = section.get(QUIET_KEY) if isinstance(section, Mapping) else None
    if not isinstance(quiet, Mapping) or not isinstance(quiet.get("sources"), list):
        return None
    if fingerprint(quiet["sources"], ledger, extra_vars) != quiet.get("fingerprint"):
        return None
    return [str(vm) for vm in quiet.get("vms") or []]


PARTIAL_FLAGS = "--tags, --skip-tags, --limit, -e/--extra-vars or --check"


def partial_run(*, tags: str | None = None, skip_tags: str | None = None, limit: str | None = None,
                check: bool = False, extra_vars: Sequence[str] = ()) -> bool:
    """Whether Ansible runs part of the playbook, something other than the files say (extra vars), or nothing for
    real: such a run records nothing in the ledger."""
    return bool(tags or skip_tags or limit or check or extra_vars)


def start(*, devbox_dir: Path, playbook: Path, inventory: Path, project_dir: Path, names: Sequence[str],
          full: bool = False, dry_run: bool = False, tags: str | None = None, limit: str | None = None,
          check: bool = False, skip_tags: str | None = None, extra_vars: Sequence[str] = ()
          ) -> IncrementalRun | None:
    """The incremental run for ``devbox provision``/``up``, or None when the run cannot be one.

    With ``--tags``, ``--skip-tags``, ``--limit`` or ``--check`` Ansible runs part of the playbook, or nothing for
    real; with extra vars it applies values the project's files do not hold. devbox then runs the playbook as
    asked and records nothing: the ledger still holds what was last applied in full from the files, and the next
    plain run redoes whatever changed since.
    """
    if partial_run(tags=tags, skip_tags=skip_tags, limit=limit, check=check, extra_vars=extra_vars):
        if dry_run or full:
            flag = "--dry-run" if dry_run else "--full"
            raise UsageError(f"{flag} cannot be combined with {PARTIAL_FLAGS}",
                             f"use {flag} alone, or those options without it")
        return None
    return prepare(devbox_dir=devbox_dir, playbook=playbook, inventory=inventory, project_dir=project_dir,
                   names=names, full=full, write=not dry_run)


def pending(*, devbox_dir: Path, playbook: Path, inventory: Path, project_dir: Path) -> IncrementalPlan:
    """What a plain ``devbox provision`` would run now, per VM, and why. Reads files only."""
    return prepare(devbox_dir=devbox_dir, playbook=playbook, inventory=inventory, project_dir=project_dir,
                   write=False).plan


def write_subset(subset: SubsetPlaybook, playbook: Path, dest: Path) -> Path:
    """Write the subset playbook into ``dest``, next to symlinks to every entry of the playbook's folder.

    Ansible resolves ``roles/``, playbook-level ``group_vars``/``host_vars``, ``templates/``, ``files/``,
    relative ``vars_files`` and the folder's ``ansible.cfg`` against the playbook's own folder; the symlinks make
    all of them resolve exactly as for the real playbook, without writing anything into the project's tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for entry in dest.iterdir():
        if entry.is_symlink():
            entry.unlink()
    for entry in playbook.parent.iterdir():
        if entry.name not in (playbook.name, ".devbox", ".git") and not (dest / entry.name).exists():
            os.symlink(entry, dest / entry.name)
    target = dest / playbook.name
    atomic_write(target, render_playbook(subset, playbook.name))
    return target


def record(*, devbox_dir: Path, run: IncrementalRun, events: Sequence[Mapping]) -> dict:
    """Store in the ledger what the run finished on each VM; returns the new ledger."""
    state_path = devbox_dir / "state.json"
    state = load_state(state_path)  # fresh: others may have written the file during the run
    completed = {vm: completed_units(events, vm, run.subset, run.digests) for vm in run.names}
    ledger = record_run(ledger_of(state.other), run.digests, completed)
    state.other[LEDGER_KEY] = ledger_json(ledger)
    save_state(state_path, state)
    return ledger


def forget_in(state, names: Iterable[str]) -> None:
    """VMs destroyed or created again have nothing applied any more: drop them from ``state``'s ledger."""
    ledger = ledger_of(state.other)
    gone = [n for n in names if n in ledger]
    if gone:
        state.other[LEDGER_KEY] = ledger_json(forget(ledger, gone))
