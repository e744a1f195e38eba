"""Each VM's name on this machine: `<vm>.<domain>` at its address on the development network, the URLs of the
smoke checks it serves, and the hosts block that makes the names resolve (`devbox hosts`).

The addresses are the plan's (``.devbox/plan.json``, what the Vagrantfile gives each VM); nothing here asks a
VM or Vagrant. The domain is devbox.yml's ``names: {domain: ...}`` (default ``devbox.test``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from provisioner.config.schema import Config
from provisioner.config.smoke import PLACEHOLDER
from provisioner.machines import hosts_file
from provisioner.plan.planning import load_plan
from provisioner.project.context import Project


@dataclass(frozen=True)
class SmokeUrl:
    check: str     # the smoke check's name
    url: str       # as a browser on this machine opens it: the VM's name in place of its address

    def to_json(self) -> dict:
        return {"check": self.check, "url": self.url}


@dataclass(frozen=True)
class MachineName:
    vm: str
    address: str               # on the development network (the plan's, the Vagrantfile's)
    fqdn: str                  # <vm>.<domain>
    urls: tuple[SmokeUrl, ...] = ()


def fqdn(vm: str, domain: str) -> str:
    return f"{vm}.{domain}".lower()


def machine_names(topology, config: Config) -> list[MachineName]:
    """Per VM of the plan: its address, its name and the smoke checks' URLs it serves."""
    addresses = {m.name: m.address for m in topology.machines}
    names = {m.name: fqdn(m.name, config.domain) for m in topology.machines}
    urls: dict[str, list[SmokeUrl]] = {n: [] for n in addresses}
    for check in config.extensions.get("smoke") or ():
        served = serving_url(check["http"], addresses, names)
        if served is not None:
            urls[served[0]].append(SmokeUrl(check["name"], served[1]))
    return [MachineName(vm=n, address=a, fqdn=names[n], urls=tuple(urls[n])) for n, a in addresses.items()]


def serving_url(url: str, addresses: Mapping[str, str], names: Mapping[str, str]) -> tuple[str, str] | None:
    """(the VM that serves ``url``, the URL with the VM's name as its host), or None when the URL's host is not a
    VM (loopback, another host) or names a machine the plan does not have.

    The host may be ``{VM}`` (the smoke checks' placeholder for a VM's address), the VM's address, its name or
    its full name; other ``{VM}`` placeholders (in the path or query) become addresses, as the check sends them."""
    parts = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", url, re.S)
    if parts is None:
        return None
    scheme, authority, tail = parts.groups()
    userinfo, at, hostport = authority.rpartition("@")
    host = re.sub(r":\d*$", "", hostport)
    match = PLACEHOLDER.fullmatch(host)
    if match:
        vm = match.group(1) if match.group(1) in addresses else None
    else:
        by_host = {**{a: n for n, a in addresses.items()}, **{n: n for n in addresses},
                   **{f: n for n, f in names.items()}}
        vm = by_host.get(host) or by_host.get(host.lower())
    if vm is None or any(m.group(1) not in addresses for m in PLACEHOLDER.finditer(tail)):
        return None
    tail = PLACEHOLDER.sub(lambda m: addresses[m.group(1)], tail)
    return vm, f"{scheme}{userinfo}{at}{names[vm]}{hostport[len(host):]}{tail}"


# --- the hosts block ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostsBlock:
    label: str                 # what the begin and end lines name: the project's folder
    entries: tuple[hosts_file.HostsEntry, ...]
    comment: str

    @property
    def text(self) -> str:
        return hosts_file.render_block(self.label, self.entries, self.comment)


@dataclass(frozen=True)
class HostsResult:
    block: HostsBlock
    write: hosts_file.HostsWrite | None = None     # None: printed only
    others: tuple[str, ...] = ()                   # other devbox projects' blocks in the file
    given_elsewhere: tuple[str, ...] = ()          # names of this block the file also gives outside it


def hosts_block(project: Project) -> HostsBlock:
    """This project's block: one line per VM of the plan, `ADDRESS  <vm>.<domain>`."""
    named = machine_names(load_plan(project.paths.root), project.config())
    entries = tuple(hosts_file.HostsEntry(m.address, (m.fqdn,)) for m in named)
    return HostsBlock(label=hosts_file.project_label(project.paths.root), entries=entries,
                      comment="the development VMs of this folder; `devbox hosts --remove` takes this block out")


def write_hosts(project: Project, path: Path | None = None) -> HostsResult:
    """Put this project's block into the hosts file (default /etc/hosts), replacing only its own old block."""
    block = hosts_block(project)
    path = Path(path) if path else hosts_file.DEFAULT_HOSTS
    before = hosts_file.read_hosts(path)
    write = hosts_file.put_block(path, block.label, block.entries, block.comment)
    ours = {n for e in block.entries for n in e.names}
    return HostsResult(block=block, write=write, others=tuple(hosts_file.other_blocks(before, block.label)),
                       given_elsewhere=tuple(sorted(ours & hosts_file.names_in(before, block.label))))


def remove_hosts(project: Project, path: Path | None = None) -> HostsResult:
    """Take this project's block out of the hosts file (default /etc/hosts); nothing else changes. Needs no
    plan: the block is found by the project's folder."""
    label = hosts_file.project_label(project.paths.root)
    path = Path(path) if path else hosts_file.DEFAULT_HOSTS
    return HostsResult(block=HostsBlock(label=label, entries=(), comment=""),
                       write=hosts_file.take_block(path, label))
