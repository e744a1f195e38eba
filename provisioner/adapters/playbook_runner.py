"""Ansible behind a small interface: one playbook run over the development inventory.

``AnsibleRunnerPlaybookRunner`` runs ``ansible-playbook`` through ansible-runner with the settings that make
runs fast and safe (forks >= number of VMs, pipelining, SSH ControlPersist, a project-local known_hosts with
``accept-new``), streams per-host progress from the runner's events, and returns a per-host summary plus the
details of every failed task. ``summarize(stats)`` is pure.
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping, Sequence

from provisioner.adapters import process
from provisioner.adapters.mitogen import DEFAULT as DEFAULT_STRATEGY, Strategy
from provisioner.errors import CommandFailed, DevboxError
from provisioner.fsutil import atomic_write
from provisioner.adapters.sigint import SigintHold

HostProgress = Callable[[str, str], None]  # (host, "role : task")


@dataclass(frozen=True)
class HostSummary:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    duration: float = 0.0  # seconds from the host's first task start to its last task end

    @property
    def succeeded(self) -> bool:
        return not self.failed and not self.unreachable


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def __str__(self) -> str:
        kind = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: task `{self.task}` {kind}: {self.message}"


@dataclass(frozen=True)
class TaskChange:
    """A task that reported ``changed`` on a host (what `devbox idempotence` names)."""

    host: str
    task: str
    role: str | None = None

    def __str__(self) -> str:
        return f"{self.host}: {self.role + ' : ' if self.role else ''}{self.task}"


@dataclass(frozen=True)
class PlaybookResult:
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    rc: int
    hosts: tuple[HostSummary, ...]
    failures: tuple[TaskFailure, ...]
    log_path: str
    seconds: float
    argv: tuple[str, ...] = field(default=())
    strategy: Strategy = DEFAULT_STRATEGY  # how it ran (Mitogen, or why not when it was asked for)
    changes: tuple[TaskChange, ...] = ()  # every task that reported changed, per host, in the order they ran

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    def host(self, name: str) -> HostSummary | None:
        return next((h for h in self.hosts if h.host == name), None)


class PlaybookRunner(ABC):
    # Ansible's strategy for the runs; the app sets Mitogen's when the user opts in (adapters/mitogen.py choose)
    strategy: Strategy = DEFAULT_STRATEGY

    @abstractmethod
    def run(self, *, playbook: Path, inventory: Path, forks: int, limit: str | None = None,
            tags: str | None = None, check: bool = False, extravars: Mapping | None = None,
            on_progress: HostProgress | None = None,
            on_event: Callable[[Mapping], None] | None = None,
            after: Sequence[Path] = (), skip_tags: str | None = None, diff: bool = False,
            extra_vars: Sequence[str] = (), verbosity: int = 0) -> PlaybookResult:
        """Run ``playbook`` against ``inventory``; never raises for failed tasks (they are in the result).

        ``on_event`` receives every ansible-runner event as it arrives (e.g. parity reads the facts in them).
        ``after``: devbox's own playbooks (the revision stamp) run in the same ansible-playbook invocation,
        so they reach exactly the hosts that completed ``playbook`` (Ansible drops failed hosts from later plays).
        The user's pass-through to ansible-playbook: ``skip_tags`` (--skip-tags), ``diff`` (--diff; ``check``
        implies it), ``extra_vars`` (each one ``-e VALUE`` as typed: ``k=v``, JSON or ``@file``) and
        ``verbosity`` (-v... : 1 to 4).
        """

    def close_connections(self, *, targets: Sequence[tuple[str, int, str]]) -> None:
        """Close any kept-open SSH connection to ``targets`` ((host, port, user)): a VM put back to a snapshot
        with memory no longer knows the TCP connection a ControlPersist master holds, and the next run through
        that master would find it broken ("unreachable"). Default: no kept connections, nothing to do."""


# ----------------------------------------------------------------------------------------------- pure parts

_STAT_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
              "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}


def summarize(stats: Mapping | None, durations: Mapping[str, float] | None = None) -> tuple[HostSummary, ...]:
    """ansible-runner's ``stats`` ({"ok": {host: n}, "failures": {...}, ...}) -> one summary per host, sorted."""
    stats = stats or {}
    durations = durations or {}
    hosts: set[str] = set()
    for key in (*_STAT_KEYS, "processed"):
        hosts.update((stats.get(key) or {}).keys())
    return tuple(
        HostSummary(host=h, duration=round(durations.get(h, 0.0), 1),
                    **{field_: int((stats.get(key) or {}).get(h, 0)) for key, field_ in _STAT_KEYS.items()})
        for h in sorted(hosts))


