"""The identity reset before export, run for real on a folder laid out as a converged guest's root."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioner.images.identity import RESET_SCRIPT, guest_command, reset_argv
from provisioner.lab.box import find_insecure_key

INSECURE = find_insecure_key().read_text()  # Vagrant's own, as the vagrant package ships it
OWN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnmachine0specific0key0of0this0vm0only0000 vagrant\n"


def write(root: Path, rel: str, text: str = "x\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def converged_root(root: Path) -> Path:
    """What a VM made from devbox's box holds after Vagrant, the playbooks and a user went through it."""
    write(root, "etc/systemd/system/ssh-host-keys.service", "[Unit]\n")
    for kind in ("ed25519", "ecdsa"):
        write(root, f"etc/ssh/ssh_host_{kind}_key", "PRIVATE\n")
        write(root, f"etc/ssh/ssh_host_{kind}_key.pub", "ssh-" + kind + " AAAA host\n")
    write(root, "etc/ssh/sshd_config", "Port 22\n")
    write(root, "etc/machine-id", "4f1c0d5e8a9b4c7d8e6f5a4b3c2d1e0f\n")
    write(root, "var/lib/dbus/machine-id", "4f1c0d5e8a9b4c7d8e6f5a4b3c2d1e0f\n")
    write(root, "var/log/journal/4f1c0d5e8a9b4c7d8e6f5a4b3c2d1e0f/system.journal")
    write(root, "home/vagrant/.ssh/authorized_keys", OWN_KEY)
    write(root, "home/vagrant/.bash_history", "sudo systemctl restart app\n")
    write(root, "home/vagrant/.ansible/tmp/ansible-tmp-1/AnsiballZ_apt.py")
    write(root, "home/vagrant/.ssh/known_hosts", "db-1 ssh-ed25519 AAAA\n")
    write(root, "root/.bash_history", "cat /etc/app/secret\n")
    write(root, "root/.python_history", "import os\n")
    write(root, "var/lib/dhcp/dhclient.eth0.leases", "lease {}\n")
    write(root, "var/cache/apt/archives/nginx_1.22_amd64.deb")
    write(root, "var/log/syslog", "Dec  1 db-1 sshd: Accepted publickey for vagrant from 192.168.121.1\n")
    write(root, "var/log/syslog.1", "old\n")
    write(root, "var/log/apt/history.log.1.gz", "old\n")
    write(root, "tmp/ansible-xyz/file")
    # what the VM was converged to stays: the role's config, the development secret it was converged with,
    # devbox's stamp of the revision on the disk
    write(root, "etc/app/app.conf", "port=8080\n")
    write(root, "etc/app/secret", "development-only-secret\n")
    write(root, "etc/devbox/applied.json", '{"commit": "0123456789ab"}\n')
    write(root, "etc/hostname", "db-1\n")
    return root


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def key(tmp_path) -> Path:
    return write(tmp_path, "vagrant.pub", INSECURE)


def test_the_reset_leaves_nothing_that_names_the_exporting_vm(tmp_path, key):
    root = converged_root(tmp_path / "guest")
    proc = run(reset_argv(root, key))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    wants = root / "etc/systemd/system/multi-user.target.wants/ssh-host-keys.service"
    assert os.readlink(wants) == "/etc/systemd/system/ssh-host-keys.service"
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert list((root / "var/log/journal").iterdir()) == []
    keys = root / "home/vagrant/.ssh/authorized_keys"
    assert keys.read_text() == INSECURE and (keys.stat().st_mode & 0o777) == 0o600
    assert (root / "home/vagrant/.ssh").stat().st_mode & 0o777 == 0o700
    gone = ["home/vagrant/.bash_history", "home/vagrant/.ansible/tmp", "home/vagrant/.ssh/known_hosts",
            "root/.bash_history", "root/.python_history", "var/lib/dhcp/dhclient.eth0.leases",
            "var/cache/apt/archives/nginx_1.22_amd64.deb", "var/log/syslog.1", "var/log/apt/history.log.1.gz",
            "tmp/ansible-xyz"]
    assert [rel for rel in gone if (root / rel).exists()] == []
    assert (root / "var/log/syslog").read_text() == ""
    kept = {"etc/app/app.conf": "port=8080\n", "etc/app/secret": "development-only-secret\n",
            "etc/devbox/applied.json": '{"commit": "0123456789ab"}\n', "etc/hostname": "db-1\n"}
    assert {rel: (root / rel).read_text() for rel in kept} == kept
    # a second run (an export tried again) is as good as the first
    assert run(reset_argv(root, key)).returncode == 0


def test_the_reset_refuses_a_root_that_is_not_a_devbox_vm(tmp_path, key):
    root = tmp_path / "host"
    history = write(root, "root/.bash_history", "mine\n")
    machine_id = write(root, "etc/machine-id", "abc\n")
    proc = run(reset_argv(root, key))
    assert proc.returncode == 1 and "is not a devbox VM's root" in proc.stderr
    assert history.read_text() == "mine\n" and machine_id.read_text() == "abc\n"


def test_the_reset_wants_its_arguments_and_a_real_public_key(tmp_path):
    root = converged_root(tmp_path / "guest")
    assert run(["sh", str(RESET_SCRIPT), "--root", str(root)]).returncode == 2
    assert run(["sh", str(RESET_SCRIPT), "--bogus"]).returncode == 2
    not_a_key = write(tmp_path, "key", "-----BEGIN OPENSSH PRIVATE KEY-----\n")
    proc = run(reset_argv(root, not_a_key))
    assert proc.returncode == 1 and "not an SSH public key" in proc.stderr
    assert (root / "home/vagrant/.ssh/authorized_keys").read_text() == OWN_KEY


def test_the_guest_command_resets_then_powers_off():
    command = guest_command()
    assert command.startswith("sudo sh /tmp/devbox-reset-identity.sh --root / --key /tmp/devbox-vagrant.pub && ")
    assert command.endswith("sudo sync && sudo systemctl poweroff")
