"""Which VM runs on which hypervisor, and the routed subnet of each hypervisor (devbox.yml `hypervisors:`).

Pure: the topology's VMs, the hypervisors devbox.yml lists and the previous plan (``.devbox/plan.json``) in,
a placement out. Rules, in this order:
- stable: a VM the previous plan placed stays on its hypervisor, with its address, as long as that hypervisor
  is still listed and still has room for it (adding a VM never moves the others; the previous plan is the
  record of where each VM is, since its disk lives there);
- new VMs, largest memory first, go where the fewest VMs of their replicated group already are (VMs with the
  same production groups are copies of one role: a failover test needs them apart), then where the most
  memory is left, then the hypervisor listed first;
- a VM that fits nowhere stops the plan with the numbers (what it needs, what each hypervisor has left).
CPUs are not summed: libvirt shares CPUs between guests; a VM may not have more vCPUs than its hypervisor
grants devbox.

Subnets: a hypervisor's own `subnet`, else the one the previous plan gave it, else a /24 of SUBNET_POOL chosen
by a hash of its name (probing on): listing one more hypervisor never moves another's subnet. A subnet never
overlaps the development network, another hypervisor's, vagrant-libvirt's management network or a production
address.
"""
from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

from provisioner.config.hypervisors import Hypervisor
from provisioner.errors import ConfigError

SUBNET_POOL = ipaddress.IPv4Network("10.231.0.0/16")
SUBNET_PREFIX = 24
# vagrant-libvirt's management network exists on every hypervisor (NAT, local to it): never routed
MANAGEMENT_NETWORK = ipaddress.IPv4Network("192.168.121.0/24")
FIRST_HOST_OCTET = 11   # as topology.py: .1 is the hypervisor's end of the routed network


@dataclass(frozen=True)
class HypervisorUse:
    """One hypervisor in the plan: what devbox may use there and what the plan puts there."""
    name: str
    uri: str
    subnet: str
    memory: int
    cpus: int
    used_memory: int
    machines: tuple[str, ...]

    @property
    def network_name(self) -> str:   # the routed libvirt network devbox defines on this hypervisor
        return f"devbox-{self.name}"

    def to_json(self) -> dict:
        return {"name": self.name, "uri": self.uri, "subnet": self.subnet, "memory": self.memory, "cpus": self.cpus,
                "used_memory": self.used_memory, "machines": list(self.machines)}

    @classmethod
    def from_json(cls, data: Mapping) -> "HypervisorUse":
        return cls(name=data["name"], uri=data["uri"], subnet=data["subnet"], memory=int(data["memory"]),
                   cpus=int(data["cpus"]), used_memory=int(data["used_memory"]), machines=tuple(data["machines"]))


@dataclass(frozen=True)
class Previous:
    """What the previous plan said: each VM's hypervisor and address, each hypervisor's subnet."""
    machines: Mapping[str, tuple[str, str]]
    subnets: Mapping[str, str]

    @classmethod
    def empty(cls) -> "Previous":
        return cls({}, {})


def hypervisor_subnets(hypervisors: Sequence[Hypervisor], network: str, production: Iterable[ipaddress.IPv4Address],
                       previous: Mapping[str, str], where: str) -> tuple[dict[str, str], list[str]]:
    """Each hypervisor's routed subnet, and warnings (a given subnet that holds production addresses)."""
    production = list(production)
    avoid = [ipaddress.IPv4Network(network, strict=False), MANAGEMENT_NETWORK]
    taken: list[ipaddress.IPv4Network] = [ipaddress.IPv4Network(h.subnet) for h in hypervisors if h.subnet]
    result: dict[str, str] = {}
    warnings: list[str] = []

    def free(net: ipaddress.IPv4Network) -> bool:
        return (not any(net.overlaps(o) for o in avoid + taken) and not any(a in net for a in production))

    for hv in hypervisors:
        if hv.subnet:
            result[hv.name] = hv.subnet
            inside = sum(1 for a in production if a in ipaddress.IPv4Network(hv.subnet))
            if inside:
                warnings.append(f"the subnet of hypervisor {hv.name} ({hv.subnet}) holds the addresses of {inside} "
                                "production host(s): give it another `subnet` in devbox.yml (or leave it out: "
                                "devbox picks a free one)")
    candidates = list(SUBNET_POOL.subnets(new_prefix=SUBNET_PREFIX))
    for hv in hypervisors:
        if hv.subnet:
            continue
        before = previous.get(hv.name)
        chosen = None
        if before:
            net = ipaddress.IPv4Network(before)
            if free(net):
                chosen = net
        if chosen is None:
            start = zlib.crc32(hv.name.encode()) % len(candidates)
            chosen = next((c for i in range(len(candidates))
                           if free(c := candidates[(start + i) % len(candidates)])), None)
        if chosen is None:
            raise ConfigError(where, [f"no free /{SUBNET_PREFIX} left in {SUBNET_POOL} for hypervisor {hv.name}"],
                              hint="give it a `subnet` in devbox.yml")
        taken.append(chosen)
        result[hv.name] = str(chosen)
    return result, warnings


