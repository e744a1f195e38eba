"""Host-key pinning against a REAL sshd on loopback, started with throwaway host keys in a temp folder."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import paramiko
import pytest

from provisioner.adapters import process
from provisioner.environments.model import TargetHost
from provisioner.errors import SafetyError
from provisioner.adapters.playbook_runner import ansible_env
from provisioner.environments.trust import (CHANGED, TRUSTED, UNKNOWN, UNREACHABLE, check_host, check_hosts,
                               known_hosts_name, pinned_client, record, require_trusted, scan_host)
from sshd_server import Sshd, free_port  # tests/unit/sshd_server.py


def test_known_hosts_names_follow_openssh():
    assert known_hosts_name("10.0.0.1") == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_unknown_key_is_refused_and_shows_its_real_fingerprints(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    check = check_host(sshd.target, known)
    assert check.status == UNKNOWN
    # the fingerprints are the server's real ones, as `ssh-keygen -lf` would show them
    assert {k.fingerprint for k in check.offered} == {sshd.host_fingerprint("ed25519"),
                                                      sshd.host_fingerprint("ecdsa"), sshd.host_fingerprint("rsa")}
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
    assert found.ok and all(t in found.stdout for t in ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"))


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
    assert rescan.status == CHANGED and len(rescan.offered) == 3
    record(known, rescan)
    assert check_host(sshd.target, known).status == TRUSTED
    assert scan_host(sshd.target, known).status == TRUSTED
    assert len(known.read_text().splitlines()) == 3  # ed25519, ecdsa, rsa; the old ones gone


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


def test_hosts_behind_a_jump_host_are_checked_through_it(tmp_path):
    jump, target = Sshd(tmp_path / "jump", free_port()), Sshd(tmp_path / "target", free_port())
    jump.start()
    target.start()
    try:
        known = tmp_path / "staging.known_hosts"
        bastion = TargetHost("bastion", "127.0.0.1", jump.port)
        host = TargetHost("web-s1", "127.0.0.1", target.port, jump=f"root@127.0.0.1:{jump.port}",
                          key_file=str(jump.client_key))
        # the jump host itself is not pinned yet: nothing behind it is believed
        blocked = check_host(host, known)
        assert blocked.status == UNREACHABLE and "jump host root@127.0.0.1" in blocked.detail
        assert "not found in known_hosts" in blocked.detail

        record(known, scan_host(bastion, known))
        behind = scan_host(host, known)
        assert behind.status == UNKNOWN
        assert {k.fingerprint for k in behind.offered} == {target.host_fingerprint("ed25519"),
                                                           target.host_fingerprint("ecdsa"), target.host_fingerprint("rsa")}
        record(known, behind)
        assert check_host(host, known).status == TRUSTED
        assert "Accepted publickey for root" in (jump.root / "sshd.log").read_text()  # it went through the jump

        target.restart(new_keys=True)
        assert check_host(host, known).status == CHANGED
        jump.restart(new_keys=True)  # a jump host that changed is not trusted to relay anything
        relayed = check_host(host, known)
        assert relayed.status == UNREACHABLE and "jump host" in relayed.detail
    finally:
        jump.stop()
        target.stop()


def test_jump_specs_parse_like_openssh():
    from provisioner.environments.trust import parse_jump

    assert parse_jump("ops@bastion.example:2222") == ("ops", "bastion.example", 2222)
    assert parse_jump("10.0.0.1") == (None, "10.0.0.1", 22)
    assert parse_jump("u@[2001:db8::1]:2200") == ("u", "2001:db8::1", 2200)


def test_a_host_with_only_an_rsa_key_pinned_is_checked_with_sha2_signatures(sshd, tmp_path):
    known = tmp_path / "staging.known_hosts"
    full = scan_host(sshd.target, known)
    rsa_only = [k for k in full.offered if k.key_type == "ssh-rsa"]
    assert len(rsa_only) == 1
    from dataclasses import replace
    record(known, replace(full, offered=tuple(rsa_only)))
    assert check_host(sshd.target, known).status == TRUSTED
    sshd.restart(new_keys=True)
    assert check_host(sshd.target, known).status == CHANGED
