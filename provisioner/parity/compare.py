"""Parity: does a development VM match the hosts it stands for?

From the facts one read-only Ansible run gathers (``data/parity_facts.yml``), build a normalized profile per
host, pair each VM with the reference hosts it represents, and compare what the playbooks are responsible for:
OS release, kernel, Python, managed packages, their services, listening ports, managed users and groups, and
the roles last applied. Each difference is *expected* (declared under ``parity.expected`` in devbox.yml) or
*drift*.

Pure: works on event dicts and profiles; never runs Ansible, never imports an adapter.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from provisioner.errors import DevboxError
from provisioner.parity.scan import Managed

BASELINE_FORMAT = "devbox-parity-baseline"
BASELINE_VERSION = 1
ABSENT = "absent"
UNKNOWN = "unknown"
# Ports the kernel hands out to outgoing connections and ad-hoc listeners: they change between boots, so a
# listener there says nothing about how a host is set up.
EPHEMERAL_PORTS = range(32768, 61000)
# groups every host is in; they say nothing about a host's role
UNIVERSAL_GROUPS = frozenset({"all", "ungrouped"})
# the record devbox's runs leave on each host (see stamp.py); its "roles" list, when present, says what was applied
APPLIED_RECORD = "/etc/devbox/applied.json"


# ---------------------------------------------------------------------------------------------------------
# raw facts from runner events


@dataclass
class HostFacts:
    """Everything one fact-gathering run returned for one host."""

    host: str
    facts: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # "ss_tcp", "ss_udp", "getent_passwd", "getent_group" -> stdout
    applied: dict | None = None  # the applied-record on the host, if there is one
    error: str | None = None


# command results are recognised by the command they ran, not by task names that could be reworded
_OUTPUT_KEYS = {("ss", "-ltnH"): "ss_tcp", ("ss", "-lunH"): "ss_udp", ("getent", "passwd"): "getent_passwd",
                ("getent", "group"): "getent_group"}


def collect_facts(events: Iterable[Mapping]) -> dict[str, HostFacts]:
    """Merge the facts and command outputs of ansible-runner events, per host."""
    hosts: dict[str, HostFacts] = {}
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host or kind not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            continue
        entry = hosts.setdefault(host, HostFacts(host))
        res = data.get("res") or {}
        if kind != "runner_on_ok":
            if entry.error is None:
                what = "unreachable" if kind == "runner_on_unreachable" else f"task '{data.get('task')}' failed"
                entry.error = f"{what}: {str(res.get('msg') or '').strip() or 'no message'}"
            continue
        entry.facts.update(res.get("ansible_facts") or {})
        if res.get("source") == APPLIED_RECORD and res.get("content"):
            entry.applied = _decode_record(res["content"])
        cmd = res.get("cmd")
        if isinstance(cmd, list) and len(cmd) >= 2 and tuple(cmd[:2]) in _OUTPUT_KEYS:
            entry.outputs[_OUTPUT_KEYS[tuple(cmd[:2])]] = res.get("stdout") or ""
    return hosts


def _decode_record(content: str) -> dict | None:
    try:
        record = json.loads(base64.b64decode(content))
    except (ValueError, binascii.Error):
        return None  # an unreadable record says nothing about what was applied
    return record if isinstance(record, dict) else None


# ---------------------------------------------------------------------------------------------------------
# parsing


def parse_ss(text: str, protocol: str) -> frozenset[str]:
    """``ss -ltnH`` / ``ss -lunH`` output -> {"tcp/22", ...}: protocol and port, not the address."""
    ports = set()
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        port = cols[3].rsplit(":", 1)[-1]
        if port.isdigit() and int(port) not in EPHEMERAL_PORTS:
            ports.add(f"{protocol}/{int(port)}")
    return frozenset(ports)


def parse_getent(text: str, database: str) -> dict[str, str]:
    """``getent passwd|group`` lines -> {name: normalized attributes}."""
    out = {}
    for line in text.splitlines():
        cols = line.split(":")
        if database == "passwd" and len(cols) >= 7:
            out[cols[0]] = f"uid={cols[2]} gid={cols[3]} home={cols[5]} shell={cols[6]}"
        elif database == "group" and len(cols) >= 4:
            members = ",".join(sorted(m for m in cols[3].split(",") if m))
            out[cols[0]] = f"gid={cols[2]} members={members or '-'}"
    return out


def _service_name(name: str) -> str:
    return name[: -len(".service")] if name.endswith(".service") else name


def _service_value(info: Mapping) -> str:
    state = info.get("state") or UNKNOWN
    status = info.get("status")
    return f"{state}, {status}" if status and status != "not-found" else str(state)


def _package_value(entries: Any) -> str:
    versions = sorted({str(e.get("version")) for e in entries or [] if isinstance(e, Mapping)})
    return " ".join(versions) if versions else ABSENT


# ---------------------------------------------------------------------------------------------------------
# profiles


@dataclass(frozen=True)
class HostProfile:
    """A host reduced to what parity compares. ``roles`` is None when nothing records what was applied."""

    host: str
    os: str
    kernel: str
    python: str
    packages: Mapping[str, str]
    services: Mapping[str, str]
    ports: frozenset[str]
    users: Mapping[str, str]
    groups: Mapping[str, str]
    group_names: tuple[str, ...] = ()
    roles: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        return {"host": self.host, "os": self.os, "kernel": self.kernel, "python": self.python,
                "packages": dict(sorted(self.packages.items())), "services": dict(sorted(self.services.items())),
                "ports": sorted(self.ports), "users": dict(sorted(self.users.items())),
                "groups": dict(sorted(self.groups.items())), "group_names": list(self.group_names),
                "roles": list(self.roles) if self.roles is not None else None}

    @classmethod
    def from_json(cls, data: Mapping) -> "HostProfile":
        roles = data.get("roles")
        return cls(host=str(data["host"]), os=str(data["os"]), kernel=str(data["kernel"]),
                   python=str(data["python"]), packages=dict(data.get("packages") or {}),
                   services=dict(data.get("services") or {}), ports=frozenset(data.get("ports") or ()),
                   users=dict(data.get("users") or {}), groups=dict(data.get("groups") or {}),
                   group_names=tuple(data.get("group_names") or ()),
                   roles=tuple(roles) if roles is not None else None)


def build_profile(raw: HostFacts, *, roles: Sequence[str] | None = None) -> HostProfile:
    """Normalize one host's facts. ``roles`` (from devbox's own ledger, for VMs) wins over the host's record."""
    f = raw.facts
    distribution = f.get("ansible_distribution") or UNKNOWN
    major = f.get("ansible_distribution_major_version") or ""
    if roles is None and raw.applied and isinstance(raw.applied.get("roles"), list):
        roles = [str(r) for r in raw.applied["roles"]]
    return HostProfile(
        host=raw.host,
        os=f"{distribution} {major}".strip(),
        kernel=str(f.get("ansible_kernel") or UNKNOWN),
        python=str(f.get("ansible_python_version") or UNKNOWN),
        packages={name: _package_value(entries) for name, entries in (f.get("packages") or {}).items()},
        services={_service_name(name): _service_value(info) for name, info in (f.get("services") or {}).items()
                  if isinstance(info, Mapping)},
        ports=parse_ss(raw.outputs.get("ss_tcp", ""), "tcp") | parse_ss(raw.outputs.get("ss_udp", ""), "udp"),
        users=parse_getent(raw.outputs.get("getent_passwd", ""), "passwd"),
        groups=parse_getent(raw.outputs.get("getent_group", ""), "group"),
        group_names=tuple(f.get("parity_group_names") or ()),
        roles=tuple(roles) if roles is not None else None,
    )


