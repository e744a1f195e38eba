"""`devbox report`: gathering, read-only, through two small interfaces (so tests give fakes of the same shape).

- ``StampReader``: the revision stamps of one environment's hosts. The real one (``RunsStampReader``) passes the
  same rails as every command against an environment (``EnvironmentRuns``: declared in devbox.yml, the production
  guard, pinned host keys), then fetches ``/etc/devbox/applied.json`` with one read-only playbook run over a copy
  of the inventory without its vault files, and with no vault password;
- ``History``: how many commits a commit is behind the checkout's main branch (``git rev-list --count``).

The last integration and parity results are files (``integration.json``, the parity report saved by
``devbox parity``); the topology is the plan. Anything that cannot be read is kept, with why, for the page.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from provisioner.adapters import process
from provisioner.environments.model import DEV, TargetHost, environments_of
from provisioner.environments.runs import EnvironmentRuns, RunnerSettings
from provisioner.environments.stamp import (HostRevision, collect_fetched, read_extravars,
                                            write_stamp_playbooks)
from provisioner.environments.trust import UNREACHABLE, require_trusted
from provisioner.errors import DevboxError, SafetyError, UsageError
from provisioner.parity.gather import readable_inventory_copy
from provisioner.plan.topology import Topology
from provisioner.report.model import (Checkout, EnvironmentState, Outcome, Report, environment_state,
                                      topology_view)


@dataclass(frozen=True)
class EnvironmentRead:
    name: str
    hosts: tuple[TargetHost, ...]
    revisions: tuple[HostRevision, ...]


class StampReader(ABC):
    @abstractmethod
    def declared(self) -> list[str]:
        """Every environment devbox.yml declares (the development VMs, ``dev``, included)."""

    @abstractmethod
    def names(self) -> list[str]:
        """The environments a report covers when none is named: every one devbox.yml declares, except the
        development VMs (in the picture) and production (only when named, and allowed)."""

    @abstractmethod
    def read(self, name: str) -> EnvironmentRead:
        """The stamps of ``name``'s hosts. Raises ``DevboxError`` when the environment cannot be read."""


class History(ABC):
    branch: str

    @abstractmethod
    def head(self) -> str | None:
        """The main branch's commit, None when the checkout has no such branch."""

    @abstractmethod
    def behind(self, commit: str) -> int | None:
        """Commits on the main branch since ``commit``; None when the checkout does not know ``commit``."""


class RunsStampReader(StampReader):
    def __init__(self, runs: EnvironmentRuns):
        self.runs = runs

    def declared(self) -> list[str]:
        return sorted(environments_of(self.runs.config()))

    def names(self) -> list[str]:
        return sorted(name for name, env in environments_of(self.runs.config()).items()
                      if not env.is_dev and not env.is_production)

    def read(self, name: str) -> EnvironmentRead:
        runs = self.runs
        env = runs.environment(name)
        if env.is_dev:
            raise UsageError("the report reads named environments; the development VMs are in its picture",
                             "name an environment declared in devbox.yml (e.g. --env staging)")
        hosts = runs.hosts(env)   # the production guard, before any connection
        if not env.known_hosts.is_file():   # nothing pinned: nothing to check a host against, so no connection
            raise SafetyError(f"no host key of environment '{env.name}' is pinned ({env.known_hosts} does not "
                              f"exist); no host was contacted", f"run `devbox trust --env {env.name}`")
        with runs.lock(f"devbox report --env {env.name}"):
            runs.progress(env.name, f"checking the host keys of {len(hosts)} hosts")
            checks = runs.host_key_checker(list(hosts), env.known_hosts)
            # an unknown or changed key stops the whole read, as it stops any run; a host that did not answer is
            # only that host's problem (the others are read, the page says which one is down and why)
            require_trusted(env.name, [c for c in checks if c.status != UNREACHABLE], env.known_hosts)
            down = {c.host.name: f"unreachable: {c.detail}" for c in checks if c.status == UNREACHABLE}
            reachable = [h.name for h in hosts if h.name not in down]
            state_dir = runs.state_dir(env)
            _, read_play = write_stamp_playbooks(runs.project_dir / ".devbox" / "stamp")
            # no vault password: a copy of the inventory without its vault files (reading a file needs no secret)
            inventory = readable_inventory_copy(env.inventory, state_dir / "report-inventory")
            fetch_dir = state_dir / "report-applied"
            fetch_dir.mkdir(parents=True, exist_ok=True)
            for old in fetch_dir.glob("*.json"):
                old.unlink()
            runner = runs.runner_factory(RunnerSettings(environment=env, runner_dir=state_dir / "runner",
                                                        logs_dir=state_dir / "logs", known_hosts=env.known_hosts))
            failures = ()
            if reachable:
                runs.progress(env.name, f"reading the revision stamps of {len(reachable)} hosts (read-only)")
                result = runner.run(playbook=read_play, inventory=inventory, forks=max(1, len(reachable)),
                                    limit=",".join(reachable) if down else None,
                                    extravars=read_extravars(fetch_dir, path=runs.applied_path))
                failures = result.failures
            for f in failures:
                first = (f.message.splitlines() or ["no message"])[0]
                down[f.host] = f"unreachable: {first}" if f.unreachable else first
            revisions = collect_fetched(fetch_dir, [h.name for h in hosts], down)
        return EnvironmentRead(env.name, tuple(hosts), tuple(revisions))


