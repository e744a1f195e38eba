"""Vagrant behind a small interface: boot, stop, delete, and the two read commands devbox needs.

``PythonVagrantDriver`` uses python-vagrant for the commands that change machines (up/halt/destroy) and sends
their output to log files under ``.devbox/logs/``. python-vagrant swallows failures of its read commands
(``status``, ``ssh_config`` return partial output when ``vagrant`` fails), so those two are run through
``process.run`` here and every result is checked. The parsers are pure functions, tested on captured output.
"""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from provisioner.adapters import process
from provisioner.adapters.sigint import SigintHold
from provisioner.errors import CommandFailed, DevboxError, RenderError

# libvirt says `shutoff` and `paused` where VirtualBox (and python-vagrant's normalisation) say `poweroff` and
# `saved`: devbox reports one vocabulary whatever the provider.
_STATE_ALIASES = {"shutoff": "poweroff", "paused": "saved", "shutdown": "poweroff"}

RUNNING = "running"
POWEROFF = "poweroff"
NOT_CREATED = "not_created"


SSH_DETAILS_DIR = ".devbox/ssh-details"  # where Vagrantfile.j2's after-up trigger records each machine's SSH details


@dataclass(frozen=True)
class MachineState:
    name: str
    state: str  # running, poweroff, not_created, saved, aborted, ... (normalised, see _STATE_ALIASES)
    provider: str | None = None


@dataclass(frozen=True)
class SshConfig:
    """One ``Host`` block of ``vagrant ssh-config``: what ssh, paramiko and Ansible need to reach a VM."""

    name: str
    host: str
    port: int
    user: str
    identity_file: str
    options: tuple[tuple[str, str], ...] = field(default=())  # every other line, in order, for reference

    def to_json(self) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "identity_file": self.identity_file}

    @classmethod
    def from_json(cls, name: str, data: Mapping) -> "SshConfig":
        return cls(name=name, host=data["host"], port=int(data["port"]), user=data["user"],
                   identity_file=data["identity_file"])


@dataclass(frozen=True)
class VagrantRun:
    """What a state-changing vagrant command did: the command, how long it took, where its output went."""

    argv: tuple[str, ...]
    seconds: float
    log_path: str


class VagrantDriver(ABC):
    """The Vagrant operations devbox uses. All arguments are keyword-only so call sites read unambiguously."""

    @abstractmethod
    def up(self, *, names: Sequence[str], parallel: bool = True) -> VagrantRun:
        """Create/boot ``names`` with Vagrant's provisioners off (devbox provisions in one Ansible run)."""

    @abstractmethod
    def status(self) -> dict[str, MachineState]:
        """Provider state of every machine in the Vagrantfile, from one ``vagrant status`` call."""

    @abstractmethod
    def ssh_config(self, *, names: Sequence[str] = ()) -> dict[str, SshConfig]:
        """Connection details of ``names`` (all machines if empty), from one ``vagrant ssh-config`` call."""

    @abstractmethod
    def halt(self, *, names: Sequence[str]) -> VagrantRun:
        """Shut ``names`` down (all if empty)."""

    @abstractmethod
    def destroy(self, *, names: Sequence[str]) -> VagrantRun:
        """Delete ``names`` (all if empty) without asking; the app asks the user first."""

    @abstractmethod
    def validate(self) -> None:
        """Let Vagrant check the Vagrantfile; raise ``CommandFailed`` if it rejects it."""

    # Snapshots: the provider's own (libvirt: internal qcow2 snapshots, with memory when the VM runs). One VM per
    # call: `vagrant snapshot` takes at most one machine name, and without one it trips over machines not created.
    @abstractmethod
    def snapshot_save(self, *, name: str, snapshot: str) -> VagrantRun:
        """Take ``snapshot`` of machine ``name``, replacing one of the same name."""

    @abstractmethod
    def snapshot_restore(self, *, name: str, snapshot: str) -> VagrantRun:
        """Put machine ``name`` back to ``snapshot`` (running if it was running when taken)."""

    @abstractmethod
    def snapshot_delete(self, *, name: str, snapshot: str) -> VagrantRun:
        """Delete ``snapshot`` of machine ``name``."""

    @abstractmethod
    def snapshot_list(self) -> dict[str, tuple[str, ...]]:
        """The provider's snapshots of every created machine, from one ``vagrant snapshot list`` call."""

    def recorded_ssh_config(self, *, names: Sequence[str], since: float) -> dict[str, SshConfig]:
        """Connection details the Vagrantfile recorded while ``names`` booted (after ``since``, a wall-clock
        time), without starting Vagrant; a machine with nothing recorded is left out (ask ``ssh_config``)."""
        return {}

    def none_created(self, names: Sequence[str]) -> bool:
        """True only when it is certain, without starting Vagrant, that none of ``names`` exists yet; a first
        ``devbox up`` then needs no ``vagrant status``. When unsure, False (the caller asks Vagrant)."""
        return False


