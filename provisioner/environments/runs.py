"""Runs against a named environment (staging...): the order of the safety rails, in one place.

1. the environment is declared in devbox.yml (production only with ``allow_production: true``);
2. its hosts are read with Ansible's loader (no inventory code runs), and none may be a production host: both
   sides resolved as ssh will reach them, jump hosts included (``guard.guarded_hosts``, the one gate every
   command that connects to an environment passes);
3. every host presents its pinned SSH key (``environments/<env>.known_hosts``), else nothing runs;
4. the vault password comes from the configured file or a prompt, and reaches Ansible as a 0600 file;
5. a check-mode diff runs first (unless ``--no-check-first``), then the typed confirmation;
6. the playbook is applied with strict host-key checking, and each host that succeeded gets its revision stamp.

Prompts are callbacks the CLI passes in; deciding is done by ``environments``; running by the PlaybookRunner.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from provisioner.config.schema import load_config
from provisioner.environments.guard import guarded_hosts
from provisioner.environments.model import (Environment, RunPlan, TargetHost, check_confirmation, environments_of,
                                            plan_run, read_target_hosts, select_environment, vault_labels,
                                            vault_run_settings)
from provisioner.errors import DevboxError, UsageError
from provisioner.project.context import playbook_path
from provisioner.project.lock import ProjectLock
from provisioner.project.paths import ProjectPaths
from provisioner.adapters.playbook_runner import AnsibleRunnerPlaybookRunner, PlaybookResult, PlaybookRunner
from provisioner.environments.stamp import (APPLIED_PATH, HostRevision, Revision, collect_fetched, make_stamp, playbook_revision,
                    plays_roles, read_extravars, stamp_extravars, write_stamp_playbooks)
from provisioner.environments.trust import HostKeyCheck, check_hosts, record, require_trusted, scan_host



@dataclass(frozen=True)
class PlannedChange:
    """One task check mode says would change a host, with its diff (shown in the terminal, never written)."""

    host: str
    task: str
    diff: str = ""


@dataclass(frozen=True)
class CheckPreview:
    result: PlaybookResult
    changes: tuple[PlannedChange, ...]


Confirm = Callable[[RunPlan, "CheckPreview | None"], "str | None"]  # shows hosts + diff, returns the typed name
AskPassword = Callable[[Environment], str]


@dataclass(frozen=True)
class RunnerSettings:
    environment: Environment
    runner_dir: Path
    logs_dir: Path
    known_hosts: Path
    extra_env: dict = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()


def real_runner(settings: RunnerSettings) -> PlaybookRunner:
    return AnsibleRunnerPlaybookRunner(runner_dir=settings.runner_dir, logs_dir=settings.logs_dir,
                                       known_hosts=settings.known_hosts, strict_host_keys=True,
                                       extra_env=settings.extra_env, extra_args=settings.extra_args)


HostKeyChecker = Callable[[list, Path], list[HostKeyCheck]]


@dataclass(frozen=True)
class EnvProvisionResult:
    plan: RunPlan
    revision: Revision
    check: CheckPreview | None
    apply: PlaybookResult
    stamped: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.apply.ok


class EnvProvisionFailed(DevboxError):
    """The playbook ran against the environment and failed somewhere; carries the result (per-host summary)."""

    def __init__(self, result: EnvProvisionResult):
        apply = result.apply
        failures = "\n".join(f"  {f}" for f in apply.failures) or f"  status {apply.status}"
        super().__init__(f"provisioning {result.plan.environment.name} failed:\n{failures}\nfull log: "
                         f"{apply.log_path}", "fix the failing task and run the command again")
        self.result = result


@dataclass
class EnvironmentRuns:
    project_dir: Path
    progress: Callable[[str, str], None] = lambda subject, message: None
    runner_factory: Callable[[RunnerSettings], PlaybookRunner] = real_runner
    host_key_checker: HostKeyChecker = check_hosts
    applied_path: str = APPLIED_PATH  # where each host keeps its revision stamp
    dev_runner: PlaybookRunner | None = None  # the app's runner for the development VMs (status --env dev)

    # --- what and where ---------------------------------------------------------------------------------
    def config(self):
        return load_config(self.project_dir / "devbox.yml", required=True)

    def environment(self, name: str | None) -> Environment:
        return select_environment(environments_of(self.config()), name)

    def playbook(self) -> Path:
        return playbook_path(self.config(), self.project_dir)

    def lock(self, command: str) -> ProjectLock:
        """The project lock: runs write under .devbox/ (runner artifacts, stamp playbooks, fetched records)."""
        return ProjectLock(ProjectPaths(self.project_dir).lock, command)

    def state_dir(self, env: Environment) -> Path:
        # per environment, so a staging run's artifacts never mix with development's
        return self.project_dir / ".devbox" / "envs" / env.name

    def hosts(self, env: Environment, *, limit: str | None = None) -> tuple[TargetHost, ...]:
        """The hosts of ``env`` past the production guard: every path that connects to an environment (provision,
        trust, status, parity, export) gets its hosts here, before any connection."""
        config = self.config()
        production = config.inventory_path()
        return guarded_hosts(env, production_inventory=production.resolve() if production else None,
                             allow_scripts=config.allow_inventory_scripts, limit=limit)

    def plan(self, name: str | None, *, env_explicit: bool, yes: bool = False, no_check_first: bool = False,
             limit: str | None = None) -> RunPlan:
        """Steps 1-2: the environment, its hosts, and the production guard. Reads inventories, runs nothing."""
        env = self.environment(name)
        if env.is_dev:
            raise UsageError("the development VMs are provisioned by `devbox provision` without --env")
        hosts = self.hosts(env, limit=limit)
        return plan_run(env, hosts, env_explicit=env_explicit, yes=yes, no_check_first=no_check_first)

    # --- trust --------------------------------------------------------------------------------------------
    def scan_keys(self, name: str | None) -> tuple[Environment, list[HostKeyCheck]]:
        """Every key every host of the environment presents, compared with the pinned ones."""
        env = self.environment(name)
        if env.is_dev:
            raise UsageError("the development VMs need no pinned keys; name an environment: --env staging")
        hosts = self.hosts(env)
        return env, [scan_host(h, env.known_hosts) for h in hosts]

    def record_keys(self, env: Environment, checks: list[HostKeyCheck]) -> list[HostKeyCheck]:
        recorded = [c for c in checks if c.offered and not c.ok]
        with self.lock(f"devbox trust --env {env.name}"):
            for check in recorded:
                record(env.known_hosts, check)
        return recorded

    # --- provision ----------------------------------------------------------------------------------------
    def provision(self, plan: RunPlan, *, confirm: Confirm, ask_password: AskPassword,
                  tags: str | None = None, limit: str | None = None, skip_tags: str | None = None,
                  extra_vars: tuple[str, ...] = (), diff: bool = False, verbosity: int = 0) -> EnvProvisionResult:
        """Raises ``EnvProvisionFailed`` (with the result) when the playbook failed on a host. The pass-through
        options (``extra_vars``...) reach the check-mode preview and the run alike: the confirmation is for
        exactly what will be applied."""
        with self.lock(f"devbox provision --env {plan.environment.name}"):
            return self._provision(plan, confirm=confirm, ask_password=ask_password, tags=tags, limit=limit,
                                   skip_tags=skip_tags, extra_vars=extra_vars, diff=diff, verbosity=verbosity)

    def _provision(self, plan: RunPlan, *, confirm: Confirm, ask_password: AskPassword, tags: str | None,
                   limit: str | None, skip_tags: str | None, extra_vars: tuple[str, ...], diff: bool,
                   verbosity: int) -> EnvProvisionResult:
        env = plan.environment
        self.progress(env.name, f"checking the host keys of {len(plan.hosts)} hosts")
        require_trusted(env.name, self.host_key_checker(list(plan.hosts), env.known_hosts), env.known_hosts)
        playbook = self.playbook()
        revision = playbook_revision(playbook)
        if not plan.check_first:  # nothing to show first: confirm before asking for any password
            check_confirmation(plan, confirm(plan, None) if plan.ask_confirmation else None)
        with self._vault_password(env, ask_password) as (args, vault_env):
            runner = self.runner_factory(RunnerSettings(
                environment=env, runner_dir=self.state_dir(env) / "runner", logs_dir=self.state_dir(env) / "logs",
                known_hosts=env.known_hosts, extra_env=vault_env, extra_args=args))
            common = dict(inventory=env.inventory, forks=max(1, len(plan.hosts)), limit=limit, tags=tags,
                          skip_tags=skip_tags, extra_vars=tuple(extra_vars), diff=diff, verbosity=verbosity)
            check = None
            if plan.check_first:
                self.progress(env.name, "check mode: what would change")
                changes: list[PlannedChange] = []
                result = runner.run(playbook=playbook, check=True, **common,
                                    on_event=lambda event: _collect_change(event, changes))
                check = CheckPreview(result, tuple(changes))
                check_confirmation(plan, confirm(plan, check) if plan.ask_confirmation else None)
            self.progress(env.name, f"applying {playbook.name} at {revision.describe()}")
            record_play, _ = write_stamp_playbooks(self.project_dir / ".devbox" / "stamp")
            stamp = make_stamp(environment=env.name, playbook=os.path.relpath(playbook, self.project_dir),
                               revision=revision, limit=limit,
                               tags=tags or (f"skipped {skip_tags}" if skip_tags else None))
            applied = runner.run(playbook=playbook, **common, on_progress=self.progress, after=(record_play,),
                                 extravars=stamp_extravars(stamp, plays=plays_roles(playbook),
                                                           path=self.applied_path))
        # the stamp play ran last in the same run: a host that succeeded has its record
        stamped = tuple(h.host for h in applied.hosts if h.succeeded)
        result = EnvProvisionResult(plan, revision, check, applied, stamped)
        if not result.ok:
            raise EnvProvisionFailed(result)
        return result

    # --- status -------------------------------------------------------------------------------------------
    def revisions(self, name: str | None, *, ask_password: AskPassword | None = None) -> list[HostRevision]:
        """What each host of the environment last had applied by devbox, read back in one run."""
        env = self.environment(name)
        # the guard and the inventory first: a wrong path or a production host leaves the project as it was
        if env.is_dev:
            inventory = self.project_dir / ".devbox" / "inventory"
            if self.dev_runner is None or not inventory.exists():
                raise UsageError("no development VMs yet", "run `devbox up` first")
            hosts = read_target_hosts(inventory)
        else:
            inventory, hosts = env.inventory, self.hosts(env)
        with self.lock(f"devbox status --env {env.name}"):
            return self._revisions(env, inventory, hosts, ask_password)

    def _revisions(self, env: Environment, inventory: Path, hosts, ask_password: AskPassword | None
                   ) -> list[HostRevision]:
        _, read_play = write_stamp_playbooks(self.project_dir / ".devbox" / "stamp")
        fetch_dir = self.state_dir(env) / "applied"
        fetch_dir.mkdir(parents=True, exist_ok=True)
        for old in fetch_dir.glob("*.json"):
            old.unlink()
        if env.is_dev:
            result = self.dev_runner.run(playbook=read_play, inventory=inventory, forks=max(1, len(hosts)),
                                         extravars=read_extravars(fetch_dir, path=self.applied_path))
        else:
            require_trusted(env.name, self.host_key_checker(list(hosts), env.known_hosts), env.known_hosts)
            # reading group_vars may need the vault even though nothing secret is used
            with self._vault_password(env, ask_password) as (args, vault_env):
                runner = self.runner_factory(RunnerSettings(
                    environment=env, runner_dir=self.state_dir(env) / "runner",
                    logs_dir=self.state_dir(env) / "logs", known_hosts=env.known_hosts, extra_env=vault_env,
                    extra_args=args))
                result = runner.run(playbook=read_play, inventory=env.inventory, forks=max(1, len(hosts)),
                                    extravars=read_extravars(fetch_dir, path=self.applied_path))
        unreachable = {f.host: ("unreachable" if f.unreachable else f.message.splitlines()[0])
                       for f in result.failures}
        return collect_fetched(fetch_dir, [h.name for h in hosts], unreachable)

    # --- secrets ------------------------------------------------------------------------------------------
    @contextmanager
    def _vault_password(self, env: Environment, ask_password: AskPassword | None
                        ) -> Iterator[tuple[tuple[str, ...], dict]]:
        """The vault arguments for this run; a prompted password lives in a 0600 file only while it runs."""
        labels = vault_labels(env.inventory)
        if not labels:
            yield (), {}
            return
        if env.vault_password_file is not None:
            if not env.vault_password_file.is_file():
                raise UsageError(f"vault password file {env.vault_password_file} of '{env.name}' does not exist",
                                 "create it or fix environments.{}.vault_password_file".format(env.name))
            yield vault_run_settings(env, env.vault_password_file, labels)
            return
        if ask_password is None:
            raise UsageError(f"'{env.name}' needs its vault password", "set vault_password_file in devbox.yml")
        with private_secret_file(ask_password(env)) as path:
            yield vault_run_settings(env, path, labels)


def _collect_change(event: dict, changes: list[PlannedChange]) -> None:
    data = event.get("event_data") or {}
    res = data.get("res") or {}
    if event.get("event") != "runner_on_ok" or not res.get("changed"):
        return
    task = f"{data['role']} : {data.get('task')}" if data.get("role") else str(data.get("task"))
    changes.append(PlannedChange(str(data.get("host")), task, diff_text(res.get("diff"))))


def diff_text(diff) -> str:
    """Ansible's structured diff (before/after or prepared) as unified diff text."""
    import difflib

    parts = []
    for d in diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []:
        if not isinstance(d, dict):
            continue
        if d.get("prepared"):
            parts.append(str(d["prepared"]).rstrip())
        elif "before" in d or "after" in d:
            before, after = str(d.get("before") or ""), str(d.get("after") or "")
            parts.extend(difflib.unified_diff(before.splitlines(), after.splitlines(),
                                              str(d.get("before_header") or "before"),
                                              str(d.get("after_header") or "after"), lineterm=""))
    return "\n".join(parts)


@contextmanager
def private_secret_file(secret: str) -> Iterator[Path]:
    """``secret`` in a 0600 file in a 0700 folder (in memory where /dev/shm exists), removed afterwards.

    A file, because a password on a command line is visible to every user in the process list and ansible-runner
    keeps command lines in its artifacts.
    """
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    # the pid in the name: a folder left behind names its process, and a test can tell its own from others'
    folder = tempfile.mkdtemp(prefix=f"devbox-vault-{os.getpid()}-", dir=base)
    path = Path(folder) / "password"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret.rstrip("\n") + "\n")
        yield path
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.rmdir(folder)
