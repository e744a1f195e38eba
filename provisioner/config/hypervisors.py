"""devbox.yml's `hypervisors:`: the libvirt hosts devbox may spread the VMs over, and what it may use on each.

Each entry is a libvirt URI (``qemu:///system`` for this machine, ``qemu+ssh://user@host/system?keyfile=...``
for a remote one) with the memory and CPUs devbox may take there, and optionally the routed private subnet
the VMs placed there get their addresses from (derived by the plan when not given, see plan/placement.py).
Validated here; where each VM goes is decided by the plan.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

HYPERVISOR_KEYS = ("name", "uri", "memory_mb", "cpus", "subnet", "known_hosts")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
MIN_MEMORY = 128


@dataclass(frozen=True)
class Hypervisor:
    name: str           # short and unique: names the libvirt network devbox defines there (devbox-NAME)
    uri: str            # a libvirt connection URI
    memory: int         # MiB devbox may use there
    cpus: int           # CPUs devbox may use there (the most one VM may have)
    subnet: str | None = None        # routed private subnet; None: the plan derives one
    known_hosts: str | None = None   # the hypervisor's pinned SSH host key(s), for remote URIs

    @property
    def remote(self) -> "RemoteParts | None":
        return remote_parts(self.uri)


@dataclass(frozen=True)
class RemoteParts:
    """What an SSH transport URI says about how to reach the hypervisor (None fields: not given)."""
    host: str
    user: str | None
    port: int | None
    keyfile: str | None
    known_hosts: str | None


def remote_parts(uri: str) -> RemoteParts | None:
    """The SSH side of a ``qemu+ssh://``/``qemu+libssh://`` URI; None for a local or non-SSH URI."""
    parts = urlsplit(uri)
    if "ssh" not in parts.scheme or not parts.hostname:
        return None
    query = parse_qs(parts.query)
    return RemoteParts(host=parts.hostname, user=parts.username, port=parts.port,
                       keyfile=(query.get("keyfile") or [None])[0],
                       known_hosts=(query.get("known_hosts") or [None])[0])


def default_name(uri: str) -> str:
    """``local`` for a URI without a host, else the host's first label (hv1.example.org: hv1)."""
    host = urlsplit(uri).hostname
    if not host:
        return "local"
    try:
        ipaddress.ip_address(host)
        label = host.replace(".", "-").replace(":", "-")
    except ValueError:
        label = host.split(".")[0]
    return re.sub(r"[^a-z0-9-]", "-", label.lower()).strip("-")[:31] or "hypervisor"


def parse_hypervisors(value: Any, network: str | None) -> tuple[tuple[Hypervisor, ...], list[str]]:
    """The `hypervisors:` list, and every problem with it (``network``: the development network, which no
    hypervisor subnet may overlap)."""
    if value is None:
        return (), []
    if not isinstance(value, list) or not value:
        return (), ["`hypervisors` must be a non-empty list of mappings with `uri`, `memory_mb` and `cpus` "
                    "(e.g. `- {uri: qemu+ssh://root@hv1/system, memory_mb: 16384, cpus: 8}`)"]
    problems: list[str] = []
    found: list[Hypervisor] = []
    for index, entry in enumerate(value):
        where = f"hypervisors[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"`{where}` must be a mapping (keys: {', '.join(HYPERVISOR_KEYS)})")
            continue
        before = len(problems)
        for key in entry:
            if key not in HYPERVISOR_KEYS:
                problems.append(f"unknown key `{where}.{key}` (known: {', '.join(HYPERVISOR_KEYS)})")
        uri = entry.get("uri")
        if not (isinstance(uri, str) and re.match(r"^[a-z][a-z0-9+]*://", uri) and not any(c.isspace() for c in uri)):
            problems.append(f"`{where}.uri` must be a libvirt connection URI such as qemu:///system or "
                            f"qemu+ssh://root@hv1/system (got {uri!r})")
            uri = None
        for key, least in (("memory_mb", MIN_MEMORY), ("cpus", 1)):
            number = entry.get(key)
            if not (isinstance(number, int) and not isinstance(number, bool) and number >= least):
                unit = "MiB" if key == "memory_mb" else "CPUs"
                problems.append(f"`{where}.{key}` must be a whole number of {unit} devbox may use there, "
                                f"at least {least} (got {number!r})")
        name = entry.get("name")
        if name is not None and not (isinstance(name, str) and NAME_PATTERN.match(name)):
            problems.append(f"`{where}.name` must be 1-31 lower-case letters, digits or `-` (got {name!r})")
        subnet = entry.get("subnet")
        if subnet is not None:
            try:
                net = ipaddress.IPv4Network(str(subnet), strict=False)
                if net.num_addresses < 16:
                    problems.append(f"`{where}.subnet` {subnet} is too small: use a /28 or larger")
                subnet = str(net)
            except ValueError:
                problems.append(f"`{where}.subnet` must be an IPv4 network in CIDR form like 10.231.1.0/24 "
                                f"(got {subnet!r})")
        known_hosts = entry.get("known_hosts")
        if known_hosts is not None and not (isinstance(known_hosts, str) and known_hosts.strip()):
            problems.append(f"`{where}.known_hosts` must be the path of a known_hosts file")
        parts = remote_parts(uri) if uri else None
        if parts and parts.port and (known_hosts or parts.known_hosts):
            # devbox then sets vagrant-libvirt's proxy_command (the pinned jump through the hypervisor), and
            # vagrant-libvirt 0.11 fails on a proxy_command when the URI has a port (NoMethodError in its
            # finalize_proxy_command)
            problems.append(f"`{where}.uri` names SSH port {parts.port}: vagrant-libvirt 0.11 cannot use a URI with a "
                            "port together with the pinned jump command devbox sets for it; let the hypervisor's "
                            "sshd listen on port 22 for devbox")
        if len(problems) == before and uri:
            found.append(Hypervisor(name=name or default_name(uri), uri=uri, memory=entry["memory_mb"],
                                    cpus=entry["cpus"], subnet=subnet, known_hosts=known_hosts))
    problems.extend(_cross_problems(found, network))
    return tuple(found), problems


def _cross_problems(found: list[Hypervisor], network: str | None) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for hv in found:
        if hv.name in seen:
            problems.append(f"two hypervisors are named `{hv.name}` ({seen[hv.name]} and {hv.uri}): give one a "
                            "`name` of its own")
        seen.setdefault(hv.name, hv.uri)
    uris = [hv.uri for hv in found]
    for uri in sorted({u for u in uris if uris.count(u) > 1}):
        problems.append(f"hypervisor {uri} is listed twice")
    subnets = [(hv.name, ipaddress.IPv4Network(hv.subnet)) for hv in found if hv.subnet]
    for i, (name, net) in enumerate(subnets):
        for other, net2 in subnets[i + 1:]:
            if net.overlaps(net2):
                problems.append(f"the subnets of hypervisors {name} ({net}) and {other} ({net2}) overlap: each "
                                "hypervisor needs a routed subnet of its own")
        if network and net.overlaps(ipaddress.IPv4Network(network, strict=False)):
            problems.append(f"the subnet of hypervisor {name} ({net}) overlaps the development network {network}")
    return problems