# ---------------------------------------------------------------------------------------------------- parsers

def _unescape(data: str) -> str:
    return data.replace("%!(VAGRANT_COMMA)", ",").replace("\\n", "\n")


def parse_machine_readable(text: str) -> list[tuple[str, str, str]]:
    """``timestamp,target,kind,data...`` lines -> ``(target, kind, data)``; data keeps its own commas."""
    rows = []
    for line in text.splitlines():
        parts = line.split(",", 3)
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue  # not a machine-readable line (plugin warnings, Ruby deprecation notes...)
        rows.append((parts[1], parts[2], _unescape(parts[3]) if len(parts) > 3 else ""))
    return rows


def machine_readable_error(text: str) -> str | None:
    """The message of an ``error-exit`` line, if Vagrant reported one."""
    for _target, kind, data in parse_machine_readable(text):
        if kind == "error-exit":
            return data.split(",", 1)[-1].strip()
    return None


def parse_status(text: str) -> dict[str, MachineState]:
    """Parse ``vagrant status --machine-readable`` into ``{name: MachineState}`` in Vagrantfile order."""
    states: dict[str, str] = {}
    providers: dict[str, str] = {}
    order: list[str] = []
    for target, kind, data in parse_machine_readable(text):
        if not target:
            continue
        if target not in order:
            order.append(target)
        if kind == "state":
            states[target] = _STATE_ALIASES.get(data, data)
        elif kind == "provider-name":
            providers[target] = data
    return {name: MachineState(name, states[name], providers.get(name)) for name in order if name in states}


def snapshot_argv(action: str, machine: str, snapshot: str) -> list[str]:
    """The `vagrant snapshot` arguments for one machine: ``save`` replaces a snapshot of the same name
    (``--force``; devbox asks first), ``restore`` runs none of Vagrant's provisioners (devbox provisions).

    Vagrant 2.3 skips a machine not created with exit code 0 on ``save`` and crashes on ``restore``/``delete``:
    callers check that the machine exists first."""
    options = {"save": ["--force"], "restore": ["--no-provision"], "delete": []}[action]
    return ["snapshot", action, *options, machine, snapshot]


_NO_SNAPSHOTS = "No snapshots have been taken yet!"


def parse_snapshot_list(text: str) -> dict[str, tuple[str, ...]]:
    """``vagrant snapshot list --machine-readable`` -> ``{machine: (snapshot, ...)}`` for created machines.

    Per machine Vagrant prints either ``ui,output`` "No snapshots have been taken yet!" and a ``ui,detail`` hint,
    or one ``ui,detail`` line per snapshot; a machine not created gets ``ui,info`` "VM not created" only."""
    details: dict[str, list[str]] = {}
    empty: set[str] = set()
    for target, kind, data in parse_machine_readable(text):
        if not target or kind != "ui":
            continue
        level, _, message = data.partition(",")
        if level == "output":
            details.setdefault(target, [])
            if _NO_SNAPSHOTS in message:
                empty.add(target)
        elif level == "detail" and target in details and message.strip():
            details[target].append(message.strip())
    return {name: () if name in empty else tuple(found) for name, found in details.items()}