class GitHistory(History):
    def __init__(self, repo: Path, branch: str = "main", *, log_path: Path | None = None):
        self.repo, self.branch, self.log_path = Path(repo), branch, log_path

    def _git(self, *args: str):
        return process.run(["git", "-C", str(self.repo), *args], log_path=self.log_path)

    def head(self) -> str | None:
        result = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}^{{commit}}")
        return result.stdout.strip() if result.ok and result.stdout.strip() else None

    def behind(self, commit: str) -> int | None:
        if not commit or commit.startswith("-"):
            return None
        result = self._git("rev-list", "--count", f"{commit}..refs/heads/{self.branch}", "--")
        try:
            return int(result.stdout.strip()) if result.ok else None
        except ValueError:
            return None


def read_outcome(path: Path, what: str, hint: str, *, base: Path | None = None) -> Outcome:
    """A JSON result file, or why there is none (missing, damaged): never an exception. Named relative to
    ``base`` (the project) when it is inside it."""
    path = Path(path)
    if base is not None and path.is_absolute() and path.is_relative_to(base):
        path = path.relative_to(base)
        full = Path(base) / path
    else:
        full = path
    try:
        data = json.loads(full.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Outcome(None, str(path), f"no {what} yet ({path} does not exist): {hint}")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return Outcome(None, str(path), f"{path} cannot be read as JSON ({exc})")
    if not isinstance(data, dict):
        return Outcome(None, str(path), f"{path} is not a JSON object")
    return Outcome(data, str(path))


def environment(reader: StampReader, history: History, name: str) -> EnvironmentState:
    """One environment's state, or the reason it could not be read (a refusal is shown, never a crash)."""
    try:
        read = reader.read(name)
    except UsageError:
        raise
    except DevboxError as exc:
        return EnvironmentState(name, error=exc.message, hint=exc.hint or "")
    commits = {str(r.stamp.get("commit")) for r in read.revisions if r.stamp and r.stamp.get("commit")}
    behind = {c: history.behind(c) for c in sorted(commits)}
    return environment_state(read.name, read.revisions, {h.name: h.groups for h in read.hosts}, behind)


def gather(*, project: str, reader: StampReader, history: History, env_names: Sequence[str] | None,
           topology: Callable[[], tuple[Topology, str]], integration_json: Path, parity_json: Path,
           progress: Callable[[str, str], None] = lambda subject, message: None,
           now: datetime | None = None, project_dir: Path | None = None) -> Report:
    """Everything the report shows. ``env_names``: None for every environment ``reader.names()`` gives, () for
    none. ``topology``: the plan and where it came from."""
    names = list(reader.names()) if env_names is None else list(dict.fromkeys(env_names))
    unknown = [n for n in names if n not in reader.declared()]
    if unknown:   # before any environment is read: a typo costs nothing
        raise UsageError(f"unknown environment {', '.join(map(repr, unknown))} (known: "
                         f"{', '.join(reader.declared())})", "declare it under 'environments:' in devbox.yml")
    if DEV in names:
        raise UsageError("the report reads named environments; the development VMs are in its picture",
                         "name an environment declared in devbox.yml (e.g. --env staging)")
    environments = []
    for name in names:
        progress(name, "reading what each host runs")
        environments.append(environment(reader, history, name))
    head = history.head()
    checkout = Checkout(history.branch, head, "" if head else f"this checkout has no branch '{history.branch}': "
                                                               f"commits behind are not counted")
    try:
        plan, source = topology()
        view, problem = topology_view(plan, source=source), ""
    except DevboxError as exc:
        view, problem = None, exc.message + (f" ({exc.hint})" if exc.hint else "")
    return Report(
        project=project,
        generated_at=(now or datetime.now(timezone.utc)).replace(microsecond=0).isoformat(),
        checkout=checkout, environments=tuple(environments),
        integration=read_outcome(integration_json, "integration result", "run `devbox integration`",
                                 base=project_dir),
        parity=read_outcome(parity_json, "parity result", "run `devbox parity --against ENV`", base=project_dir),
        topology=view, topology_problem=problem)