def place(machines: Sequence, hypervisors: Sequence[Hypervisor], subnets: Mapping[str, str], previous: Previous,
          where: str) -> tuple[tuple, tuple[HypervisorUse, ...], list[str]]:
    """``machines`` (MachineSpec) with their hypervisor and address set, the use of each hypervisor, warnings.
    Raises ConfigError with the numbers when a VM fits on no hypervisor."""
    by_name = {h.name: h for h in hypervisors}
    order = {h.name: i for i, h in enumerate(hypervisors)}
    left = {h.name: h.memory for h in hypervisors}
    chosen: dict[str, str] = {}
    address: dict[str, str] = {}
    replicas: dict[tuple[str, tuple[str, ...]], int] = {}
    warnings: list[str] = []

    def put(machine, hv_name: str) -> None:
        chosen[machine.name] = hv_name
        left[hv_name] -= machine.memory
        key = (hv_name, machine.groups)
        replicas[key] = replicas.get(key, 0) + 1

    moved = []
    for m in machines:
        before = previous.machines.get(m.name)
        if not before:
            continue
        hv = by_name.get(before[0])
        if hv and left[hv.name] >= m.memory and m.cpus <= hv.cpus:
            put(m, hv.name)
            net = ipaddress.IPv4Network(subnets[hv.name])
            if _usable(before[1], net):
                address[m.name] = before[1]
        else:
            moved.append(f"{m.name} (was on {before[0]})")
    if moved:
        warnings.append(f"VMs placed again because their hypervisor is gone or has no room for them any more (their "
                        f"disks stay where they were until `devbox destroy`): {', '.join(moved)}")

    homeless = []
    rest = sorted((m for m in machines if m.name not in chosen), key=lambda m: -m.memory)  # stable: plan order ties
    for m in rest:
        fits = [h for h in hypervisors if left[h.name] >= m.memory and m.cpus <= h.cpus]
        if not fits:
            homeless.append(m)
            continue
        best = min(fits, key=lambda h: (replicas.get((h.name, m.groups), 0), -left[h.name], order[h.name]))
        put(m, best.name)
    if homeless:
        need = sum(m.memory for m in machines)
        give = sum(h.memory for h in hypervisors)
        problems = [f"the {len(machines)} VMs need {need} MiB together; the hypervisors give {give} MiB ("
                    + ", ".join(f"{h.name} {h.memory} MiB, {_cpus(h.cpus)}" for h in hypervisors) + ")"]
        for m in homeless:
            problems.append(f"VM {m.name} ({m.memory} MiB, {_cpus(m.cpus)}) fits on no hypervisor: "
                            + ", ".join(f"{h.name} has {left[h.name]} MiB left" +
                                        (f" and grants {_cpus(h.cpus)}" if m.cpus > h.cpus else "")
                                        for h in hypervisors))
        raise ConfigError(where, problems, hint="raise `memory_mb` of a hypervisor or list another one under "
                          "`hypervisors`, or collapse more hosts with `ignore_groups`/`groups` rules")

    for h in hypervisors:
        net = ipaddress.IPv4Network(subnets[h.name])
        used = {address[n] for n in address if chosen[n] == h.name}
        mine = [m for m in machines if chosen[m.name] == h.name]
        free = (str(a) for a in _hosts(net) if str(a) not in used)
        for m in mine:
            if m.name in address:
                continue
            nxt = next(free, None)
            if nxt is None:
                room = len(_hosts(net))
                raise ConfigError(where, [f"hypervisor {h.name}'s subnet {net} has room for {room} VMs from "
                                          f".{FIRST_HOST_OCTET} up, the plan puts {len(mine)} there"],
                                  hint=f"give hypervisor {h.name} a larger `subnet` (e.g. a /22)")
            address[m.name] = nxt
    groups: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for m in machines:
        if m.groups:
            groups.setdefault(m.groups, {}).setdefault(chosen[m.name], []).append(m.name)
    for spread in groups.values():
        if len(spread) < len(hypervisors):   # a hypervisor holds none of these copies while one holds two
            for hv_name, names in spread.items():
                if len(names) > 1:
                    warnings.append(f"{', '.join(names)} (copies of one role) share hypervisor {hv_name}: no other "
                                    "hypervisor had room for them when they were placed")
    placed = tuple(replace(m, hypervisor=chosen[m.name], address=address[m.name]) for m in machines)
    uses = tuple(HypervisorUse(name=h.name, uri=h.uri, subnet=subnets[h.name], memory=h.memory, cpus=h.cpus,
                               used_memory=h.memory - left[h.name],
                               machines=tuple(m.name for m in machines if chosen[m.name] == h.name))
                 for h in hypervisors)
    return placed, uses, warnings


def _hosts(net: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    first = int(net.network_address) + FIRST_HOST_OCTET
    last = int(net.broadcast_address) - 1
    return [ipaddress.IPv4Address(i) for i in range(first, last + 1)]


def _usable(text: str, net: ipaddress.IPv4Network) -> bool:
    try:
        a = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return a in net and int(net.network_address) + FIRST_HOST_OCTET <= int(a) < int(net.broadcast_address)


def _cpus(n: int) -> str:
    return f"{n} CPU" + ("" if n == 1 else "s")
