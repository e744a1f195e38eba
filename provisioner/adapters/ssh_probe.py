"""Is a VM answering SSH? Bounded, per host, in parallel, with paramiko (no `vagrant ssh` Ruby start-up per VM).

Host keys: devbox's own connections to dev VMs use the project known_hosts file with accept-new semantics,
the same as ``StrictHostKeyChecking=accept-new`` for Ansible: a host seen for the first time is added, a host
whose key changed is refused (a changed key on an address devbox manages means a recreated VM whose old entry
was not removed, or something else answering on that address; neither should be trusted silently).
"""
from __future__ import annotations

import socket
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class SshTarget:
    name: str
    host: str
    port: int
    user: str
    key_file: str
    console_log: str | None = None  # where to look when the VM never answers (serial console or vagrant log)


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ready: bool
    seconds: float
    error: str | None = None  # why it is not ready, naming the VM and where to look


class SshProbe(ABC):
    @abstractmethod
    def wait_ready(self, *, targets: Sequence[SshTarget], timeout: float,
                   on_ready: Callable[[str], None] | None = None) -> dict[str, ProbeResult]:
        """Wait, for each target in parallel and at most ``timeout`` seconds, until it runs a command over SSH."""

    @abstractmethod
    def reachable(self, *, targets: Sequence[SshTarget], timeout: float) -> dict[str, bool]:
        """A cheap check: does something accept a TCP connection on each target's SSH address?"""


def tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def known_hosts_name(host: str, port: int) -> str:
    """The key OpenSSH and paramiko use in known_hosts: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyChanged(Exception):
    pass


class ProjectKnownHosts:
    """The project's known_hosts file, shared by threads: accept new keys, refuse changed ones."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def knows(self, host: str, port: int) -> bool:
        import paramiko

        with self._lock:
            return self.path.exists() and paramiko.HostKeys(str(self.path)).lookup(known_hosts_name(host, port)) is not None

    def check_or_add(self, host: str, port: int, key) -> None:
        import paramiko

        name = known_hosts_name(host, port)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
            keys = paramiko.HostKeys(str(self.path))
            known = keys.lookup(name)
            if known is None:
                # append, not rewrite: OpenSSH (Ansible) may be adding its own lines to the same file
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(paramiko.hostkeys.HostKeyEntry([name], key).to_line())
                return
            if known.get(key.get_name()) == key:
                return  # another thread added the same key meanwhile
            # a different key, or only keys of another type: refused, as paramiko does for loaded keys
            raise HostKeyChanged(name)


class ParamikoSshProbe(SshProbe):
    def __init__(self, *, known_hosts: Path, interval: float = 1.0, connect_timeout: float = 5.0):
        self.known_hosts = ProjectKnownHosts(known_hosts)
        self.interval = interval
        self.connect_timeout = connect_timeout

    def reachable(self, *, targets: Sequence[SshTarget], timeout: float) -> dict[str, bool]:
        if not targets:
            return {}
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            found = pool.map(lambda t: tcp_open(t.host, t.port, timeout), targets)
            return {t.name: ok for t, ok in zip(targets, found)}

    def wait_ready(self, *, targets: Sequence[SshTarget], timeout: float,
                   on_ready: Callable[[str], None] | None = None) -> dict[str, ProbeResult]:
        if not targets:
            return {}
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            results = list(pool.map(lambda t: self._wait_one(t, timeout, on_ready), targets))
        return {r.name: r for r in results}

    def _wait_one(self, target: SshTarget, timeout: float, on_ready) -> ProbeResult:
        started = time.monotonic()
        deadline = started + timeout
        last_error = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._run_true(target, min(self.connect_timeout, max(remaining, 0.5)))
            except HostKeyChanged as exc:
                return ProbeResult(target.name, False, time.monotonic() - started,
                                   f"{target.name}: the SSH host key of {exc} differs from the one in "
                                   f"{self.known_hosts.path}; if the VM was recreated outside devbox, remove the "
                                   f"old entry with `ssh-keygen -f {self.known_hosts.path} -R '{exc}'`")
            except Exception as exc:  # network, protocol and auth errors all mean "not ready yet" while booting
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if on_ready:
                    on_ready(target.name)
                return ProbeResult(target.name, True, time.monotonic() - started)
            time.sleep(min(self.interval, max(0.0, deadline - time.monotonic())))
        where = f"; its console log: {target.console_log}" if target.console_log else ""
        return ProbeResult(target.name, False, time.monotonic() - started,
                           f"{target.name} did not answer SSH on {target.host}:{target.port} within "
                           f"{timeout:.0f}s (last error: {last_error}){where}")

    def _run_true(self, target: SshTarget, timeout: float) -> None:
        import paramiko

        known_hosts = self.known_hosts

        class AcceptNew(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                known_hosts.check_or_add(target.host, target.port, key)

        client = paramiko.SSHClient()
        try:
            # keys already known for this address: paramiko compares them itself and raises BadHostKeyException
            if known_hosts.path.exists():
                client.load_host_keys(str(known_hosts.path))
            client.set_missing_host_key_policy(AcceptNew())
            try:
                client.connect(target.host, port=target.port, username=target.user,
                               key_filename=target.key_file or None, timeout=timeout, banner_timeout=timeout,
                               auth_timeout=timeout, allow_agent=False, look_for_keys=False)
            except paramiko.BadHostKeyException:
                raise HostKeyChanged(known_hosts_name(target.host, target.port)) from None
            _stdin, stdout, _stderr = client.exec_command("true", timeout=timeout)
            status = stdout.channel.recv_exit_status()
            if status != 0:
                raise RuntimeError(f"`true` exited with {status}")
        finally:
            client.close()
