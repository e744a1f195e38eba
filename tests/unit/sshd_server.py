"""A real sshd on loopback with throwaway host keys, for the tests that need SSH for real (trust, environment
runs, parity over SSH, the secrets canary). The ``sshd`` fixture in conftest.py starts one per test."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import paramiko

from provisioner.environments.model import TargetHost
from provisioner.environments.trust import fingerprint

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """One sshd on 127.0.0.1:port; ``restart(new_keys=True)`` simulates a rebuilt (or impersonated) host."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.proc = root, port, None
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = root / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)], check=True)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.generation = 0

    def _keys(self) -> list[Path]:
        keys = []
        for kind in ("ed25519", "ecdsa", "rsa"):  # what a Debian host has
            path = self.root / f"host_{kind}_{self.generation}"
            if not path.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", "2048"] if kind == "rsa" else []), "-N", "", "-f", str(path)], check=True)
            keys.append(path)
        return keys

    def start(self) -> None:
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            *[f"HostKey {k}" for k in self._keys()],
            f"PidFile {self.root}/sshd.pid", f"AuthorizedKeysFile {self.root}/authorized_keys",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "", ""]))
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

    @property
    def ansible_login(self) -> dict:
        """Inventory variables for a host Ansible reaches on this sshd, as root with the client key."""
        return {"ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.client_key)}

    @property
    def devbox_ssh(self) -> dict:
        """A machine's ``ssh`` entry in .devbox/state.json (what `devbox up` learns) pointing at this sshd."""
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "identity_file": str(self.client_key)}
