"""Host-key pinning against a REAL sshd on loopback, started with throwaway host keys in a temp folder."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko
import pytest

from provisioner import process
from provisioner.environments import TargetHost
from provisioner.errors import SafetyError
from provisioner.playbook_runner import ansible_env
from provisioner.trust import (CHANGED, TRUSTED, UNKNOWN, UNREACHABLE, check_host,
                               check_hosts, fingerprint, known_hosts_name, pinned_client, record,
                               require_trusted, scan_host)

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """One sshd on 127.0.0.1:port; ``restart(new_keys=True)`` simulates a rebuilt (or impersonated) host."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.proc = root, port, None
        self.client_key = root / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)], check=True)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.generation = 0

    def _keys(self) -> list[Path]:
        keys = []
        for kind in ("ed25519", "ecdsa"):
            path = self.root / f"host_{kind}_{self.generation}"
            if not path.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
            keys.append(path)
        return keys

    def start(self) -> None:
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            *[f"HostKey {k}" for k in self._keys()],
            f"PidFile {self.root}/sshd.pid", f"AuthorizedKeysFile {self.root}/authorized_keys",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "", ""]))
        # sshd insists on its privilege-separation folder (the Debian service creates it at start)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(self.root / "sshd.log", "a"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.root / "sshd.log").read_text()
                time.sleep(0.05)
        raise AssertionError("sshd did not listen: " + (self.root / "sshd.log").read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self, *, new_keys: bool) -> None:
        self.stop()
        if new_keys:
            self.generation += 1
        self.start()

    def host_fingerprint(self, kind: str) -> str:
        key = paramiko.PKey.from_path(str(self.root / f"host_{kind}_{self.generation}"))
        return fingerprint(key)

    @property
    def target(self) -> TargetHost:
        return TargetHost("web-s1", "127.0.0.1", self.port)


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


def test_known_hosts_names_follow_openssh():
    assert known_hosts_name("10.0.0.1") == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_unknown_key_is_refused_and_shows_its_real_fingerprints(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    check = check_host(sshd.target, known)
    assert check.status == UNKNOWN
    # the fingerprints are the server's real ones, as `ssh-keygen -lf` would show them
    assert {k.fingerprint for k in check.offered} == {sshd.host_fingerprint("ed25519"),
                                                      sshd.host_fingerprint("ecdsa")}
    with pytest.raises(SafetyError, match=r"web-s1 \(\[127.0.0.1\]:\d+\): unknown") as err:
        require_trusted("staging", [check], known)
    assert "devbox trust --env staging" in err.value.hint


def test_recorded_key_is_trusted_and_kept_in_openssh_format(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    known.write_text("# staging hosts, reviewed by the team\n10.9.9.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    record(known, check_host(sshd.target, known))
    check = check_host(sshd.target, known)
    assert check.status == TRUSTED and check.ok
    require_trusted("staging", [check], known)
    lines = known.read_text().splitlines()
    assert lines[0].startswith("# staging hosts") and lines[1].startswith("10.9.9.9 ")  # others kept
    # OpenSSH itself agrees with what was recorded
    found = process.run(["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(known)])
    assert found.ok and "ssh-ed25519" in found.stdout and "ecdsa-sha2-nistp256" in found.stdout


def test_changed_key_is_refused_with_both_fingerprints(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    record(known, check_host(sshd.target, known))
    old = sshd.host_fingerprint("ed25519")
    sshd.restart(new_keys=True)
    check = check_host(sshd.target, known)
    assert check.status == CHANGED
    assert sshd.host_fingerprint("ed25519") in check.detail and old in check.detail
    with pytest.raises(SafetyError, match="changed") as err:
        require_trusted("staging", [check], known)
    assert "remove its old line" in err.value.hint


def test_recording_again_replaces_the_old_line(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    record(known, check_host(sshd.target, known))
    sshd.restart(new_keys=True)
    rescan = scan_host(sshd.target, known)  # what `devbox trust` shows, and records once confirmed
    assert rescan.status == CHANGED and len(rescan.offered) == 2
    record(known, rescan)
    assert check_host(sshd.target, known).status == TRUSTED
    assert scan_host(sshd.target, known).status == TRUSTED
    assert len(known.read_text().splitlines()) == 2  # ed25519 + ecdsa, old ones gone


def test_one_bad_host_stops_all_and_is_named(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    record(known, check_host(sshd.target, known))
    closed = TargetHost("db-s1", "127.0.0.1", free_port())
    checks = check_hosts([sshd.target, closed], known, timeout=2)
    assert [c.status for c in checks] == [TRUSTED, UNREACHABLE]
    with pytest.raises(SafetyError, match="db-s1") as err:
        require_trusted("staging", checks, known)
    assert "web-s1" not in str(err.value)


def test_devbox_own_connections_reject_unknown_and_accept_pinned(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    client = pinned_client(known)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect("127.0.0.1", sshd.port, username="root", key_filename=str(sshd.client_key),
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()
    record(known, check_host(sshd.target, known))
    client = pinned_client(known)
    client.connect("127.0.0.1", sshd.port, username="root", key_filename=str(sshd.client_key),
                   look_for_keys=False, allow_agent=False, timeout=5)
    _, out, _ = client.exec_command("echo pinned-ok")
    assert out.read().strip() == b"pinned-ok"
    client.close()
    sshd.restart(new_keys=True)
    client = pinned_client(known)
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect("127.0.0.1", sshd.port, username="root", key_filename=str(sshd.client_key),
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()


@pytest.mark.ansible
def test_ansible_runs_check_host_keys_strictly(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    web-s1:\n      ansible_host: 127.0.0.1\n      ansible_port: {sshd.port}\n"
                         f"      ansible_user: root\n      ansible_ssh_private_key_file: {sshd.client_key}\n"
                         f"      ansible_python_interpreter: {sys.executable}\n"
                         # an inventory trying to relax the check must not win
                         f"      ansible_ssh_common_args: -o StrictHostKeyChecking=no\n")
    bindir = str(Path(sys.executable).parent)
    # the settings devbox gives every Ansible run against a named environment
    env = {**ansible_env(known_hosts=known, log_path=tmp_path / "ansible.log", strict_host_keys=True),
           # a fresh master connection per phase (short path: unix sockets are limited to 108 bytes)
           "ANSIBLE_SSH_CONTROL_PATH_DIR": tempfile.mkdtemp(prefix="cp", dir="/tmp")}
    argv = [f"{bindir}/ansible", "web-s1", "-i", str(inventory), "-m", "ping"]

    unknown = process.run(argv, env=env, timeout=120)
    assert not unknown.ok and "Host key verification failed" in unknown.stdout + unknown.stderr

    record(known, check_host(sshd.target, known))
    trusted = process.run(argv, env=env, timeout=120)
    assert trusted.ok, trusted.tail()

    sshd.restart(new_keys=True)
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = tempfile.mkdtemp(prefix="cp", dir="/tmp")  # not the old master
    changed = process.run(argv, env=env, timeout=120)
    assert not changed.ok and "HOST IDENTIFICATION HAS CHANGED" in changed.stdout + changed.stderr