def failure_from_event(event: Mapping) -> TaskFailure | None:
    """A ``runner_on_failed`` / ``runner_on_unreachable`` event -> what failed where, and Ansible's message."""
    kind = event.get("event")
    data = event.get("event_data") or {}
    if kind not in ("runner_on_failed", "runner_on_unreachable") or data.get("ignore_errors"):
        return None
    res = data.get("res") or {}
    message = str(res.get("msg") or "").strip()
    # For a command task the useful part is stderr; for a loop the per-item messages.
    for extra in ("stderr", "module_stderr"):
        if res.get(extra) and str(res[extra]).strip() not in message:
            message = (message + "\n" + str(res[extra]).strip()).strip()
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed") and item.get("msg"):
            message += f"\n  item {item.get('item')!r}: {item['msg']}"
    task = data.get("task") or "?"
    if data.get("role"):
        task = f"{data['role']} : {task}"
    return TaskFailure(host=data.get("host") or "?", task=task, message=message or "(no message)",
                       unreachable=kind == "runner_on_unreachable")


def change_from_event(event: Mapping) -> TaskChange | None:
    """A ``runner_on_ok`` event of a task that changed something (loops report the sum in the same event)."""
    data = event.get("event_data") or {}
    if event.get("event") != "runner_on_ok" or not (data.get("res") or {}).get("changed"):
        return None
    return TaskChange(host=str(data.get("host") or "?"), task=str(data.get("task") or "?"),
                      role=data.get("role") or None)


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class _EventCollector:
    """Turns the runner's event stream into progress callbacks, per-host timings and failures."""

    def __init__(self, on_progress: HostProgress | None, on_event: Callable[[Mapping], None] | None = None):
        self.on_progress = on_progress
        self.on_event = on_event
        self.failures: list[TaskFailure] = []
        self.changes: list[TaskChange] = []
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, event: dict) -> bool:
        data = event.get("event_data") or {}
        host = data.get("host")
        kind = event.get("event", "")
        if host and kind == "runner_on_start" and self.on_progress:
            task = data.get("task") or ""
            self.on_progress(host, f"{data['role']} : {task}" if data.get("role") else task)
        if host and kind.startswith("runner_on_"):
            for key, store, pick in (("start", self.first, min), ("end", self.last, max)):
                t = _parse_time(data.get(key))
                if t is not None:
                    store[host] = pick(store.get(host, t), t)
        failure = failure_from_event(event)
        if failure:
            self.failures.append(failure)
        change = change_from_event(event)
        if change:
            self.changes.append(change)
        if self.on_event:
            self.on_event(event)
        return True  # keep the event in the artifacts too

    def durations(self) -> dict[str, float]:
        return {h: max(0.0, self.last.get(h, t) - t) for h, t in self.first.items()}


# ------------------------------------------------------------------------------------------- implementation

