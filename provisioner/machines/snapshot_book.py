"""What devbox keeps about snapshots, and the definition of a VM they are checked against.

``.devbox/snapshots.json`` (written atomically, under the project lock): per snapshot name and VM, when it was
taken, whether the VM ran, the VM's definition, its machine record and its provisioning ledger at that moment.
The lifecycle records each VM's definition when it boots one, and forgets a destroyed VM's snapshots (Vagrant
deletes them with the VM); ``snapshots.py`` does the rest.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from provisioner.errors import DevboxError
from provisioner.fsutil import atomic_write
from provisioner.project.paths import ProjectPaths

CONVERGED = "converged"  # the automatic snapshot kept after each successful full provisioning run
FORMAT = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # goes into libvirt's snapshot XML as it is
# what Vagrant applies again at every boot of an existing VM; the rest (box, provider, hypervisor) only when the
# VM is created
APPLIED_AT_BOOT = ("memory", "cpus", "address", "network")


# ------------------------------------------------------------------------------------------ the definition

def definition_of(config, machine) -> dict:
    """What the Vagrantfile rendered from ``config`` (devbox.yml) and the plan says machine ``machine`` is."""
    return {"provider": config.provider, "box": config.box, "libvirt_uri": config.libvirt_uri,
            "memory": machine.memory, "cpus": machine.cpus, "address": machine.address, "network": config.network}


def booted_definition(previous: Mapping | None, current: Mapping, *, created: bool) -> dict:
    """A VM's definition after a boot: all of ``current`` when Vagrant created it; when it started an existing
    VM, only what Vagrant applies at each boot (memory, cpus, networks), the rest as it was (None: not known,
    the VM was created before devbox recorded definitions)."""
    if created:
        return dict(current)
    return {k: (current[k] if k in APPLIED_AT_BOOT else (previous or {}).get(k)) for k in current}


def mismatches(recorded: Mapping | None, current: Mapping) -> list[str]:
    """How a VM as booted differs from what the project describes now: the plan (memory, cpus, address, the
    Vagrantfile it rendered) and devbox.yml (box, provider, network). Empty: it matches."""
    if not recorded:
        return ["devbox has no record of what it was booted with (booted by an older devbox or outside devbox)"]
    out = []
    for key, want in current.items():
        have = recorded.get(key)
        if have != want:
            unit = " MiB" if key == "memory" else ""
            out.append(f"{key} {'not known' if have is None else f'{have}{unit}'}, the project now says {want}{unit}")
    return out


# ---------------------------------------------------------------------------------------------- metadata

@dataclass(frozen=True)
class SnapshotEntry:
    """One VM's part of a snapshot: the provider holds the disk (and memory); devbox keeps this."""

    vm: str
    taken: str
    state: str                    # running or poweroff when taken (a restore gives that back)
    definition: Mapping
    record: Mapping               # the machine record of .devbox/state.json at that moment
    ledger: Mapping | None        # the VM's provisioning ledger (unit -> inputs); None: nothing applied

    def to_json(self) -> dict:
        return {"taken": self.taken, "state": self.state, "definition": dict(self.definition),
                "record": dict(self.record), "ledger": None if self.ledger is None else dict(self.ledger)}

    @classmethod
    def from_json(cls, vm: str, data: Mapping) -> "SnapshotEntry":
        return cls(vm=vm, taken=str(data["taken"]), state=str(data["state"]), definition=dict(data["definition"]),
                   record=dict(data["record"]), ledger=None if data.get("ledger") is None else dict(data["ledger"]))


@dataclass
class SnapshotBook:
    """``.devbox/snapshots.json``: snapshot name -> VM -> entry."""

    snapshots: dict[str, dict[str, SnapshotEntry]] = field(default_factory=dict)

    def entries(self, name: str) -> dict[str, SnapshotEntry]:
        return self.snapshots.get(name, {})

    def put(self, name: str, entry: SnapshotEntry) -> None:
        self.snapshots.setdefault(name, {})[entry.vm] = entry

    def drop(self, name: str, vm: str) -> None:
        self.snapshots.get(name, {}).pop(vm, None)
        if not self.snapshots.get(name):
            self.snapshots.pop(name, None)

    def forget_vms(self, vms: Sequence[str]) -> None:
        for name in list(self.snapshots):
            for vm in vms:
                self.drop(name, vm)

    def to_json(self) -> dict:
        return {"format": FORMAT, "snapshots": {name: {vm: e.to_json() for vm, e in sorted(entries.items())}
                                                for name, entries in sorted(self.snapshots.items())}}


def load_book(paths: ProjectPaths) -> SnapshotBook:
    try:
        data = json.loads(paths.snapshots.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SnapshotBook()
    except ValueError as exc:
        raise DevboxError(f"{paths.snapshots} is damaged: {exc}", _DAMAGED_HINT) from None
    try:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this devbox reads {FORMAT}")
        return SnapshotBook({name: {vm: SnapshotEntry.from_json(vm, e) for vm, e in entries.items()}
                             for name, entries in data["snapshots"].items()})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DevboxError(f"{paths.snapshots} is damaged: {exc}", _DAMAGED_HINT) from None


_DAMAGED_HINT = ("move it away: the provider's snapshots stay (`virsh snapshot-list DOMAIN`), but devbox can restore "
                 "none of them without their record; take new ones with `devbox snapshot save NAME`")


def save_book(paths: ProjectPaths, book: SnapshotBook) -> None:
    atomic_write(paths.snapshots, json.dumps(book.to_json(), indent=2, sort_keys=True) + "\n")


def forget_vms(paths: ProjectPaths, vms: Sequence[str]) -> None:
    """Destroying a VM deletes its snapshots with it (vagrant-libvirt removes them first): forget them too."""
    if paths.snapshots.exists():
        book = load_book(paths)
        book.forget_vms(vms)
        save_book(paths, book)