def roles_from_ledger(units: Mapping[str, object]) -> list[str]:
    """Role names from a VM's ledger entry (unit keys ``PLAY/ROLE``; a play's own content has no role)."""
    return sorted({key.split("/", 1)[1] for key in units if "/" in key})


def fact_view(profile: HostProfile, managed: Managed, *, other: HostProfile) -> dict[str, str]:
    """The facts compared between ``profile`` and ``other``, keyed like ``package:nginx`` or ``kernel``."""
    packages = set(managed.packages)
    if managed.unresolved:
        # some package names could not be worked out statically: compare every package installed on either
        # host whose name the playbooks mention anywhere (a superset of "installed on the reference")
        packages |= {p for p in (*profile.packages, *other.packages) if p in managed.mentioned}
    services = {_service_name(s) for s in managed.services}
    services |= {s for s in (*profile.services, *other.services) if s in packages}
    view = {"os": profile.os, "kernel": profile.kernel, "python": profile.python}
    view.update({f"package:{p}": profile.packages.get(p, ABSENT) for p in packages})
    view.update({f"service:{s}": profile.services.get(s, ABSENT) for s in services})
    view.update({f"port:{p}": "listening" if p in profile.ports else "not listening"
                 for p in profile.ports | other.ports})
    view.update({f"user:{u}": profile.users.get(u, ABSENT) for u in managed.users})
    view.update({f"group:{g}": profile.groups.get(g, ABSENT) for g in managed.groups})
    view["roles"] = ", ".join(profile.roles) if profile.roles is not None else UNKNOWN
    return view