def control_path_dir() -> str:
    """A short private folder for SSH ControlPersist sockets.

    A unix socket path is limited to 108 bytes; OpenSSH's ``%C`` alone is 40, so a folder inside a deep
    project directory would break multiplexing. One folder per user under the temp dir stays short.

    ``DEVBOX_SSH_CONTROL_DIR`` replaces it: each test lab sets its own. Labs are separate network namespaces
    whose VMs get the same addresses, and ``%C`` hashes host, port and user but not the namespace, so with a
    shared folder one lab's Ansible could reuse a master connection into another lab's VM.
    """
    override = os.environ.get("DEVBOX_SSH_CONTROL_DIR")
    path = Path(override) if override else Path(tempfile.gettempdir()) / f"devbox-cp-{os.getuid()}"
    if len(str(path)) + 1 + 40 > 100:
        raise DevboxError(f"SSH control folder {path} is too long for a unix socket path with its 40-character name",
                          "set DEVBOX_SSH_CONTROL_DIR to a shorter folder")
    path.mkdir(mode=0o700, parents=bool(override), exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise DevboxError(f"{path} is not a private folder of this user",
                          f"remove {path}; devbox recreates it with mode 0700")
    return str(path)


def ansible_env(*, known_hosts: Path, log_path: Path, strict_host_keys: bool = False) -> dict[str, str]:
    """Environment for ansible-playbook: the venv's Ansible first on PATH, and fast, safe SSH settings.

    ``strict_host_keys``: for shared environments (staging...) whose keys are pinned in a known_hosts file the
    team keeps; an unknown key is refused instead of recorded. ``GlobalKnownHostsFile=/dev/null`` then makes
    that file the only one that counts.
    """
    venv_bin = str(Path(sys.executable).parent)
    checking = ("StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null" if strict_host_keys
                else "StrictHostKeyChecking=accept-new")
    ssh_args = ("-o ControlMaster=auto -o ControlPersist=60s "
                f"-o UserKnownHostsFile={known_hosts} -o {checking}")
    return {
        # ansible-runner starts the first ansible-playbook on PATH; it must be the one devbox was installed with
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control_path_dir(),
        "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%C",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # connection and become-prompt timeout (default 10 s): software-emulated VMs on a busy machine take
        # longer than that for `sudo`, and a timeout there is reported as "unreachable"
        "ANSIBLE_TIMEOUT": "60",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_LOG_PATH": str(log_path),
    }


class AnsibleRunnerPlaybookRunner(PlaybookRunner):
    """ansible-runner with its private data dir under ``.devbox/runner/`` and Ansible's log in ``logs_dir``."""

    def close_connections(self, *, targets: Sequence[tuple[str, int, str]]) -> None:
        # `ssh -O exit` asks the master at ControlPath for that destination to stop; ssh computes %C itself as
        # for the runs. No master there: ssh says so (exit 255), which is fine.
        control = os.path.join(control_path_dir(), "%C")
        for host, port, user in targets:
            process.run(["ssh", "-o", f"ControlPath={control}", "-O", "exit", "-p", str(port), f"{user}@{host}"],
                        log_path=self.logs_dir / "ssh-control.log", timeout=30)

    def __init__(self, *, runner_dir: Path, logs_dir: Path, known_hosts: Path, keep_artifacts: int = 10,
                 strict_host_keys: bool = False, extra_env: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = ()):
        self.runner_dir = Path(runner_dir)
        self.logs_dir = Path(logs_dir)
        self.known_hosts = Path(known_hosts)
        self.keep_artifacts = keep_artifacts
        # runs against a named environment: pinned host keys, vault settings (e.g. `--vault-id
        # staging@FILE`, never a password itself: ansible-runner records the command line in its artifacts)
        self.strict_host_keys = strict_host_keys
        self.extra_env = dict(extra_env or {})
        self.extra_args = tuple(extra_args)

    def run(self, *, playbook: Path, inventory: Path, forks: int, limit: str | None = None,
            tags: str | None = None, check: bool = False, extravars: Mapping | None = None,
            on_progress: HostProgress | None = None,
            on_event: Callable[[Mapping], None] | None = None,
            after: Sequence[Path] = (), skip_tags: str | None = None, diff: bool = False,
            extra_vars: Sequence[str] = (), verbosity: int = 0) -> PlaybookResult:
        import ansible_runner  # adapter-only dependency

        playbook = Path(playbook).resolve()
        inventory = Path(inventory).resolve()  # ansible-playbook runs in the playbook's folder, not ours
        if not playbook.is_file():
            raise DevboxError(f"playbook {playbook} does not exist", "set `playbook:` in devbox.yml")
        if not inventory.exists():
            raise DevboxError(f"inventory {inventory} does not exist", "run `devbox init` to generate it")
        self.runner_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        if not self.strict_host_keys:  # a pinned file is the team's; devbox only writes it on `devbox trust`
            self.known_hosts.touch(exist_ok=True)
        log_path = self.logs_dir / "ansible.log"
        collector = _EventCollector(on_progress, on_event)
        extra = (*(("--check",) if check else ()), *(("--diff",) if check or diff else ()),
                 *(a for value in extra_vars for a in ("-e", value)), *self.extra_args)
        cmdline = " ".join(shlex.quote(a) for a in extra) or None
        after = tuple(Path(p).resolve() for p in after)
        argv = ("ansible-playbook", "-i", str(inventory), str(playbook), *map(str, after),
                *(("--limit", limit) if limit else ()), *(("--tags", tags) if tags else ()),
                *(("--skip-tags", skip_tags) if skip_tags else ()), *((f"-{'v' * verbosity}",) if verbosity else ()),
                *extra)
        run_playbook = _chain(self.runner_dir, playbook, after) if after else playbook
        started = time.monotonic()
        with _cancel_on_sigint() as cancelled:
            runner = ansible_runner.run(
                private_data_dir=str(self.runner_dir),
                # the playbooks' own folder as working directory, so their ansible.cfg (roles_path...) applies;
                # inventory and SSH settings given here override anything in it
                project_dir=str(playbook.parent),
                artifact_dir=str(self.runner_dir / "artifacts"),
                rotate_artifacts=self.keep_artifacts,
                ident=f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",  # unique within a second too
                playbook=str(run_playbook),
                inventory=str(inventory),
                envvars={**ansible_env(known_hosts=self.known_hosts, log_path=log_path,
                                       strict_host_keys=self.strict_host_keys), **self.strategy.env,
                         **self.extra_env},
                extravars=dict(extravars) if extravars else None,
                cmdline=cmdline,
                limit=limit,
                tags=tags,
                skip_tags=skip_tags,
                verbosity=verbosity or None,
                forks=max(1, forks),
                event_handler=collector,
                cancel_callback=cancelled,
                suppress_env_files=True,
                quiet=True,
            )
        seconds = time.monotonic() - started
        if cancelled():
            raise KeyboardInterrupt
        hosts = summarize(runner.stats, collector.durations())
        result = PlaybookResult(status=runner.status, rc=runner.rc if runner.rc is not None else -1, hosts=hosts,
                                failures=tuple(collector.failures), log_path=str(log_path), seconds=seconds,
                                argv=argv, strategy=self.strategy, changes=tuple(collector.changes))
        if not result.ok and not result.failures and not any(not h.succeeded for h in hosts):
            # Ansible stopped before any task could fail: syntax error, missing role, bad inventory...
            raise CommandFailed(list(argv), result.rc, _stdout_tail(runner), log_path=str(log_path),
                                what="ansible-playbook stopped before running the play",
                                hint="fix the playbook or inventory error shown above")
        return result


def _chain(runner_dir: Path, playbook: Path, after: Sequence[Path]) -> Path:
    """A playbook importing ``playbook`` then ``after``: ansible-runner takes one playbook argument.

    ``import_playbook`` keeps each playbook's own folder as its ``playbook_dir`` (roles, group_vars next to
    it), and the run's working directory stays the main playbook's folder (its ansible.cfg). Collections in a
    ``collections/`` folder next to ``playbook`` are found through a link next to the chain: ansible-playbook
    searches next to the playbooks it is given, and an imported playbook's folder is not added (ansible-core
    2.19 means to, but the addition is lost: its issue 85357).
    """
    import json

    link = runner_dir / "collections"
    if link.is_symlink():
        link.unlink()
    if (playbook.parent / "collections").is_dir() and not link.exists():
        os.symlink(playbook.parent / "collections", link)
    chain = runner_dir / "chain.yml"
    text = "# Generated by devbox for one run: the team's playbook, then devbox's own.\n"
    text += "".join(f"- import_playbook: {json.dumps(str(p))}\n" for p in (playbook, *after))
    atomic_write(chain, text)
    return chain


def _stdout_tail(runner, lines: int = 15) -> str:
    try:
        text = runner.stdout.read()
    except Exception:  # the artifacts may be missing if ansible-playbook never started
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class _cancel_on_sigint(SigintHold):
    """Ctrl-C asks ansible-runner to stop ansible-playbook (which runs in its own pty session and would not see
    the signal) instead of abandoning it; the caller then re-raises ``KeyboardInterrupt``."""
