"""SSH host keys pinned per environment, in a known_hosts file kept with the project.

The development VMs are throwaway and Vagrant manages their keys. Every other environment has a known_hosts file
(``environments/<env>.known_hosts`` next to devbox.yml by default) that the team commits, so everyone connects
to the same machines. ``devbox trust --env staging`` fetches each host's key with a bare SSH handshake (no
login), shows its SHA256 fingerprint and, once confirmed, records it. Before any run against the environment,
every host is probed the same way: an unknown or changed key stops the run before a single task.

devbox's own connections use paramiko's ``RejectPolicy`` with that file only (``pinned_client``); Ansible's get
``StrictHostKeyChecking=yes`` and ``UserKnownHostsFile=<that file>`` (``playbook_runner.ansible_env`` with
``strict_host_keys``). The pre-flight probe matters even so: an SSH master connection kept open by
ControlPersist from an earlier run would not look at the key again.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import paramiko

from provisioner.environments.model import TargetHost
from provisioner.errors import SafetyError
from provisioner.fsutil import atomic_write

# One handshake per type, so the file pins every key the host has and the OpenSSH client (which prefers
# whichever types it already knows for a host) and paramiko agree on what to check.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")
# the name a key has in known_hosts -> the host-key algorithms that negotiate it (paramiko no longer offers the
# SHA-1 "ssh-rsa" signature; an RSA key is fetched with the SHA-2 ones)
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


def _negotiable(key_types) -> tuple[str, ...]:
    supported = set(paramiko.Transport._preferred_keys)
    return tuple(dict.fromkeys(a for t in key_types for a in _ALGORITHMS.get(t, (t,)) if a in supported))

TRUSTED, UNKNOWN, CHANGED, UNREACHABLE = "trusted", "unknown", "changed", "unreachable"
_QUIET_CHANNEL = "devbox.trust.handshake"
logging.getLogger(_QUIET_CHANNEL).setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class OfferedKey:
    key_type: str        # as written in known_hosts, e.g. ssh-ed25519
    fingerprint: str     # SHA256:..., as `ssh-keygen -lf` prints it
    base64: str = field(repr=False)


@dataclass(frozen=True)
class HostKeyCheck:
    host: TargetHost
    entry: str                       # the known_hosts name: address, or [address]:port
    status: str                      # trusted | unknown | changed | unreachable
    offered: tuple[OfferedKey, ...]  # what the host presented during this check
    pinned: tuple[str, ...] = ()     # fingerprints recorded for it
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == TRUSTED


def known_hosts_name(address: str, port: int = 22) -> str:
    """The name OpenSSH looks up: the bare address on port 22, ``[address]:port`` otherwise."""
    return address if int(port) == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _offered(key: paramiko.PKey) -> OfferedKey:
    return OfferedKey(key.get_name(), fingerprint(key), key.get_base64())


class Route:
    """Fresh streams to a host for handshakes: a TCP connection, or a channel through its ProxyJump host.

    The jump host is logged in to with devbox's own pinned client (its key must be pinned too: a jump host that
    is not who it claims to be could answer for every host behind it), as the jump spec's user (or the host's
    ``ansible_user``) with the host's key file, the SSH agent or the default keys.
    """

    def __init__(self, host: TargetHost, known_hosts: Path, timeout: float = 10.0):
        self.host, self.known_hosts, self.timeout = host, known_hosts, timeout
        self.client: paramiko.SSHClient | None = None

    def __enter__(self) -> "Route":
        if self.host.jump:
            user, address, port = parse_jump(self.host.jump)
            self.client = pinned_client(self.known_hosts)
            try:
                self.client.connect(address, port, username=user or self.host.user, key_filename=self.host.key_file,
                                    timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout)
            except Exception as exc:
                self.client.close()
                raise JumpFailed(f"jump host {self.host.jump}: {exc}") from exc
        return self

    def open(self):
        if self.client is None:
            return socket.create_connection((self.host.address, self.host.port), timeout=self.timeout)
        return self.client.get_transport().open_channel("direct-tcpip", (self.host.address, self.host.port),
                                                         ("127.0.0.1", 0), timeout=self.timeout)

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()


class JumpFailed(paramiko.SSHException):
    pass


def parse_jump(spec: str) -> tuple[str | None, str, int]:
    """``user@host:port`` (user and port optional, ``[v6]:port`` too) -> (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    if rest.startswith("["):
        address, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        address, _, port = rest.partition(":")
    return (user or None), address, int(port or 22)


def fetch_host_key(route: Route, key_types: Sequence[str], *, timeout: float = 10.0) -> paramiko.PKey:
    """The host key the server presents when the client accepts only ``key_types``. No authentication."""
    sock = route.open()
    transport = paramiko.Transport(sock)
    # a server without a key of the asked type is an expected answer (the caller reports it), not a log error
    transport.set_log_channel(_QUIET_CHANNEL)
    try:
        transport.get_security_options().key_types = tuple(key_types)
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()
        sock.close()


def fetch_host_keys(route: Route, *, timeout: float = 10.0) -> list[paramiko.PKey]:
    """Every key (of the types devbox pins) the server has; raises ``OSError``/``SSHException`` if none."""
    keys, last_error = [], None
    for key_type in KEY_TYPES:
        try:
            keys.append(fetch_host_key(route, (key_type,), timeout=timeout))
        except paramiko.SSHException as exc:  # the server has no key of this type
            last_error = exc
    if not keys:
        raise last_error or paramiko.SSHException("no host key offered")
    return keys


def pinned_keys(known_hosts: Path, entry: str) -> dict[str, paramiko.PKey]:
    if not Path(known_hosts).exists():
        return {}
    found = paramiko.HostKeys(str(known_hosts)).lookup(entry)
    return dict(found) if found else {}


def check_host(host: TargetHost, known_hosts: Path, *, timeout: float = 10.0) -> HostKeyCheck:
    """Compare what ``host`` presents with what ``known_hosts`` pins for it."""
    entry = known_hosts_name(host.address, host.port)
    pinned = pinned_keys(known_hosts, entry)
    pinned_prints = tuple(fingerprint(k) for k in pinned.values())
    try:
        with Route(host, known_hosts, timeout) as route:
            if not pinned:
                offered = tuple(_offered(k) for k in fetch_host_keys(route, timeout=timeout))
                return HostKeyCheck(host, entry, UNKNOWN, offered, (), f"no key pinned for {entry}")
            algorithms = _negotiable(pinned)
            if not algorithms:
                return HostKeyCheck(host, entry, CHANGED, (), pinned_prints,
                                    f"only keys of types devbox cannot check are pinned ({', '.join(pinned)})")
            try:
                key = fetch_host_key(route, algorithms, timeout=timeout)
            except paramiko.SSHException as exc:
                return HostKeyCheck(host, entry, CHANGED, (), pinned_prints,
                                    f"the host no longer offers a key of the pinned types ({exc})")
    except (OSError, paramiko.SSHException) as exc:
        return HostKeyCheck(host, entry, UNREACHABLE, (), pinned_prints, f"no SSH handshake: {exc}")
    offered = _offered(key)
    expected = pinned.get(key.get_name())
    if expected is not None and expected.asbytes() == key.asbytes():
        return HostKeyCheck(host, entry, TRUSTED, (offered,), pinned_prints)
    return HostKeyCheck(host, entry, CHANGED, (offered,), pinned_prints,
                        f"{key.get_name()} key is {offered.fingerprint}, pinned "
                        f"{fingerprint(expected) if expected else 'none of this type'}")


def scan_host(host: TargetHost, known_hosts: Path, *, timeout: float = 10.0) -> HostKeyCheck:
    """Every key ``host`` has, compared with what is pinned: what `devbox trust` shows and records."""
    entry = known_hosts_name(host.address, host.port)
    pinned = pinned_keys(known_hosts, entry)
    pinned_prints = tuple(fingerprint(k) for k in pinned.values())
    try:
        with Route(host, known_hosts, timeout) as route:
            keys = fetch_host_keys(route, timeout=timeout)
    except (OSError, paramiko.SSHException) as exc:
        return HostKeyCheck(host, entry, UNREACHABLE, (), pinned_prints, f"no SSH handshake: {exc}")
    offered = tuple(_offered(k) for k in keys)
    if not pinned:
        return HostKeyCheck(host, entry, UNKNOWN, offered, (), f"no key pinned for {entry}")
    same = {k.get_name(): k.asbytes() for k in keys} == {t: k.asbytes() for t, k in pinned.items()}
    return HostKeyCheck(host, entry, TRUSTED if same else CHANGED, offered, pinned_prints,
                        "" if same else "the keys the host offers differ from the pinned ones")


def check_hosts(hosts: Iterable[TargetHost], known_hosts: Path, *, timeout: float = 10.0) -> list[HostKeyCheck]:
    return [check_host(h, known_hosts, timeout=timeout) for h in hosts]


def require_trusted(env_name: str, checks: Sequence[HostKeyCheck], known_hosts: Path) -> None:
    """Stop before any task unless every host presented its pinned key; name every host that did not."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return
    lines = "\n".join(f"  - {c.host.name} ({c.entry}): {c.status}: {c.detail}" for c in bad)
    changed = any(c.status == CHANGED for c in bad)
    hint = (f"a changed key may mean the host was rebuilt, or that something sits in between: confirm with "
            f"the host's owner, remove its old line from {known_hosts}, then run `devbox trust --env {env_name}`"
            if changed else f"run `devbox trust --env {env_name}` to review and record the keys")
    raise SafetyError(f"host keys of environment '{env_name}' are not trusted; nothing was run:\n{lines}", hint)


def record(known_hosts: Path, check: HostKeyCheck) -> None:
    """Pin the keys ``check`` saw, replacing any older line for the same name; other lines are kept."""
    known_hosts = Path(known_hosts)
    kept = []
    if known_hosts.exists():
        for line in known_hosts.read_text().splitlines():
            fields = line.split()
            names = fields[0].split(",") if fields and not line.lstrip().startswith("#") else []
            if check.entry not in names:
                kept.append(line)
    new = [f"{check.entry} {k.key_type} {k.base64}" for k in check.offered]
    atomic_write(known_hosts, "\n".join(kept + new) + "\n", mode=0o644)


def pinned_client(known_hosts: Path) -> paramiko.SSHClient:
    """An SSH client for devbox's own connections to a non-dev environment: this file only, reject others."""
    client = paramiko.SSHClient()
    if Path(known_hosts).exists():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client
