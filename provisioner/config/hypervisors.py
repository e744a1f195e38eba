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

from provisioner.config.entries import Key, check_entries, is_int, is_text

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


URI_PATTERN = re.compile(r"[a-z][a-z0-9+]*://\S*")   # whole value (fullmatch): no blank, no line break
HYPERVISOR_KEYS = (
    Key("name", "1-31 lower-case letters, digits or `-`",
        lambda v: isinstance(v, str) and bool(NAME_PATTERN.fullmatch(v))),
    Key("uri", "a libvirt connection URI such as qemu:///system or qemu+ssh://root@hv1/system",
        lambda v: isinstance(v, str) and bool(URI_PATTERN.fullmatch(v)), required=True),
    Key("memory_mb", f"a whole number of MiB devbox may use there, at least {MIN_MEMORY}",
        lambda v: is_int(v, MIN_MEMORY), required=True),
    Key("cpus", "a whole number of CPUs devbox may use there, at least 1", lambda v: is_int(v, 1), required=True),
    Key("subnet", "an IPv4 network in CIDR form like 10.231.1.0/24", lambda v: _network(v) is not None),
    Key("known_hosts", "the path of a known_hosts file", is_text),
)
EXAMPLE = "e.g. `- {uri: qemu+ssh://root@hv1/system, memory_mb: 16384, cpus: 8}`"


def parse_hypervisors(value: Any, network: str | None) -> tuple[tuple[Hypervisor, ...], list[str]]:
    """The `hypervisors:` list, and every problem with it (``network``: the development network, which no
    hypervisor subnet may overlap)."""
    entries, problems = check_entries(value, "hypervisors", HYPERVISOR_KEYS, what="hypervisors", example=EXAMPLE,
                                      non_empty=True)
    found: list[Hypervisor] = []
    for entry in entries:
        where = entry.where
        before = len(problems)
        subnet = None
        if entry.get("subnet") is not None and entry.ok("subnet"):
            net = _network(entry.get("subnet"))
            if net.num_addresses < 16:
                problems.append(f"`{where}.subnet` {entry.get('subnet')} is too small: use a /28 or larger")
            subnet = str(net)
        uri, known_hosts = entry.get("uri"), entry.get("known_hosts")
        parts = remote_parts(uri) if entry.ok("uri") else None
        if parts and parts.port and (known_hosts or parts.known_hosts):
            # devbox then sets vagrant-libvirt's proxy_command (the pinned jump through the hypervisor), and
            # vagrant-libvirt 0.11 fails on a proxy_command when the URI has a port (NoMethodError in its
            # finalize_proxy_command)
            problems.append(f"`{where}.uri` names SSH port {parts.port}: vagrant-libvirt 0.11 cannot use a URI with a "
                            "port together with the pinned jump command devbox sets for it; let the hypervisor's "
                            "sshd listen on port 22 for devbox")
        if entry.clean and len(problems) == before:
            found.append(Hypervisor(name=entry.get("name") or default_name(uri), uri=uri,
                                    memory=entry.get("memory_mb"), cpus=entry.get("cpus"), subnet=subnet,
                                    known_hosts=known_hosts))
    problems.extend(_cross_problems(found, network))
    return tuple(found), problems


def _network(value: Any) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return None


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