# ---------------------------------------------------------------------------------------------------------
# expectations, differences, pairing


@dataclass(frozen=True)
class Expectation:
    """A declared development difference: ``fact`` is a glob (``package:nginx``, ``port:tcp/*``, ``kernel``)."""

    fact: str
    reason: str
    machine: str | None = None
    host_group: str | None = None

    def covers(self, machine: str, groups: Iterable[str], fact: str) -> bool:
        if self.machine is not None and self.machine != machine:
            return False
        if self.host_group is not None and self.host_group not in set(groups):
            return False
        return fnmatch.fnmatchcase(fact, self.fact)


def expectations_from_config(entries: Sequence[Mapping] | None) -> tuple[Expectation, ...]:
    return tuple(Expectation(fact=str(e["fact"]), reason=str(e.get("reason") or ""), machine=e.get("machine"),
                             host_group=e.get("host_group")) for e in entries or ())


@dataclass(frozen=True)
class Difference:
    machine: str
    reference: str
    fact: str
    development: str
    reference_value: str
    reason: str | None = None  # set when the difference is expected

    @property
    def expected(self) -> bool:
        return self.reason is not None

    @property
    def kind(self) -> str:
        return self.fact.split(":", 1)[0]

    @property
    def item(self) -> str:
        return self.fact.split(":", 1)[1] if ":" in self.fact else ""

    def to_json(self) -> dict:
        return {"machine": self.machine, "reference_host": self.reference, "fact": self.fact, "kind": self.kind,
                "item": self.item, "development": self.development, "reference": self.reference_value,
                "status": "expected" if self.expected else "drift", "reason": self.reason}


def compare(dev: HostProfile, ref: HostProfile, managed: Managed, expectations: Sequence[Expectation] = (),
            *, machine_groups: Iterable[str] = ()) -> list[Difference]:
    """Every compared fact whose value differs, marked expected when a declaration covers it."""
    groups = set(machine_groups) | set(dev.group_names)
    mine, theirs = fact_view(dev, managed, other=ref), fact_view(ref, managed, other=dev)
    out = []
    for fact in sorted(mine.keys() | theirs.keys()):
        a, b = mine.get(fact, ABSENT), theirs.get(fact, ABSENT)
        if a == b or (fact == "roles" and UNKNOWN in (a, b)):
            continue  # an unknown record of applied roles is no evidence either way (shown as a note)
        why = next((e.reason for e in expectations if e.covers(dev.host, groups, fact)), None)
        out.append(Difference(dev.host, ref.host, fact, a, b, why))
    return out


@dataclass(frozen=True)
class Machine:
    """A development VM as parity needs it (from the plan: name, groups, the production hosts it represents)."""

    name: str
    groups: tuple[str, ...] = ()
    represents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pair:
    machine: str
    references: tuple[str, ...]
    how: str  # "represents" or "groups"


def _signature(groups: Iterable[str], ignore: frozenset[str]) -> frozenset[str]:
    return frozenset(groups) - UNIVERSAL_GROUPS - ignore


def pair_hosts(machines: Sequence[Machine], dev: Mapping[str, HostProfile], ref: Mapping[str, HostProfile],
               managed: Managed, *, ignore_groups: Iterable[str] = ()) -> tuple[list[Pair], list[str]]:
    """Pair each VM with reference hosts: by ``represents`` where the reference has those hosts (production or
    its baseline), else by group membership (staging): a reference host goes to the VM whose role groups match
    it best, and among equally good VMs (a primary and a replica) to the one it differs from least."""
    ignore = frozenset(ignore_groups)
    assigned: dict[str, list[str]] = {m.name: [] for m in machines}
    how: dict[str, str] = {}
    for m in machines:
        hit = [h for h in m.represents if h in ref]
        if hit:
            assigned[m.name], how[m.name] = hit, "represents"
    taken = {h for hosts in assigned.values() for h in hosts}
    vm_sig = {m.name: _signature((*m.groups, *(dev[m.name].group_names if m.name in dev else ())), ignore)
              for m in machines if m.name not in how}
    dev_groups = frozenset().union(*vm_sig.values()) if vm_sig else frozenset()
    unpaired = []
    for host in sorted(set(ref) - taken):
        sig = _signature(ref[host].group_names, ignore) & dev_groups
        scored = [(len(sig & s) / len(sig | s), name) for name, s in vm_sig.items() if sig & s]
        if not scored:
            unpaired.append(host)
            continue
        best = max(score for score, _ in scored)
        candidates = [name for score, name in scored if score == best]
        if len(candidates) > 1 and all(c in dev for c in candidates):
            candidates.sort(key=lambda c: sum(not d.expected for d in compare(dev[c], ref[host], managed)))
        assigned[candidates[0]].append(host)
        how[candidates[0]] = "groups"
    pairs = [Pair(m.name, tuple(assigned[m.name]), how.get(m.name, "none")) for m in machines]
    return pairs, unpaired