_SSH_CONFIG_HINT = "run `vagrant ssh-config` in the project directory to see what Vagrant reports"
_HOST_LINE = re.compile(r"^[ \t]*Host[ \t]+(.+)$", re.MULTILINE | re.IGNORECASE)


def parse_ssh_config(text: str) -> dict[str, SshConfig]:
    """Parse ``vagrant ssh-config`` output (one ``Host`` block per machine) into ``{name: SshConfig}``, in
    Vagrant's order.

    paramiko's ``SSHConfig`` reads it as ssh does (case-insensitive keys, quoted values, the first value of a
    key wins, several ``IdentityFile`` lines kept in order, of which devbox uses the first). Whatever Vagrant
    prints before the first ``Host`` line (warnings, "not yet ready for SSH") is not ssh_config and is left out.
    """
    # paramiko is imported here: importing it costs a large part of devbox's start-up, and most commands
    # never parse `vagrant ssh-config`
    import paramiko
    from paramiko.ssh_exception import ConfigParseError

    first = _HOST_LINE.search(text)
    if first is None:
        return {}
    try:
        config = paramiko.SSHConfig.from_text(text[first.start():])
    except ConfigParseError as exc:
        raise DevboxError(f"`vagrant ssh-config` printed something ssh_config cannot hold: {exc}",
                          _SSH_CONFIG_HINT) from None
    known = config.get_hostnames()
    names = dict.fromkeys(n for line in _HOST_LINE.findall(text[first.start():]) for n in line.split()
                          if n in known and not any(c in n for c in "*?!"))
    result = {}
    for name in names:
        entry = config.lookup(name)   # HostName defaults to the name itself, as for ssh
        missing = [k for k in ("port", "user") if k not in entry]
        if missing:
            raise DevboxError(f"`vagrant ssh-config` gave no {', '.join(missing)} for {name}", _SSH_CONFIG_HINT)
        try:
            port = int(entry["port"])
        except ValueError:
            raise DevboxError(f"`vagrant ssh-config` gave port {entry['port']!r} for {name}", _SSH_CONFIG_HINT) from None
        identities = entry.get("identityfile") or [""]
        options = tuple((key, "none" if v is None else v) for key, value in entry.items()
                        if key not in ("hostname", "port", "user", "identityfile")
                        for v in (value if isinstance(value, list) else [value]))
        result[name] = SshConfig(name=name, host=entry["hostname"], port=port, user=entry["user"],
                                 identity_file=identities[0], options=options)
    return result


# ------------------------------------------------------------------------------------------- validation

VALIDATE_TIMEOUT = 120
PROVIDER_UNUSABLE = "isn't usable on this system"
LIBVIRT_UNREACHABLE = "Error while connecting to Libvirt"


def run_validate(project_dir: Path, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None) -> process.ProcessResult:
    """`vagrant validate` in ``project_dir`` with a throwaway dotfile folder (validating must not leave a
    `.vagrant/` behind). Where the provider is not installed on this machine (e.g. VirtualBox on a libvirt
    host), the file is still checked, without the provider's own settings."""
    with tempfile.TemporaryDirectory(prefix="devbox-validate-") as dotfile:
        full_env = {**(env or {}), "VAGRANT_DOTFILE_PATH": dotfile}
        result = process.run(["vagrant", "validate"], cwd=project_dir, timeout=VALIDATE_TIMEOUT, env=full_env,
                             log_path=log_path)
        if not result.ok and LIBVIRT_UNREACHABLE in result.stdout + result.stderr:
            # A libvirt shared folder (9p, virtiofs) makes Vagrant ask libvirt's version while validating: without
            # a running libvirtd (`devbox init` on a laptop before set-up, the unit tier) the file is checked
            # against libvirt's built-in test hypervisor, which needs no daemon. `devbox doctor` checks the real one.
            result = process.run(["vagrant", "validate"], cwd=project_dir, timeout=VALIDATE_TIMEOUT,
                                 env={**full_env, "LIBVIRT_DEFAULT_URI": "test:///default"}, log_path=log_path)
        if not result.ok and PROVIDER_UNUSABLE in result.stdout + result.stderr:
            result = process.run(["vagrant", "validate", "--ignore-provider"], cwd=project_dir,
                                 timeout=VALIDATE_TIMEOUT, env=full_env, log_path=log_path)
    return result


