"""What devbox knows between runs, in ``.devbox/state.json`` (written atomically).

Per machine: the provider state as last seen, the cached ``vagrant ssh-config`` result (valid until the
machine is recreated or destroyed), and when it was last provisioned from which playbook revision. Top-level
keys this module does not know (e.g. the incremental-provisioning ledger another feature keeps) are carried
through unchanged, so features can share the file without knowing each other.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from provisioner.errors import DevboxError
from provisioner.fsutil import atomic_write

VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class MachineRecord:
    provider_state: str | None = None  # running, poweroff, not_created... as Vagrant last reported it
    seen_at: str | None = None  # when provider_state was read
    ssh: dict | None = None  # {"host", "port", "user", "identity_file"} from `vagrant ssh-config`
    last_provisioned: str | None = None  # ISO time of the last successful provisioning run
    revision: str | None = None  # playbook revision of that run: a git commit, "-dirty" if uncommitted changes
    definition: dict | None = None  # what the VM runs with (box, memory, cpus, address...), as of its last boot

    @classmethod
    def from_json(cls, data: dict) -> "MachineRecord":
        known = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class State:
    machines: dict[str, MachineRecord] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)  # keys owned by other features, kept verbatim

    def machine(self, name: str) -> MachineRecord:
        return self.machines.setdefault(name, MachineRecord())

    def record_seen(self, name: str, provider_state: str) -> None:
        rec = self.machine(name)
        rec.provider_state = provider_state
        rec.seen_at = now_iso()
        if provider_state == "not_created":
            rec.ssh = None  # a machine created again gets a new address and key

    def forget(self, name: str) -> None:
        """A destroyed machine: nothing cached about it is true any more."""
        self.machines.pop(name, None)

    def to_json(self) -> dict:
        return {**self.other, "version": VERSION,
                "machines": {name: asdict(rec) for name, rec in sorted(self.machines.items())}}


def load_state(path: str | os.PathLike) -> State:
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return State()
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("machines", {}), dict):
            raise ValueError("not a JSON object with a `machines` object")
        machines = {name: MachineRecord.from_json(rec) for name, rec in data.get("machines", {}).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise DevboxError(f"{path} is damaged: {exc}",
                          f"delete {path}; the next `devbox up` or `devbox status --refresh` rebuilds it") from None
    other = {k: v for k, v in data.items() if k not in ("machines", "version")}
    return State(machines=machines, other=other)


def save_state(path: str | os.PathLike, state: State) -> None:
    atomic_write(path, json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