# ---------------------------------------------------------------------------------------------------------
# the whole comparison


@dataclass(frozen=True)
class Unreachable:
    host: str
    side: str  # "development" or the reference name
    message: str


@dataclass(frozen=True)
class ParityReport:
    against: str
    pairs: tuple[Pair, ...]
    differences: tuple[Difference, ...]
    unpaired_references: tuple[str, ...] = ()
    unreachable: tuple[Unreachable, ...] = ()
    notes: tuple[str, ...] = ()
    managed: Managed = Managed()

    @property
    def drift(self) -> list[Difference]:
        return [d for d in self.differences if not d.expected]

    @property
    def expected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected]

    @property
    def unmatched(self) -> list[str]:
        """Machines with no reference host to compare with."""
        return [p.machine for p in self.pairs if not p.references]

    @property
    def ok(self) -> bool:
        """No drift, and every host answered (parity that could not be measured is not parity)."""
        return not self.drift and not self.unreachable and not self.unmatched

    def verdict(self) -> str:
        if self.ok:
            return f"no drift: development matches {self.against}"
        parts = [f"{len(self.drift)} difference(s) are drift"] if self.drift else []
        if self.unreachable:
            parts.append(f"{len(self.unreachable)} host(s) could not be measured")
        if self.unmatched:
            parts.append(f"no counterpart in {self.against} for {', '.join(self.unmatched)}")
        return "; ".join(parts)


def build_report(*, against: str, machines: Sequence[Machine], dev: Mapping[str, HostProfile],
                 ref: Mapping[str, HostProfile], managed: Managed, expectations: Sequence[Expectation] = (),
                 ignore_groups: Iterable[str] = (), unreachable: Sequence[Unreachable] = ()) -> ParityReport:
    pairs, unpaired = pair_hosts(machines, dev, ref, managed, ignore_groups=ignore_groups)
    groups = {m.name: m.groups for m in machines}
    differences: list[Difference] = []
    notes: list[str] = []
    for pair in pairs:
        if pair.machine not in dev:
            continue
        if not pair.references:
            notes.append(f"{pair.machine}: no host in {against} matches it (nothing to compare)")
        for host in pair.references:
            differences += compare(dev[pair.machine], ref[host], managed, expectations,
                                   machine_groups=groups[pair.machine])
    for name, profile in sorted({**{f"{against}:{h}": p for h, p in ref.items()}, **dev}.items()):
        if profile.roles is None:
            notes.append(f"{name}: roles last applied are unknown (no record)")
    if managed.unresolved:
        notes.append("package names devbox could not resolve statically (compared every installed package the "
                     "playbooks mention instead): " + ", ".join(managed.unresolved))
    return ParityReport(against=against, pairs=tuple(pairs), differences=tuple(differences),
                        unpaired_references=tuple(unpaired), unreachable=tuple(unreachable), notes=tuple(notes),
                        managed=managed)


# ---------------------------------------------------------------------------------------------------------
# baselines


def baseline_json(environment: str, profiles: Mapping[str, HostProfile], *, captured_at: str,
                  unreachable: Sequence[Unreachable] = ()) -> str:
    doc = {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "environment": environment,
           "captured_at": captured_at, "hosts": {h: profiles[h].to_json() for h in sorted(profiles)},
           "unreachable": [{"host": u.host, "message": u.message} for u in unreachable]}
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def load_baseline(text: str, *, path: str) -> tuple[str, dict[str, HostProfile]]:
    """-> (environment name, profiles). Raises DevboxError naming the file on anything that is not a baseline."""
    hint = "create one with `devbox parity --export --env ENV > FILE`"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DevboxError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})", hint) from exc
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise DevboxError(f"{path} is not a devbox parity baseline", hint)
    if doc.get("version") != BASELINE_VERSION:
        raise DevboxError(f"{path} is a baseline of version {doc.get('version')}; this devbox reads version "
                          f"{BASELINE_VERSION}", "export the baseline again with this version of devbox")
    try:
        profiles = {str(h): HostProfile.from_json(p) for h, p in (doc.get("hosts") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DevboxError(f"{path}: a host entry is incomplete ({exc})", hint) from exc
    return str(doc.get("environment") or path), profiles