def validate_vagrantfile(project_dir: Path) -> None:
    """A freshly rendered ``project_dir/Vagrantfile`` checked by the real Vagrant; a rejection is a
    ``RenderError`` with Vagrant's own message."""
    result = run_validate(Path(project_dir))
    if not result.ok:
        raise RenderError(f"vagrant rejected the rendered Vagrantfile (`vagrant validate` exited with "
                          f"{result.returncode}):\n" + "\n".join("  " + l for l in result.tail().splitlines()),
                          "the previous Vagrantfile was kept; fix Vagrantfile.j2 or devbox.yml and run again")


# ------------------------------------------------------------------------------------------- implementation

class PythonVagrantDriver(VagrantDriver):
    """python-vagrant for up/halt/destroy (output to ``logs_dir``), ``process.run`` for the read commands."""

    def __init__(self, *, root: Path, logs_dir: Path, env: Mapping[str, str] | None = None):
        self.root = Path(root)
        self.logs_dir = Path(logs_dir)
        self.env = dict(env or {})

    # python-vagrant's up/halt/destroy take one machine name; the multi-machine form (`vagrant up a b`) is one
    # Ruby start-up instead of N and is not in its public API, so the command runs through devbox's own process
    # runner, with the executable python-vagrant finds and the output going to the log.
    def _change(self, action: str, args: list[str], what: str, hint: str) -> VagrantRun:
        import vagrant  # imported here so the core and the unit tests never need it

        log_path = self.logs_dir / f"vagrant-{action}.log"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        argv = ["vagrant", *args]
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} $ {' '.join(argv)}\n")
            start_offset = fh.tell()
        executable = vagrant.get_vagrant_executable()
        if executable is None:
            raise DevboxError("cannot run vagrant: it is not installed or not on PATH",
                              "install vagrant (run `devbox doctor`)")
        started = time.monotonic()
        with _sigint_after_child() as interrupted:
            returncode = process.run_to_log([executable, *args], cwd=self.root, env=self.env or None,
                                            log_path=log_path)
        if interrupted():
            raise KeyboardInterrupt
        if returncode != 0:
            raise CommandFailed(argv, returncode, _tail_since(log_path, start_offset), log_path=str(log_path),
                                what=what, hint=hint)
        return VagrantRun(tuple(argv), time.monotonic() - started, str(log_path))

    def up(self, *, names: Sequence[str], parallel: bool = True) -> VagrantRun:
        args = ["up", "--no-provision", "--parallel" if parallel else "--no-parallel", *names]
        return self._change("up", args, f"booting {', '.join(names) or 'all machines'} failed",
                            "see the log; `devbox doctor` checks vagrant, libvirt and the box")

    def halt(self, *, names: Sequence[str]) -> VagrantRun:
        return self._change("halt", ["halt", *names], f"halting {', '.join(names) or 'all machines'} failed",
                            "see the log; `devbox destroy` removes a machine that will not stop")

    def destroy(self, *, names: Sequence[str]) -> VagrantRun:
        return self._change("destroy", ["destroy", "--force", *names],
                            f"destroying {', '.join(names) or 'all machines'} failed",
                            "see the log; `virsh list --all` shows what libvirt still has")

    def _read(self, args: list[str], what: str) -> process.ProcessResult:
        log_path = self.logs_dir / "vagrant-read.log"
        return process.run(["vagrant", *args], cwd=self.root, env=self.env or None, log_path=log_path,
                           timeout=300).check(what=what, hint="see the log; `devbox doctor` checks the setup")

    def status(self) -> dict[str, MachineState]:
        result = self._read(["status", "--machine-readable"], "reading machine states failed")
        states = parse_status(result.stdout)
        if not states:
            raise CommandFailed(list(result.argv), result.returncode, result.tail(), log_path=result.log_path,
                                what="`vagrant status` listed no machines")
        return states

    def ssh_config(self, *, names: Sequence[str] = ()) -> dict[str, SshConfig]:
        result = self._read(["ssh-config", *names], "reading SSH connection details failed")
        configs = parse_ssh_config(result.stdout)
        missing = [n for n in names if n not in configs]
        if missing or not configs:
            raise CommandFailed(list(result.argv), result.returncode, result.tail(), log_path=result.log_path,
                                what=f"`vagrant ssh-config` gave nothing for {', '.join(missing) or 'any machine'}")
        return configs

    def validate(self) -> None:
        self._read(["validate"], "Vagrant rejected the Vagrantfile")

    def snapshot_save(self, *, name: str, snapshot: str) -> VagrantRun:
        return self._change("snapshot", snapshot_argv("save", name, snapshot),
                            f"saving snapshot {snapshot} of {name} failed",
                            "see the log; `virsh snapshot-list` shows what libvirt holds")

    def snapshot_restore(self, *, name: str, snapshot: str) -> VagrantRun:
        return self._change("snapshot", snapshot_argv("restore", name, snapshot),
                            f"restoring snapshot {snapshot} of {name} failed",
                            "see the log; `devbox snapshot list` shows the snapshots devbox knows")

    def snapshot_delete(self, *, name: str, snapshot: str) -> VagrantRun:
        return self._change("snapshot", snapshot_argv("delete", name, snapshot),
                            f"deleting snapshot {snapshot} of {name} failed",
                            "see the log; `virsh snapshot-list` shows what libvirt holds")

    def snapshot_list(self) -> dict[str, tuple[str, ...]]:
        result = self._read(["snapshot", "list", "--machine-readable"], "listing snapshots failed")
        return parse_snapshot_list(result.stdout)

    def recorded_ssh_config(self, *, names: Sequence[str], since: float) -> dict[str, SshConfig]:
        # Vagrantfile.j2's after-up trigger writes them; one from an earlier boot may be out of date (a new
        # DHCP lease), so only files written since this boot began count
        found = {}
        for name in names:
            path = self.root / SSH_DETAILS_DIR / f"{name}.json"
            try:
                if path.stat().st_mtime < since:
                    continue
                found[name] = SshConfig.from_json(name, json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found

    def none_created(self, names: Sequence[str]) -> bool:
        # Vagrant records a created machine as .vagrant/machines/NAME/PROVIDER/id (the folder can move with
        # VAGRANT_DOTFILE_PATH); with no such file for any of the names, none of them exists.
        if not names:
            return False
        dotfile = self.env.get("VAGRANT_DOTFILE_PATH") or os.environ.get("VAGRANT_DOTFILE_PATH") or ".vagrant"
        machines = self.root / dotfile / "machines"
        return not any(any(machines.glob(f"{glob.escape(n)}/*/id")) for n in names)


class _sigint_after_child(SigintHold):
    """Ctrl-C reaches vagrant too (same process group), and vagrant cleans up before it exits (a half-created
    domain is destroyed, its lock released). Python's subprocess would kill it 0.25 s after our own
    KeyboardInterrupt, so the first Ctrl-C is held until vagrant has exited; a second one interrupts at once."""

    def on_sigint(self) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _tail_since(path: Path, offset: int, lines: int = process.TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            fh.seek(offset)
            text = fh.read()
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
