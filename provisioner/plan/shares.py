"""devbox.yml's `shared_folders`, resolved per VM for the Vagrantfile: which folders each VM gets, by which
mechanism, and the checks that need the project folder (the host folder exists, it stays inside the project).

Mechanisms need nothing in the guest beyond the box: Vagrant mounts each folder over SSH at every `vagrant up`
with the guest kernel's own 9p or virtiofs module (VirtualBox: its shared folders, with the box's guest additions).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from provisioner.config.schema import CONFIG_NAME, Config, SharedFolder
from provisioner.errors import ConfigError

# `type: auto` per provider. libvirt: virtiofs, measured in the lab (mounted, an edit readable in the guest within a
# second, gunicorn reloading from it); 9p is the fallback where virtiofsd is missing (`devbox doctor` says so). With
# either attached, libvirt cannot snapshot a running VM's memory (NO_MEMORY_SNAPSHOT below).
AUTO = {"libvirt": "virtiofs", "virtualbox": "virtualbox"}
LIBVIRT_ONLY = ("virtiofs", "9p")
# Mechanisms with which libvirt cannot snapshot the memory of a running VM (a snapshot with memory is a migration to
# a file). Measured on Debian 12 (libvirt 9.0, qemu 7.2): virtiofs, "cannot migrate domain: non-migratable device:
# .../vhost-user-fs"; 9p, qemu's own blocker while the guest has the folder mounted.
NO_MEMORY_SNAPSHOT = ("virtiofs", "9p")


@dataclass(frozen=True)
class Share:
    """One folder as one VM gets it."""
    host: str          # as written in the Vagrantfile: relative to the project folder (the Vagrantfile's), or absolute
    guest: str
    read_only: bool
    mechanism: str     # virtiofs, 9p or virtualbox

    def to_json(self) -> dict:
        return {"host": self.host, "guest": self.guest, "read_only": self.read_only, "mechanism": self.mechanism}


def mechanism(folder: SharedFolder, provider: str) -> str:
    return AUTO[provider] if folder.type == "auto" else folder.type


def mechanisms_in_use(config: Config) -> set[str]:
    """The mechanisms devbox.yml's folders use with its provider (what `devbox doctor` checks)."""
    return {mechanism(f, config.provider) for f in config.shared_folders}


def machines_sharing(config: Config, machines: Iterable, kinds: Iterable[str]) -> list[str]:
    """The VMs that get at least one folder by one of the mechanisms ``kinds`` (no filesystem check: for
    refusals)."""
    kinds = set(kinds)
    folders = [f for f in config.shared_folders if mechanism(f, config.provider) in kinds]
    return [m.name for m in machines if any(m.name in f.to or set(m.groups) & set(f.to) for f in folders)]


def resolve_shares(config: Config, project_dir: Path, machines: Iterable) -> dict[str, tuple[Share, ...]]:
    """``{vm name: shares}`` for every machine (``name`` and ``groups`` attributes); every problem is reported at
    once as a ConfigError naming devbox.yml and the entry."""
    machines = list(machines)
    where_file = str(config.path or Path(project_dir) / CONFIG_NAME)
    problems: list[str] = []
    names = {m.name for m in machines}
    groups = {g for m in machines for g in m.groups}
    project = Path(project_dir).resolve()
    shares: dict[str, list[Share]] = {m.name: [] for m in machines}
    for folder in config.shared_folders:
        found = len(problems)
        unknown = [n for n in folder.to if n not in names and n not in groups]
        if unknown:
            problems.append(f"`{folder.where}.to` names {', '.join(unknown)}: neither a group of a VM nor a VM "
                            f"(VMs: {', '.join(sorted(names)) or 'none'})")
        kind = mechanism(folder, config.provider)
        if kind in LIBVIRT_ONLY and config.provider != "libvirt":
            problems.append(f"`{folder.where}.type` {kind} is for libvirt; with provider {config.provider} write "
                            f"`type: auto` (VirtualBox's shared folders)")
        host = Path(folder.host).expanduser()
        full = host if host.is_absolute() else project / host
        if not full.is_dir():
            what = "is not a folder" if full.exists() else "does not exist"
            problems.append(f"`{folder.where}.host` {folder.host!r} {what} ({full})")
        elif not host.is_absolute() and not _inside(full.resolve(), project):
            problems.append(f"`{folder.where}.host` {folder.host!r} leads out of the project folder through a "
                            f"symlink ({full.resolve()}): write the absolute path to share it on purpose")
        if len(problems) > found:
            continue
        share = Share(host=str(full) if host.is_absolute() else host.as_posix(), guest=folder.guest,
                      read_only=folder.read_only, mechanism=kind)
        for m in machines:
            if m.name in folder.to or set(m.groups) & set(folder.to):
                taken = [s for s in shares[m.name] if s.guest == share.guest]
                twice = [s for s in shares[m.name] if s.host == share.host]
                if taken:
                    problems.append(f"`{folder.where}.guest` {folder.guest} is already shared into {m.name} "
                                    f"from {taken[0].host}")
                elif twice:
                    # vagrant-libvirt names a share's device after its host folder: two would collide
                    problems.append(f"`{folder.where}.host` {folder.host} is already shared into {m.name} "
                                    f"(at {twice[0].guest}): share it once per VM")
                else:
                    shares[m.name].append(share)
    if problems:
        raise ConfigError(where_file, problems)
    return {name: tuple(s) for name, s in shares.items()}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents

