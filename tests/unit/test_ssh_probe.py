"""The SSH readiness probe against a real OpenSSH server on loopback, and against a closed port."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from provisioner.adapters.ssh_probe import ParamikoSshProbe, SshTarget, known_hosts_name, tcp_open

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


class Sshd:
    """A throwaway sshd on 127.0.0.1 with its own host key, accepting one client key for the current user."""

    def __init__(self, tmp: Path, client_pub: Path, host_key: Path | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.host_key = host_key or keygen(tmp / f"host_key_{self.port}")
        auth = tmp / "authorized_keys"
        auth.write_text(client_pub.read_text())
        self.config = tmp / f"sshd_config_{self.port}"
        self.config.write_text(f"""\
ListenAddress 127.0.0.1
Port {self.port}
HostKey {self.host_key}
AuthorizedKeysFile {auth}
PidFile {tmp}/sshd_{self.port}.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
""")
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not tcp_open("127.0.0.1", self.port, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def client_key(tmp_path):
    return keygen(tmp_path / "client_key")


@pytest.fixture
def sshd(tmp_path, client_key):
    server = Sshd(tmp_path, client_key.with_suffix(".pub"))
    yield server
    server.stop()


def target(name, port, key, user=None):
    import getpass
    return SshTarget(name=name, host="127.0.0.1", port=port, user=user or getpass.getuser(), key_file=str(key),
                     console_log=f"/logs/{name}-console.log")


def test_ready_against_real_sshd_records_host_key(tmp_path, sshd, client_key):
    kh = tmp_path / "known_hosts"
    probe = ParamikoSshProbe(known_hosts=kh)
    seen = []
    results = probe.wait_ready(targets=[target("web-1", sshd.port, client_key)], timeout=20, on_ready=seen.append)
    assert results["web-1"].ready, results["web-1"].error
    assert seen == ["web-1"]
    # accept-new: the key was recorded under OpenSSH's [host]:port name, matching the server's real key
    recorded = paramiko.HostKeys(str(kh)).lookup(known_hosts_name("127.0.0.1", sshd.port))
    server_key = paramiko.Ed25519Key.from_private_key_file(str(sshd.host_key))
    assert recorded["ssh-ed25519"] == server_key
    # OpenSSH itself agrees the line is valid: ssh-keygen finds it
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(kh)], capture_output=True, text=True)
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout
    # a second probe with the key now known succeeds without adding a line
    before = kh.read_text()
    assert probe.wait_ready(targets=[target("web-1", sshd.port, client_key)], timeout=20)["web-1"].ready
    assert kh.read_text() == before


def test_changed_host_key_is_refused_fast(tmp_path, sshd, client_key):
    kh = tmp_path / "known_hosts"
    other = paramiko.Ed25519Key.from_private_key_file(str(keygen(tmp_path / "impostor")))
    kh.write_text(paramiko.hostkeys.HostKeyEntry([f"[127.0.0.1]:{sshd.port}"], other).to_line())
    started = time.monotonic()
    result = ParamikoSshProbe(known_hosts=kh).wait_ready(targets=[target("db-1", sshd.port, client_key)],
                                                          timeout=30)["db-1"]
    assert not result.ready
    assert time.monotonic() - started < 10  # no retrying until the timeout on a mismatch
    assert "db-1" in result.error and "host key" in result.error and "ssh-keygen" in result.error


def test_wrong_client_key_is_not_ready(tmp_path, sshd):
    stranger = keygen(tmp_path / "stranger")
    result = ParamikoSshProbe(known_hosts=tmp_path / "kh", interval=0.2).wait_ready(
        targets=[target("web-1", sshd.port, stranger)], timeout=1)["web-1"]
    assert not result.ready and "Authentication" in result.error


def test_timeout_on_closed_port_names_vm_and_console_log(tmp_path, client_key):
    port = free_port()  # nothing listens there
    probe = ParamikoSshProbe(known_hosts=tmp_path / "kh", interval=0.2)
    started = time.monotonic()
    results = probe.wait_ready(targets=[target("web-1", port, client_key), target("web-2", port, client_key)],
                               timeout=1.5)
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 4  # bounded per host, and the two hosts waited in parallel, not one after the other
    for name in ("web-1", "web-2"):
        r = results[name]
        assert not r.ready
        assert name in r.error and f"127.0.0.1:{port}" in r.error and f"/logs/{name}-console.log" in r.error


def test_one_host_ready_one_not(tmp_path, sshd, client_key):
    results = ParamikoSshProbe(known_hosts=tmp_path / "kh", interval=0.2).wait_ready(
        targets=[target("up", sshd.port, client_key), target("down", free_port(), client_key)], timeout=1)
    assert results["up"].ready and not results["down"].ready


def test_reachable_is_a_quick_tcp_check(tmp_path, sshd, client_key):
    probe = ParamikoSshProbe(known_hosts=tmp_path / "kh")
    started = time.monotonic()
    found = probe.reachable(targets=[target("a", sshd.port, client_key), target("b", free_port(), client_key)],
                            timeout=0.3)
    assert found == {"a": True, "b": False}
    assert time.monotonic() - started < 1
    assert probe.reachable(targets=[], timeout=0.3) == {}
