"""Gathering parity facts: the read-only playbook ``data/parity_facts.yml`` through the PlaybookRunner.

Against the development inventory and against a reference environment's inventory. A reference inventory is
read from a copy without its vault-encrypted files: fact gathering needs no secret, and Ansible stops with
"Attempting to decrypt but no vault secrets found" on a whole-file vault even when nothing reads it (inline
``!vault`` values are only decrypted when used, so they stay).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml

from provisioner import DATA_DIR
from provisioner.errors import DevboxError
from provisioner.parity.compare import HostProfile, Unreachable, build_profile, collect_facts
from provisioner.parity.scan import Managed
from provisioner.adapters.playbook_runner import PlaybookRunner

FACTS_PLAYBOOK = DATA_DIR / "parity_facts.yml"
VAULT_HEADER = b"$ANSIBLE_VAULT"
MIN_FORKS = 5


def is_vault_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(VAULT_HEADER)) == VAULT_HEADER


def readable_inventory_copy(source: Path, dest: Path) -> Path:
    """Copy the inventory ``source`` (a folder, or a file with its ``group_vars``/``host_vars`` beside it) to
    ``dest`` without vault-encrypted files; returns the path to give Ansible. ``dest`` is replaced."""
    source = Path(source)
    if not source.exists():
        raise DevboxError(f"inventory {source} does not exist", "check the inventory path in devbox.yml")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)

    def skip_vault(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if (Path(folder) / n).is_file() and is_vault_file(Path(folder) / n)]

    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True, ignore=skip_vault)
        return dest
    if is_vault_file(source):
        raise DevboxError(f"inventory {source} is vault-encrypted as a whole",
                          "keep hosts and groups in a plain file; only variables belong in vault files")
    shutil.copy2(source, dest / source.name)
    for sub in ("group_vars", "host_vars"):
        if (source.parent / sub).is_dir():
            shutil.copytree(source.parent / sub, dest / sub, ignore=skip_vault)
    return dest / source.name


def inventory_all_vars(inventory: Path) -> dict:
    """The non-secret variables of group ``all`` (``group_vars/all.yml`` or ``group_vars/all/*.yml``).

    Only used to resolve names in the playbooks (e.g. the list of operator accounts); vault files are skipped.
    """
    base = Path(inventory) if Path(inventory).is_dir() else Path(inventory).parent
    folder = base / "group_vars"
    files = [folder / f"all{ext}" for ext in (".yml", ".yaml")]
    if (folder / "all").is_dir():
        files += sorted(p for p in (folder / "all").iterdir() if p.suffix in (".yml", ".yaml"))
    merged: dict = {}
    for f in files:
        if f.is_file() and not is_vault_file(f):
            try:
                data = yaml.load(f.read_text(encoding="utf-8"), Loader=_PlainLoader)
            except yaml.YAMLError:
                continue  # Ansible reports a broken vars file itself when the facts run reads the inventory
            if isinstance(data, dict):
                merged.update(data)
    return merged


class _PlainLoader(yaml.SafeLoader):
    pass


_PlainLoader.add_multi_constructor("", lambda loader, suffix, node: None)  # `!vault` values: never needed here


@dataclass(frozen=True)
class Gathered:
    profiles: dict[str, HostProfile]
    unreachable: tuple[Unreachable, ...]


def gather(runner: PlaybookRunner, *, inventory: Path, managed: Managed, side: str, hosts: Sequence[str] = (),
           roles: Mapping[str, Sequence[str]] | None = None, limit: str | None = None,
           progress: Callable[[str, str], None] | None = None) -> Gathered:
    """Run the facts playbook once over ``inventory``; one profile per host that answered, and why the others
    did not. ``roles`` (devbox's own record for VMs) is used instead of a record on the host."""
    events: list[Mapping] = []
    result = runner.run(playbook=FACTS_PLAYBOOK, inventory=inventory, forks=max(MIN_FORKS, len(hosts)),
                        limit=limit, extravars={"parity_users": sorted(managed.users),
                                                "parity_groups": sorted(managed.groups)},
                        on_progress=(lambda host, task: progress(host, f"parity: {task}")) if progress else None,
                        on_event=events.append)
    raw = collect_facts(events)
    roles = roles or {}
    profiles, unreachable = {}, []
    for host, facts in sorted(raw.items()):
        if facts.error:
            unreachable.append(Unreachable(host, side, facts.error))
        else:
            profiles[host] = build_profile(facts, roles=roles.get(host))
    for failure in result.failures:
        if failure.host not in raw:
            unreachable.append(Unreachable(failure.host, side, failure.message))
    for host in hosts:
        if host not in raw and not any(u.host == host for u in unreachable):
            unreachable.append(Unreachable(host, side, f"no facts came back (see {result.log_path})"))
    return Gathered(profiles, tuple(unreachable))
