"""bench/provision_bench.py without VMs: the full run it compares against gets the same environment devbox's runs
get (the lab's package proxy included). The bench itself runs in the lab."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_bench


pb = load_bench("provision_bench")


@pytest.mark.ansible
def test_the_full_baseline_run_sees_the_package_proxy_the_playbook_reads(tmp_path, monkeypatch):
    """The reference service's devbox.yml sets `apt_proxy: "{{ lookup('env', 'DEVBOX_APT_PROXY') }}"`: a baseline
    run without the caller's environment rendered it empty, took the proxy off the VMs and hung on apt."""
    monkeypatch.setenv("DEVBOX_APT_PROXY", "http://192.0.2.1:3142")
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    vm-1:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
        "      apt_proxy: \"{{ lookup('env', 'DEVBOX_APT_PROXY') }}\"\n")
    out = tmp_path / "proxy.txt"
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.copy: {{content: \"{{{{ apt_proxy }}}}\", dest: {out}}}\n")
    env = pb.baseline_env(known_hosts=tmp_path / "known_hosts", log_path=tmp_path / "ansible.log")
    assert env["ANSIBLE_PIPELINING"] == "True" and env["HOME"]
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                          str(tmp_path / "site.yml")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_text() == "http://192.0.2.1:3142"
