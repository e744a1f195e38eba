"""`devbox report`: what the page and its JSON say, built from what was gathered. Pure: no I/O, no adapter.

Per environment and host the revision stamp devbox left there (see ``environments/stamp.py``), how far that commit
is behind the checkout's main branch, and which hosts disagree with the rest of their group; the last
``devbox integration`` and ``devbox parity`` results; the development topology (production groups and the VMs
standing for them).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from provisioner import JSON_SCHEMA
from provisioner.environments.stamp import HostRevision
from provisioner.plan.topology import Topology

NOT_STAMPED = "never provisioned by devbox"


@dataclass(frozen=True)
class HostState:
    host: str
    groups: tuple[str, ...]
    stamp: Mapping[str, Any] | None   # /etc/devbox/applied.json as read back, None when there is none
    problem: str = ""                 # why it could not be read (unreachable...)
    behind: int | None = None         # commits the applied commit is behind the main branch; None: unknown
    disagrees_with: str = ""          # "web: 2 of 3 hosts run abc123" when this host differs from its group

    def _get(self, key: str) -> Any:
        return self.stamp.get(key) if self.stamp else None

    @property
    def revision(self) -> str:
        if self.problem:
            return "unknown"
        if not self.stamp:
            return NOT_STAMPED
        return str(self._get("revision") or "?")

    @property
    def commit(self) -> str | None:
        value = self._get("commit")
        return str(value) if value else None

    @property
    def applied_at(self) -> str | None:
        return self._get("applied_at")

    @property
    def applied_by(self) -> str | None:
        return self._get("applied_by")

    @property
    def run(self) -> str | None:
        """"partial" (a --limit/--tags run, named) or "full"; None when nothing was recorded."""
        if not self.stamp:
            return None
        if not self._get("partial"):
            return "full"
        what = [f"--limit {self._get('limit')}" if self._get("limit") else "",
                f"--tags {self._get('tags')}" if self._get("tags") else ""]
        return " ".join(["partial", *filter(None, what)])

    def to_json(self) -> dict:
        return {"host": self.host, "groups": list(self.groups), "revision": self.revision, "commit": self.commit,
                "dirty": bool(self._get("dirty")), "behind": self.behind, "applied_at": self.applied_at,
                "applied_by": self.applied_by, "run": self.run, "disagrees_with": self.disagrees_with or None,
                "problem": self.problem or None}


@dataclass(frozen=True)
class EnvironmentState:
    name: str
    hosts: tuple[HostState, ...] = ()
    error: str = ""   # the environment could not be read at all (guard, host keys, lock...): why
    hint: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not any(h.problem for h in self.hosts)

    @property
    def disagreeing(self) -> list[HostState]:
        return [h for h in self.hosts if h.disagrees_with]

    def summary(self) -> str:
        if self.error:
            return f"not read: {self.error.splitlines()[0]}"
        revisions = Counter(h.revision for h in self.hosts if not h.problem)
        parts = [f"{len(self.hosts)} host{'' if len(self.hosts) == 1 else 's'}"]
        if revisions:
            parts.append(", ".join(f"{count} on {rev}" for rev, count in revisions.most_common()))
        unreachable = sum(1 for h in self.hosts if h.problem)
        if unreachable:
            parts.append(f"{unreachable} not reached")
        if self.disagreeing:
            parts.append(f"{len(self.disagreeing)} disagree with their group")
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "summary": self.summary(), "error": self.error or None,
                "hint": self.hint or None, "hosts": [h.to_json() for h in self.hosts]}


def environment_state(name: str, revisions: Sequence[HostRevision], groups: Mapping[str, Sequence[str]],
                      behind: Mapping[str, int | None]) -> EnvironmentState:
    """The hosts of one environment, each with its group disagreement. ``groups``: host -> inventory groups;
    ``behind``: commit -> commits behind the main branch (None when the checkout does not know the commit)."""
    hosts = [HostState(r.host, tuple(groups.get(r.host, ())), r.stamp, r.problem,
                       behind.get(str(r.stamp.get("commit"))) if r.stamp and r.stamp.get("commit") else None)
             for r in revisions]
    notes = disagreements(hosts)
    return EnvironmentState(name, tuple(HostState(h.host, h.groups, h.stamp, h.problem, h.behind,
                                                  notes.get(h.host, "")) for h in hosts))


def disagreements(hosts: Sequence[HostState]) -> dict[str, str]:
    """Host -> why it stands out: in a group of two or more hosts that could be read, every host not on the
    revision most of the group runs (every host of the group when no revision has a majority)."""
    by_group: dict[str, list[HostState]] = {}
    for h in hosts:
        if h.problem:
            continue  # nothing is known about what it runs
        for g in h.groups:
            by_group.setdefault(g, []).append(h)
    notes: dict[str, list[str]] = {}
    for group, members in sorted(by_group.items()):
        counts = Counter(m.revision for m in members)
        if len(members) < 2 or len(counts) < 2:
            continue
        top, top_count = counts.most_common(1)[0]
        majority = top if top_count * 2 > len(members) else None
        for m in members:
            if m.revision == majority:
                continue
            others = ", ".join(f"{n} on {rev}" for rev, n in counts.most_common() if rev != m.revision)
            notes.setdefault(m.host, []).append(f"{group}: {others}")
    return {host: "; ".join(lines) for host, lines in notes.items()}


@dataclass(frozen=True)
class Outcome:
    """A result read from a file (the last integration or parity run), or why there is none."""

    data: Mapping[str, Any] | None
    source: str
    problem: str = ""


def integration_summary(outcome: Outcome) -> dict:
    """The facts of ``integration.json`` the page shows: verdict, revision, when, how long, each step."""
    d = outcome.data or {}
    steps = [{"name": str(s.get("name")), "kind": str(s.get("kind")), "ok": bool(s.get("ok")),
              "seconds": s.get("seconds"), "message": str(s.get("message") or "").splitlines()[0:1]}
             for s in d.get("steps") or () if isinstance(s, Mapping)]
    for s in steps:
        s["message"] = s["message"][0] if s["message"] else ""
    return {"available": outcome.data is not None, "source": outcome.source, "problem": outcome.problem or None,
            "ok": bool(d.get("ok")) if outcome.data is not None else None, "revision": d.get("revision"),
            "started": d.get("started"), "seconds": d.get("seconds"), "steps": steps}


def parity_summary(outcome: Outcome) -> dict:
    """The facts of the last parity report the page shows: against what, when, verdict, the drift named."""
    d = outcome.data or {}
    drift = [{"machine": str(x.get("machine")), "reference_host": str(x.get("reference_host")),
              "fact": str(x.get("fact")), "development": str(x.get("development")),
              "reference": str(x.get("reference"))} for x in d.get("drift") or () if isinstance(x, Mapping)]
    unreachable = [{"host": str(u.get("host")), "message": str(u.get("message"))}
                   for u in d.get("unreachable") or () if isinstance(u, Mapping)]
    return {"available": outcome.data is not None, "source": outcome.source, "problem": outcome.problem or None,
            "ok": bool(d.get("ok")) if outcome.data is not None else None, "against": d.get("against"),
            "finished_at": d.get("finished_at"), "verdict": d.get("verdict"), "drift": drift,
            "expected": len(d.get("expected") or ()), "unreachable": unreachable}


# --- topology: production groups on one side, the VMs standing for them on the other -------------------------

@dataclass(frozen=True)
class GroupView:
    name: str
    hosts: tuple[str, ...]   # production hosts of the group that VMs stand for (inventory order)
    machines: tuple[str, ...]


@dataclass(frozen=True)
class MachineView:
    name: str
    address: str
    memory: int
    cpus: int
    groups: tuple[str, ...]
    represents: tuple[str, ...]


@dataclass(frozen=True)
class TopologyView:
    groups: tuple[GroupView, ...]
    machines: tuple[MachineView, ...]
    excluded: tuple[tuple[str, str], ...] = ()   # (host, reason): production hosts no VM stands for
    source: str = ""

    @property
    def production_hosts(self) -> int:
        return len({h for m in self.machines for h in m.represents}) + len(self.excluded)

    def to_json(self) -> dict:
        return {"source": self.source, "production_hosts": self.production_hosts,
                "groups": [{"name": g.name, "hosts": list(g.hosts), "machines": list(g.machines)}
                           for g in self.groups],
                "machines": [{"name": m.name, "address": m.address, "memory": m.memory, "cpus": m.cpus,
                              "groups": list(m.groups), "represents": list(m.represents)} for m in self.machines],
                "excluded": [{"host": h, "reason": r} for h, r in self.excluded]}


def topology_view(topology: Topology, *, source: str = "") -> TopologyView:
    """Groups as the plan has them: a VM joins the production groups of the hosts it stands for (collapsed hosts
    share their groups), so a group's hosts are the hosts its VMs stand for."""
    members: dict[str, list[str]] = {}
    machines_of: dict[str, list[str]] = {}
    for m in topology.machines:
        for g in m.groups:
            hosts = members.setdefault(g, [])
            hosts.extend(h for h in m.represents if h not in hosts)
            machines_of.setdefault(g, []).append(m.name)
    groups = tuple(GroupView(g, tuple(members[g]), tuple(machines_of[g])) for g in sorted(members))
    machines = tuple(MachineView(m.name, m.address, m.memory, m.cpus, tuple(m.groups), tuple(m.represents))
                     for m in topology.machines)
    return TopologyView(groups, machines, tuple((e.host, e.reason) for e in topology.excluded), source)


# --- the whole report ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkout:
    branch: str
    head: str | None          # the branch's commit, None when it does not exist in the checkout
    problem: str = ""


@dataclass(frozen=True)
class Report:
    project: str
    generated_at: str
    checkout: Checkout
    environments: tuple[EnvironmentState, ...]
    integration: Outcome
    parity: Outcome
    topology: TopologyView | None
    topology_problem: str = ""

    @property
    def unread(self) -> list[EnvironmentState]:
        """Environments (or hosts of them) that could not be read: the command's exit code is 1."""
        return [e for e in self.environments if not e.ok]

    def to_json(self) -> dict:
        return {"schema": JSON_SCHEMA, "project": self.project, "generated_at": self.generated_at,
                "checkout": {"branch": self.checkout.branch, "head": self.checkout.head,
                             "problem": self.checkout.problem or None},
                "environments": [e.to_json() for e in self.environments],
                "integration": integration_summary(self.integration),
                "parity": parity_summary(self.parity),
                "topology": self.topology.to_json() if self.topology else None,
                "topology_problem": self.topology_problem or None}
