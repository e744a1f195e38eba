"""From production hosts to development VMs: the mapping every later command stands on.

Hosts with the same set of role groups collapse into one VM (environment/location marker groups can be ignored
by rule); per-group rules in devbox.yml change the count, split by a host variable, size or exclude. The
result is deterministic: the same inventory and rules always give the same names and addresses.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import re
import shlex
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from provisioner.config.schema import Config, GroupRule
from provisioner.errors import ConfigError, DevboxError
from provisioner.plan.hostvars import HOST_INLINE, HostVariables, Resolved, differing
from provisioner.plan.inventory import Host, Inventory, VaultValue
from provisioner.plan.placement import HypervisorUse, Previous, hypervisor_subnets, place

# Connection variables describe how production is reached; they never reach the development inventory
# (devbox writes its own connection details per VM).
CONNECTION_VARS = frozenset({
    "ansible_host", "ansible_port", "ansible_user", "ansible_connection", "ansible_password", "ansible_pass",
    "ansible_private_key_file", "ansible_become_password", "ansible_become_pass", "ansible_sudo_pass",
    "ansible_sudo_password", "ansible_su_pass", "ansible_su_password", "ansible_jump_host",
})
CONNECTION_PREFIXES = ("ansible_ssh_", "ansible_winrm_", "ansible_psrp_", "ansible_paramiko_", "ansible_libssh_",
                       "ansible_docker_", "ansible_kubectl_")
MARKER_GROUPS = ("all", "ungrouped")
# the class of the hosts that are in groups, but only in environment groups or ignored ones: they have no role
# group, yet are not hosts in no group either (a name no inventory group can have: it has a space)
ONLY_IGNORED = frozenset({" only environment or ignored groups"})
FIRST_HOST_OCTET = 11   # .1 is the gateway on Vagrant/libvirt networks; leave the low addresses to them
HOSTNAME_MAX = 63


def is_connection_var(name: str) -> bool:
    return name in CONNECTION_VARS or name.startswith(CONNECTION_PREFIXES)


def strip_connection_vars(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if not is_connection_var(k)}


@dataclass(frozen=True)
class MachineSpec:
    name: str
    hostname: str
    groups: tuple[str, ...]          # production groups the VM joins directly (union over the hosts it stands for)
    represents: tuple[str, ...]      # production host names, inventory order
    memory: int                      # MiB
    cpus: int
    address: str                     # static private-network IPv4 address
    host_vars: Mapping[str, Any] = field(default_factory=dict)
    hypervisor: str | None = None    # with `hypervisors:` in devbox.yml: the one this VM runs on

    def to_json(self) -> dict:
        data = {"name": self.name, "hostname": self.hostname, "groups": list(self.groups),
                "represents": list(self.represents), "memory": self.memory, "cpus": self.cpus,
                "address": self.address}
        if self.hypervisor is not None:
            data["hypervisor"] = self.hypervisor
        return data


@dataclass(frozen=True)
class Excluded:
    host: str
    reason: str


@dataclass(frozen=True)
class Topology:
    machines: tuple[MachineSpec, ...]
    excluded: tuple[Excluded, ...] = ()
    warnings: tuple[str, ...] = ()
    group_tree: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # production addresses (hosts named by IP, ansible_host values): never written, see ``redacted``
    private_names: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    hypervisors: tuple[HypervisorUse, ...] = ()   # with `hypervisors:` in devbox.yml: the placement's totals

    def redacted(self) -> "Topology":
        """The topology as devbox writes it (Vagrantfile, development inventory, plan.json): every production
        address in host names and messages replaced by ``address-named-host-N`` (N: the host's place among
        them), which says nothing about the address."""
        if not self.private_names:
            return self
        tokens = {a: f"address-named-host-{i}" for i, a in enumerate(sorted(self.private_names, key=_address_key), 1)}
        pattern = re.compile(r"(?<![\w.:])(" + "|".join(re.escape(a) for a in sorted(tokens, key=len, reverse=True))
                             + r")(?![\w:]|\.\d)")

        def text(value: str) -> str:
            return pattern.sub(lambda m: tokens[m.group(1)], value)

        return replace(self, machines=tuple(replace(m, represents=tuple(text(h) for h in m.represents))
                                            for m in self.machines),
                       excluded=tuple(Excluded(text(e.host), text(e.reason)) for e in self.excluded),
                       warnings=tuple(text(w) for w in self.warnings), private_names=frozenset())

    def machine(self, name: str) -> MachineSpec:
        for m in self.machines:
            if m.name == name:
                return m
        raise DevboxError(f"no VM named {name!r} in the plan",
                          f"VMs in the plan: {', '.join(m.name for m in self.machines) or 'none'}")

    def to_json(self) -> dict:
        """The `devbox plan --json` contract."""
        data = {"machines": [m.to_json() for m in self.machines],
                "excluded": [{"host": e.host, "reason": e.reason} for e in self.excluded],
                "warnings": list(self.warnings)}
        if self.hypervisors:
            data["hypervisors"] = [h.to_json() for h in self.hypervisors]
        return data

    def to_state(self) -> dict:
        """Everything later commands need (``.devbox/plan.json``), a superset of ``to_json``."""
        data = self.to_json()
        for entry, machine in zip(data["machines"], self.machines):
            entry["host_vars"] = _jsonable(machine.host_vars)
        data["group_tree"] = _jsonable(self.group_tree)
        return data

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> "Topology":
        machines = tuple(
            MachineSpec(name=m["name"], hostname=m["hostname"], groups=tuple(m["groups"]),
                        represents=tuple(m["represents"]), memory=int(m["memory"]), cpus=int(m["cpus"]),
                        address=m["address"], host_vars=_from_jsonable(m.get("host_vars", {})),
                        hypervisor=m.get("hypervisor"))
            for m in data["machines"])
        excluded = tuple(Excluded(e["host"], e["reason"]) for e in data.get("excluded", ()))
        return cls(machines=machines, excluded=excluded, warnings=tuple(data.get("warnings", ())),
                   group_tree=dict(data.get("group_tree", {})),
                   hypervisors=tuple(HypervisorUse.from_json(h) for h in data.get("hypervisors", ())))

    def previous_placement(self) -> Previous:
        """Where this plan put each VM and what subnet each hypervisor had: what the next plan keeps."""
        return Previous({m.name: (m.hypervisor, m.address) for m in self.machines if m.hypervisor},
                        {h.name: h.subnet for h in self.hypervisors})


def derive_topology(inventory: Inventory, config: Config, variables: HostVariables | None = None,
                    previous: Previous | None = None) -> Topology:
    """The VMs for ``inventory`` by ``config``'s rules; ``variables`` resolves hosts' variables (group_vars and
    host_vars beside the inventory and the playbook), built from the inventory side alone when not given.
    With `hypervisors:` in devbox.yml each VM is placed on one (``previous``: the last plan's placement, kept)."""
    variables = variables or HostVariables(inventory)
    dropped = environment_groups(inventory, config) - set(config.keep_environment_groups)
    ignored = set(config.ignore_groups) | set(MARKER_GROUPS) | dropped
    warnings: list[str] = [f"Ansible: {w}" for w in inventory.warnings]
    excluded: list[Excluded] = []
    classes: dict[frozenset[str], list[Host]] = {}
    ungrouped: list[str] = []
    only_ignored: list[Host] = []   # hosts whose every group is an environment group or ignored
    opaque: set[str] = set()

    for host in inventory.hosts.values():
        resolved = variables.resolve(host)
        opaque.update(resolved.opaque)
        reason = _exclusion_reason(host, config, resolved)
        if reason:
            excluded.append(Excluded(host.name, reason))   # shown once, with its reason, among the exclusions
            continue
        if not host.groups:
            ungrouped.append(host.name)
        signature = frozenset(host.all_groups - ignored)
        if host.groups and not signature:   # in groups, but only ones no VM joins: not a host in no group
            signature = ONLY_IGNORED
            only_ignored.append(host)
        classes.setdefault(signature, []).append(host)
    if ungrouped:
        warnings.append(f"hosts in no group (only plays for `all` reach them): {', '.join(ungrouped)}")
    if opaque:
        shown = sorted(opaque)
        warnings.append(f"{len(shown)} vars file(s) are vault-encrypted as a whole, so devbox cannot know the variables "
                        f"they set (connection type, differences between hosts): {summarize_names(shown)}")

    unknown_rules = sorted(set(config.groups) - set(inventory.groups))
    if unknown_rules:
        warnings.append(f"devbox.yml has rules for groups the inventory does not define: {', '.join(unknown_rules)}")
    unmatched = [p for p in config.include_hosts if not any(fnmatch.fnmatchcase(h, p) for h in inventory.hosts)]
    if unmatched:
        warnings.append(f"include_hosts names no host of the inventory: {', '.join(unmatched)}")
    unknown_ignored = sorted(set(config.ignore_groups) - set(inventory.groups))
    if unknown_ignored:
        warnings.append(f"ignore_groups names groups the inventory does not define: {', '.join(unknown_ignored)}")

    planned: list[tuple[str, list[Host], int, int]] = []   # (name, hosts, memory, cpus)
    base_names = _base_names(classes, inventory, ignored)
    for signature, hosts in classes.items():
        rules = [config.rule(g) for g in sorted(signature) if g in config.groups]
        memory = max([r.memory for r in rules if r.memory] or [config.memory])
        cpus = max([r.cpus for r in rules if r.cpus] or [config.cpus])
        count = max([r.count for r in rules if r.count] or [1])
        distinct = sorted({r.keep_distinct for r in rules if r.keep_distinct})
        base = base_names[signature]
        for suffix, subset in _split_distinct(hosts, distinct, variables):
            name = f"{base}-{suffix}" if suffix else base
            chunks = _chunks(subset, count)
            for index, chunk in enumerate(chunks, start=1):
                if suffix and len(chunks) == 1:
                    planned.append((name, chunk, memory, cpus))
                else:
                    planned.append((f"{name}-{index}", chunk, memory, cpus))

    wanted = [_truncate(n) for n, *_ in planned]
    names = _unique(wanted)
    for want, name, (_, hosts, *_rest) in zip(wanted, names, planned):
        if name != want:
            groups = ", ".join(sorted({g for h in hosts for g in h.groups}) or ["no group"])
            warnings.append(f"VM {name} (for {groups}) is not named {want}: another VM of the plan has that name "
                            "(group names differing only in `_`/`-`/case or a numeric suffix give the same VM name)")
    # with hypervisors, addresses come from each hypervisor's subnet (placement below), not the development network
    addresses = _addresses(config, 0 if config.hypervisors else len(planned)) or [""] * len(planned)
    overlap = hosts_reached_in(inventory, config.network, variables)
    if overlap:
        # the addresses themselves are not named: warnings reach plan.json, and production addresses never do
        warnings.append(f"the development network {config.network} holds the addresses of "
                        f"{_count(len(overlap), 'production host')}: set another `network` in devbox.yml "
                        "(`devbox init` proposes a free one)")
    machines = []
    # host-level values reach a VM only when devbox.yml asks: `host_vars: keep:`, and the keep_distinct variables
    # that tell its VMs apart (db-primary gets pg_role=primary)
    keep = set(config.keep_host_vars) | {r.keep_distinct for r in config.groups.values() if r.keep_distinct}
    in_dropped: set[str] = set()
    left_out: set[str] = set()   # host-level names no VM gets: said, so a role needing one is no surprise
    for name, (_, hosts, memory, cpus), address in zip(names, planned, addresses):
        first = hosts[0]
        differing = _differing_vars(hosts, variables)
        if differing:
            kept = [v for v in differing if v in keep]
            taken = (f"; it takes {', '.join(kept)} from {first.name} (host_vars.keep)" if kept else
                     "; the VM gets the values its groups give")
            warnings.append(f"{name} stands for {len(hosts)} hosts ({summarize_names([h.name for h in hosts])}) whose "
                            f"variables differ: {', '.join(differing)} (values not shown){taken}")
        in_dropped.update(g for h in hosts for g in h.all_groups & dropped)
        groups = sorted({g for h in hosts for g in h.groups} - dropped)
        own = variables.resolve(first).host_level
        host_vars = strip_connection_vars({k: v for k, v in own.items() if k in keep})
        left_out.update(k for h in hosts for k in variables.resolve(h).host_level
                        if k not in keep and k not in config.vars and not is_connection_var(k))
        machines.append(MachineSpec(name=name, hostname=name, groups=tuple(groups),
                                    represents=tuple(h.name for h in hosts), memory=memory, cpus=cpus,
                                    address=address, host_vars=host_vars))
    environment_only = [h for h in only_ignored if h.all_groups & dropped]
    if environment_only:
        warnings.append(_environment_only_warning(environment_only, machines, dropped))
    if left_out:
        warnings.append(f"host-level variables not copied to the VMs (production values stay in production): "
                        f"{summarize_names(sorted(left_out), 12)}; if a role needs one, keep it with `host_vars: {{keep: "
                        "[NAME]}` or give it a development value under `vars:` in devbox.yml")
    if in_dropped:
        warnings.append(f"the VMs join no environment group ({', '.join(sorted(in_dropped))}): production or staging "
                        "values in their group_vars do not apply to development, and plays that target these groups "
                        "skip the VMs; list a group under `environment_groups: keep:` in devbox.yml to join it anyway")
    if not machines:
        warnings.append("no VMs: every host is excluded (see the reasons); check the `exclude` rules in devbox.yml")
    uses: tuple[HypervisorUse, ...] = ()
    if config.hypervisors:
        where = str(config.path or "devbox.yml")
        previous = previous or Previous.empty()
        subnets, subnet_warnings = hypervisor_subnets(config.hypervisors, config.network,
                                                      production_addresses(inventory, variables), previous.subnets,
                                                      where)
        placed, uses, place_warnings = place(machines, config.hypervisors, subnets, previous, where)
        machines = list(placed)
        warnings.extend(subnet_warnings + place_warnings)
    return Topology(machines=tuple(machines), excluded=tuple(excluded), warnings=tuple(warnings),
                    group_tree=_group_tree(inventory, dropped), private_names=_private_names(inventory, variables),
                    hypervisors=uses)


# Groups that stand for an environment rather than a role: a development VM in one would get that environment's
# group_vars (its addresses, and its secrets where a vault password is configured).
_ENVIRONMENT_NAME = re.compile(r"^(.*[_-])?(production|prod|prd|live|staging|stage|stg|uat|preprod|pre[_-]prod)$",
                               re.IGNORECASE)


def environment_groups(inventory: Inventory, config: Config) -> set[str]:
    """Groups of ``inventory`` that name an environment: by name, or named as an environment in devbox.yml."""
    named = config.extensions.get("environments")
    named = set(named) if isinstance(named, Mapping) else set()
    return {g for g in inventory.groups
            if g not in MARKER_GROUPS and (_ENVIRONMENT_NAME.match(g) or g in named)}


def summarize_names(names, shown: int = 5) -> str:
    """A readable list of names even when there are thousands: the first ``shown``, then how many more."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head} and {len(names) - shown} more"


def _private_names(inventory: Inventory, variables: HostVariables) -> frozenset[str]:
    """Production addresses that may appear in names and messages: hosts named by an IP address and every
    ``ansible_host`` value (an address or a name); written files show ``address-named-host-N`` instead."""
    return frozenset(a for host in inventory.hosts.values() for a in reached_at(host, variables))


def reached_at(host: Host, variables: HostVariables) -> list[str]:
    """Where production reaches ``host``: its name when it is an IP address, and its ``ansible_host`` (or the older
    ``ansible_ssh_host``) as Ansible resolves it for the host: inline, ``[group:vars]``, group_vars and host_vars
    files beside the inventory and the playbook. Templated and local values are left out (they name no machine)."""
    found = [host.name] if _is_address(host.name) else []
    resolved = variables.resolve(host).vars
    for name in CONNECTION_ADDRESS_VARS:
        value = resolved.get(name)
        if isinstance(value, str) and value.strip() and "{{" not in value and value.strip() not in LOCAL_NAMES:
            found.append(value.strip())
    return found


CONNECTION_ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def _address_key(text: str) -> tuple:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
        return (address.version, int(address))
    except ValueError:
        return (9, text)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


INCLUDE_HINT = "list it under `include_hosts:` in devbox.yml to give it a VM anyway"


def _environment_only_warning(hosts: list[Host], machines: list[MachineSpec], dropped: set[str]) -> str:
    """Hosts in no role group, only in environment groups (and ignored ones): which VM stands for them, what
    reaches it, and what to do."""
    names = {h.name for h in hosts}
    vms = " and ".join(m.name for m in machines if names & set(m.represents))
    environment = sorted({g for h in hosts for g in h.all_groups & dropped})
    one = len(hosts) == 1
    return (f"{_count(len(hosts), 'host')} {'is' if one else 'are'} in no role group, only in environment groups "
            f"the VMs do not join ({', '.join(environment)}): {summarize_names(sorted(names))}; {vms} stands for "
            f"{'it' if one else 'them'}, and plays that name {'this host' if one else 'these hosts'} or target "
            f"{', '.join(environment)} skip it (only plays for `all` and the groups it joins reach it). For a VM of "
            f"its own, put each such host in a group named for its role in the inventory; or list "
            f"{environment[0]} under `environment_groups: keep:` in devbox.yml so that plays for it reach the VMs "
            "(its group_vars then apply to them)")


def _exclusion_reason(host: Host, config: Config, resolved: Resolved) -> str | None:
    reason = None
    if not any(fnmatch.fnmatchcase(host.name, pattern) for pattern in config.include_hosts):
        reason = _connection_reason(resolved)
    if reason:
        return reason
    for group in sorted(host.all_groups):
        if config.rule(group).exclude:
            where = "in devbox.yml" if config.path is not None else "by the rules `devbox init` proposes"
            return f"group {group} is excluded {where}"
    return None


def _connection_reason(resolved: Resolved) -> str | None:
    """Why a host's connection type (wherever Ansible would take it from) means it gets no VM."""
    variables = resolved.vars
    connection = str(variables.get("ansible_connection", "")).strip().lower()
    plugin = connection.rsplit(".", 1)[-1]   # ansible.netcommon.network_cli is network_cli
    origin = resolved.where("ansible_connection")
    where = f" (set in {origin})" if origin not in (None, HOST_INLINE) else ""
    if plugin == "local":
        return f"ansible_connection={connection}{where}: it runs on the control node, so it needs no VM; {INCLUDE_HINT}"
    if plugin in ("winrm", "psrp") or str(variables.get("ansible_shell_type", "")).lower() == "powershell":
        if plugin not in ("winrm", "psrp"):
            where = f" (ansible_shell_type=powershell, set in {resolved.where('ansible_shell_type')})"
        return (f"ansible_connection={connection or 'winrm'}{where}: a Windows host, and devbox builds Linux VMs "
                f"only; {INCLUDE_HINT}")
    if plugin in ("network_cli", "netconf", "httpapi"):
        return (f"ansible_connection={connection}{where}: a network device, not a host a Linux VM can stand for; "
                f"{INCLUDE_HINT}")
    return None


def _base_names(classes: Mapping[frozenset[str], list[Host]], inventory: Inventory,
                ignored: set[str]) -> dict[frozenset[str], str]:
    """A readable name per class: its first direct group (inventory order); all of them when that collides."""
    order = {name: i for i, name in enumerate(inventory.groups)}
    direct: dict[frozenset[str], list[str]] = {}
    for signature, hosts in classes.items():
        groups = {g for h in hosts for g in h.groups if g not in ignored or signature == ONLY_IGNORED} or set(signature)
        direct[signature] = sorted(groups, key=lambda g: (order.get(g, len(order)), g))
    first = {sig: slug(groups[0]) if groups else "ungrouped" for sig, groups in direct.items()}
    if ONLY_IGNORED in direct:   # `production-only`: the hosts that are only in production (no role group)
        first[ONLY_IGNORED] = slug("-".join(direct[ONLY_IGNORED])) + "-only"
        direct[ONLY_IGNORED] = [first[ONLY_IGNORED]]
    taken = Counter(first.values())
    names = {}
    for sig in classes:
        if taken[first[sig]] > 1 and len(direct[sig]) > 1:
            names[sig] = slug("-".join(direct[sig]))
        else:
            names[sig] = first[sig]
    return names


def _split_distinct(hosts: list[Host], variables: list[str],
                    resolver: HostVariables) -> list[tuple[str | None, list[Host]]]:
    values_of = {h.name: resolver.resolve(h).vars for h in hosts}
    variables = [v for v in variables if any(v in values_of[h.name] for h in hosts)]   # a rule on a parent may not apply
    if not variables:
        return [(None, hosts)]
    split: dict[str, list[Host]] = {}
    for host in hosts:
        values = [values_of[host.name].get(v) for v in variables]
        key = "-".join(slug(str(v)) if v is not None and not isinstance(v, VaultValue) else "unset"
                       for v in values) or "unset"
        split.setdefault(key, []).append(host)
    return list(split.items())


def _chunks(hosts: list[Host], count: int) -> list[list[Host]]:
    """``count`` contiguous, nearly equal runs of hosts (fewer when there are fewer hosts)."""
    count = min(count, len(hosts))
    size, extra = divmod(len(hosts), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        chunks.append(hosts[start:end])
        start = end
    return chunks


def _differing_vars(hosts: list[Host], variables: HostVariables) -> list[str]:
    """Variables whose values differ between the hosts (inline, group_vars or host_vars: wherever they are set)."""
    return differing(hosts, variables, skip=is_connection_var)


def slug(text: str) -> str:
    """Lower case letters, digits and hyphens: valid as a Vagrant machine name and as a host name. Accented
    letters lose their accent (``données`` → ``donnees``), other characters become hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not name:
        return "vm"
    return name if name[0].isalpha() else f"vm-{name}"


def _truncate(name: str) -> str:
    """At most ``HOSTNAME_MAX - 4`` characters (room for a ``-N`` from ``_unique``), keeping a trailing index
    (``-3``) and cutting the rest at a hyphen where that keeps most of it, not in the middle of a word."""
    limit = HOSTNAME_MAX - 4
    if len(name) <= limit:
        return name
    match = re.search(r"-\d+$", name)
    suffix = match.group(0) if match else ""
    base = name[:len(name) - len(suffix)][:limit - len(suffix)]
    cut = base.rfind("-")
    if cut >= len(base) // 2 and name[len(base)] != "-":   # the cut fell inside a word: end at the word before
        base = base[:cut]
    return base.rstrip("-") + suffix


def _unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    wanted = set(names)
    result = []
    for name in names:
        candidate, n = name, 2
        while candidate in seen or (candidate != name and candidate in wanted):
            candidate, n = f"{name}-{n}", n + 1
        seen.add(candidate)
        result.append(candidate)
    return result


def _addresses(config: Config, count: int) -> list[str]:
    network = ipaddress.IPv4Network(config.network, strict=False)
    first = int(network.network_address) + FIRST_HOST_OCTET
    last = int(network.broadcast_address) - 1
    if first + count - 1 > last:
        room = max(0, last - first + 1)
        problem = f"network {network} has room for {room} VMs from .{FIRST_HOST_OCTET} up, the plan needs {count}"
        if config.path is None:   # no devbox.yml to blame: the default network is too small for this plan
            raise DevboxError(f"there is no devbox.yml, and the development {problem}",
                              "run `devbox init`, then set a larger `network` (e.g. a /22) in devbox.yml, or collapse "
                              "more hosts with `ignore_groups`/`groups` rules")
        raise ConfigError(str(config.path),
                          [problem],
                          hint="use a larger `network`, or collapse more hosts with `ignore_groups`/`groups` rules")
    return [str(ipaddress.IPv4Address(first + i)) for i in range(count)]


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def production_addresses(inventory: Inventory, variables: HostVariables | None = None) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses production hosts are reached at (see ``reached_at``: host names that are addresses, and
    ``ansible_host`` wherever the inventory, its group_vars/host_vars or the playbook's set it). ``variables``:
    the hosts' variables the plan resolves (beside the inventory alone when not given)."""
    variables = variables or HostVariables(inventory)
    return list(dict.fromkeys(a for host in inventory.hosts.values() for a in _ipv4(reached_at(host, variables))))


def hosts_reached_in(inventory: Inventory, network: str, variables: HostVariables) -> list[str]:
    """The production hosts reached at an address in ``network`` (names only: the addresses stay unsaid)."""
    net = ipaddress.IPv4Network(network, strict=False)
    return [host.name for host in inventory.hosts.values()
            if any(address in net for address in _ipv4(reached_at(host, variables)))]


def _ipv4(values: Iterable[str]) -> list[ipaddress.IPv4Address]:
    found = []
    for value in values:
        try:
            found.append(ipaddress.IPv4Address(value.strip("[]")))
        except ValueError:
            continue
    return found


# Ranges `devbox init` tries for the development network, in order: the Vagrant convention first.
NETWORK_CHOICES = tuple(f"192.168.{n}.0/24" for n in range(56, 256)) + tuple(f"10.{n}.0.0/24" for n in range(200, 256))


def free_network(inventory: Inventory, preferred: str, variables: HostVariables | None = None) -> str:
    """``preferred`` unless production addresses lie in it; then the first of ``NETWORK_CHOICES`` none lies in."""
    addresses = production_addresses(inventory, variables)
    for candidate in (preferred, *NETWORK_CHOICES):
        net = ipaddress.IPv4Network(candidate, strict=False)
        if not any(a in net for a in addresses):
            return str(net)
    return preferred


def _group_tree(inventory: Inventory, dropped: set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """The production group tree without the ``dropped`` groups: their children hang from their parents."""
    def children(name: str, trail: frozenset[str] = frozenset()) -> list[str]:
        found: list[str] = []
        for child in inventory.groups[name].children if name in inventory.groups else ():
            if child in dropped:
                if child not in trail:
                    found.extend(children(child, trail | {child}))
            else:
                found.append(child)
        return list(dict.fromkeys(found))

    return {name: {"children": children(name), "vars": strip_connection_vars(g.vars)}
            for name, g in inventory.groups.items() if name != "ungrouped" and name not in dropped}


_VAULT_MARK = "__devbox_vault__"


def _jsonable(value: Any) -> Any:
    if isinstance(value, VaultValue):
        return {_VAULT_MARK: True}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {_VAULT_MARK}:
            return VaultValue()
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


# --- rules `devbox init` proposes for a new devbox.yml ------------------------------------------------------
_MARKER_NAME = re.compile(
    r"^(prod|production|staging|stage|stg|preprod|pre_prod|dev|development|test|testing|qa|uat|live|"
    r"(dc|az|zone|region|site|rack|datacenter|location)[-_]?[a-z0-9_-]*|[a-z]{2}-[a-z]+-\d+)$", re.IGNORECASE)
# Groups named for an environment as a prefix or suffix (`web_stg`, `db-staging`, `uat_api`): the hosts of
# another environment, or a marker, not a role.
_ENVIRONMENT_WORDS = r"(prod|production|staging|stage|stg|preprod|pre_prod|uat|qa|test|testing|dev|development|live)"
_ENVIRONMENT_AFFIX = re.compile(rf"(?:^|[_-]){_ENVIRONMENT_WORDS}(?=[_-]|$)", re.IGNORECASE)
_JUMP_NAME = re.compile(r"^(bastion|bastions|jump|jumphost|jumphosts|jump_hosts|jump-hosts|gateway_hosts)$",
                        re.IGNORECASE)
_QUORUM_NAME = re.compile(r"(etcd|zookeeper|consul|quorum|galera|raft)", re.IGNORECASE)
_ROLE_VAR = re.compile(r"^(role|[a-z0-9_]+_role)$")


@dataclass(frozen=True)
class Suggestion:
    group: str
    rule: Mapping[str, Any]     # empty for an ignore_groups entry
    reason: str


def suggest_rules(inventory: Inventory) -> tuple[tuple[Suggestion, ...], tuple[Suggestion, ...]]:
    """(ignore_groups, groups rules) worth proposing, each with the reason shown as a comment."""
    members: dict[str, list[Host]] = {}
    for host in inventory.hosts.values():
        for group in host.all_groups:
            members.setdefault(group, []).append(host)
    ignore = tuple(Suggestion(name, {}, "looks like an environment or location marker, not a role")
                   if _MARKER_NAME.match(name) else
                   Suggestion(name, {}, "named for an environment: its hosts join the VMs of their role groups")
                   for name in inventory.groups if name not in MARKER_GROUPS and (
                       _MARKER_NAME.match(name) or (_ENVIRONMENT_AFFIX.search(name)
                                                    and _environment_copy_of(name, inventory) is None
                                                    and _all_have_a_role(members.get(name, [])))))
    rules: dict[str, Suggestion] = {}
    jump_hosts = _jump_targets(inventory)
    for name, group in inventory.groups.items():
        if name in MARKER_GROUPS or any(s.group == name for s in ignore):
            continue
        if _JUMP_NAME.match(name):
            rules[name] = Suggestion(name, {"exclude": True}, "jump host: development VMs are reached directly")
            continue
        if group.hosts and set(group.hosts) <= jump_hosts:
            rules[name] = Suggestion(name, {"exclude": True},
                                     "production reaches other hosts through these (ProxyJump); VMs need no jump host")
            continue
        role = _environment_copy_of(name, inventory)
        if role is not None:
            rules[name] = Suggestion(name, {"exclude": True},
                                     f"another environment's copy of {role}: the VMs of {role} stand for it")
            continue
        hosts = members.get(name, [])
        for var in sorted({k for h in hosts for k in h.vars if _ROLE_VAR.match(k)}):
            values = {str(h.vars.get(var)) for h in hosts}
            if all(var in h.vars for h in hosts) and 2 <= len(values) <= 5:
                rules[name] = Suggestion(name, {"keep_distinct": var},
                                         f"hosts differ in {var} ({', '.join(sorted(values))}): one VM per value")
                break
        else:
            if _QUORUM_NAME.search(name) and len(hosts) >= 3:
                rules[name] = Suggestion(name, {"count": 3}, "a quorum group: three VMs keep it a real quorum")
    return ignore, tuple(rules.values())


def _environment_copy_of(name: str, inventory: Inventory) -> str | None:
    """For a group named for a non-production environment (``web_stg``, ``staging-db``), the group of the same
    role it copies (``web``, ``web_prod``, ``db``), when the inventory has one."""
    words = [m.group(1).lower() for m in _ENVIRONMENT_AFFIX.finditer(name)]
    if not words or _MARKER_NAME.match(name) or any(w in ("prod", "production", "live") for w in words):
        return None
    stem = _ENVIRONMENT_AFFIX.sub("", name).strip("_-")   # buildvm_stg_iad2 -> buildvm_iad2
    if not stem:
        return None
    wanted = {slug(stem)} | {slug(f"{stem}-{p}") for p in ("prod", "production", "live")}
    for other in inventory.groups:
        if other != name and slug(other) in wanted:
            return other
    return None


def _all_have_a_role(hosts: list[Host]) -> bool:
    """Every host is also in a group not named for an environment: ignoring environment groups leaves it a role
    (``web_stg`` under ``web``), rather than collapsing it with hosts of other roles into one VM."""
    return all(any(not (_MARKER_NAME.match(g) or _ENVIRONMENT_AFFIX.search(g)) for g in h.all_groups)
               for h in hosts)


def plan_memory(topology: Topology) -> int:
    return sum(m.memory for m in topology.machines)


def fit_budget(inventory: Inventory, config: Config, topology: Topology, limit: int, what: str,
               variables: HostVariables | None = None) -> list[str]:
    """Warnings when the VMs of ``topology`` need more than ``limit`` MiB of memory together (``what`` says whose
    limit), each followed by the rules that bring the plan under it, tried one after the other on top of each
    other: ignore environment groups, smaller VMs, then excluding the groups that make the most VMs.
    ``variables``: the hosts' variables ``topology`` was derived with (each vars file is then read once)."""
    variables = variables or HostVariables(inventory)
    needed = plan_memory(topology)
    if needed <= limit:
        return []
    warnings = [f"too big for {what}: the plan needs {_count(len(topology.machines), 'VM')} and {needed} MiB of memory, "
                f"more than {limit} MiB; rules in devbox.yml that bring it under follow"]
    steps: list[tuple[str, Config]] = []
    proposed_ignore, proposed_rules = suggest_rules(inventory)
    environment = tuple(s.group for s in proposed_ignore if s.group not in config.ignore_groups)
    copies = [s.group for s in proposed_rules if s.group not in config.groups and _environment_copy_of(s.group, inventory)]
    current = config
    if environment:
        current = replace(current, ignore_groups=tuple(current.ignore_groups) + environment)
        steps.append((f"`ignore_groups: [{', '.join(environment)}]` (environment groups)", current))
    if copies:
        current = replace(current, groups={**current.groups, **{g: GroupRule(exclude=True) for g in copies}})
        steps.append((f"`exclude: true` for {', '.join(copies)} (another environment's copies of role groups)",
                      current))
    for memory in (384, 256):
        if current.memory > memory:
            current = replace(current, memory=memory)
            steps.append((f"`defaults: {{memory: {memory}}}`", current))
            break
    result = topology
    for text, rules in steps:
        before, result = plan_memory(result), derive_topology(inventory, rules, variables)
        if plan_memory(result) >= before:
            continue   # changes nothing here (VMs already join no environment group): not worth proposing
        warnings.append(f"to fit: {text} gives {_count(len(result.machines), 'VM')}, {plan_memory(result)} MiB")
        if plan_memory(result) <= limit:
            return warnings
    excluded: list[str] = []
    roles = {name: host.all_groups - set(current.ignore_groups) for name, host in inventory.hosts.items()}
    while plan_memory(result) > limit:
        share = Counter(g for m in result.machines for g in set().union(*(roles[h] for h in m.represents)))
        biggest = [g for g, _ in share.most_common() if g not in excluded and g not in MARKER_GROUPS]
        if not biggest:
            break
        excluded.append(biggest[0])
        current = replace(current, groups={**current.groups, biggest[0]: GroupRule(exclude=True)})
        result = derive_topology(inventory, current, variables)
    if excluded and result.machines and plan_memory(result) <= limit:
        warnings.append(f"to fit: `exclude: true` for the groups that make the most VMs ({', '.join(excluded)}) gives "
                        f"{_count(len(result.machines), 'VM')}, {plan_memory(result)} MiB (their plays then have "
                        "nothing to run on: choose what you need)")
    else:
        warnings.append("to fit: no rule alone is enough; a remote hypervisor (`libvirt: {uri: ...}` in devbox.yml) "
                        "has room for more")
    return warnings


def _jump_targets(inventory: Inventory) -> set[str]:
    """Production hosts that others are reached through (ProxyJump/-J/ProxyCommand in their ssh args)."""
    by_address = {str(h.vars.get("ansible_host", h.name)): h.name for h in inventory.hosts.values()}
    by_address.update({h: h for h in inventory.hosts})
    args = [v for h in inventory.hosts.values() for k, v in h.vars.items() if k.startswith("ansible_ssh_")]
    args += [v for g in inventory.groups.values() for k, v in g.vars.items() if k.startswith("ansible_ssh_")]
    targets = set()
    for value in args:
        for match in jump_hosts_in(str(value)):
            host = match.rsplit("@", 1)[-1]
            host = host.strip("[]") if host.startswith("[") else host.split(":")[0]
            if host in by_address:
                targets.add(by_address[host])
    return targets


# ssh's options that take an argument (``man ssh``): their argument is never the destination
_SSH_ARG_OPTIONS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


def jump_hosts_in(args: str) -> list[str]:
    """The jump hosts (``[user@]host[:port]``) an ssh argument string names: ``-J``, ``-o ProxyJump=``, and the
    destination of an ``ssh`` run by ``-o ProxyCommand=`` (``ssh -W %h:%p gw``, ``ssh gw nc %h %p``)."""
    tokens = _split(args)
    found: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        option = None
        if token in ("-o", "-J") and i + 1 < len(tokens):
            i += 1
            option = tokens[i] if token == "-o" else f"ProxyJump={tokens[i]}"
        elif token.startswith(("-o", "-J")) and len(token) > 2:
            option = token[2:] if token.startswith("-o") else f"ProxyJump={token[2:]}"
        i += 1
        if option is None:
            continue
        key, value = (re.split(r"\s*=\s*|\s+", option.strip(), maxsplit=1) + [""])[:2]
        if key.lower() == "proxyjump" and value.lower() != "none":
            found += [hop for hop in value.split(",") if hop]
        elif key.lower() == "proxycommand":
            found += _proxy_command_destination(value)
    return found


def _proxy_command_destination(command: str) -> list[str]:
    words = _split(command)
    for start, word in enumerate(words):
        if word.rsplit("/", 1)[-1] != "ssh":
            continue
        hops: list[str] = []
        i = start + 1
        while i < len(words):
            word = words[i]
            if word.startswith("-") and len(word) > 1:
                if word[1] == "J":
                    hops += (word[2:] or (words[i + 1] if i + 1 < len(words) else "")).split(",")
                if word[-1] in _SSH_ARG_OPTIONS and len(word) == 2:
                    i += 1   # the option's argument
                i += 1
                continue
            return [h for h in hops if h] + [word]
        return [h for h in hops if h]
    return []


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:   # unbalanced quotes: words as they are
        return text.split()
