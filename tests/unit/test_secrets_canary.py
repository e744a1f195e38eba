"""Canary secrets: development never decrypts a real secret, and none reaches any file devbox writes.

Every vault of the test inventories holds a known canary value (tests/data/envs/README.md). A development
project is initialised from the production inventory with those vault files present and no password anywhere,
then provisioned through the real `Devbox.provision` path: real ansible-runner, real SSH to a loopback sshd
standing in for the VMs, the playbook consuming every secret by name. The run must succeed on the generated
development values, and no canary (nor any vault password) may appear in any file under the project (.devbox/**,
the Vagrantfile, runner artifacts, Ansible's log) or on the "hosts".
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
import yaml

from provisioner.app import Devbox
from provisioner.errors import SafetyError
from provisioner.adapters.playbook_runner import AnsibleRunnerPlaybookRunner
from provisioner.project.state import load_state, save_state

ENVS = Path(__file__).resolve().parents[1] / "data" / "envs"
CANARIES = ("CANARY-PROD-7f3e9c1d", "CANARY-PROD-TOKEN-91ac55e2", "CANARY-PROD-INLINE-5d2c0e77",
            "CANARY-STAGING-4b8a2e60",
            (ENVS / "production-vault-password.txt").read_text().strip(),
            (ENVS / "staging-vault-password.txt").read_text().strip(),
            (ENVS.parent / "staging-vault-password.txt").read_text().strip())

# Consumes every secret by name, and logs without restraint (no no_log): whatever it can see, the logs see.
SITE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: service configuration with its secrets
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.conf"
        content: |
          db={{ db_password }}
          api={{ api_token }}
          session={{ session_key | default('none') }}
        mode: "0600"
    - name: show them
      ansible.builtin.debug:
        msg: "db={{ db_password }} api={{ api_token }}"
"""

pytestmark = pytest.mark.ansible


class StampRedirectingRunner(AnsibleRunnerPlaybookRunner):
    """The real runner; only the revision stamp goes to a folder of the test instead of this machine's /etc."""

    def __init__(self, hosts_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.hosts_dir = hosts_dir

    def run(self, **kwargs):
        extravars = dict(kwargs.get("extravars") or {})
        if "devbox_applied_path" in extravars:
            extravars["devbox_applied_path"] = str(self.hosts_dir / "{{ inventory_hostname }}" / "applied.json")
        kwargs["extravars"] = extravars
        return super().run(**kwargs)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "inventories").mkdir(parents=True)
    shutil.copytree(ENVS / "production", root / "inventories" / "production")
    shutil.copytree(ENVS / "staging", root / "inventories" / "staging")  # its vault is there too, never read
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text(SITE)
    (tmp_path / "hosts").mkdir()
    return root


def all_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_development_runs_on_generated_values_and_no_secret_reaches_any_file(project, sshd, tmp_path, monkeypatch):
    for name in ("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        monkeypatch.delenv(name, raising=False)
    app = Devbox.create(project)
    init = app.init(inventory=project / "inventories" / "production")
    assert set(init.render.secret_names) == {"vault_db_password", "vault_api_token", "session_key"}
    assert any(s.endswith("group_vars/all/vault.yml") for s in init.render.skipped)

    # what `devbox up` would have learned: each VM's SSH address (here the loopback sshd), and the VMs' facts
    config = yaml.safe_load((project / "devbox.yml").read_text())
    config["vars"] = {"ansible_python_interpreter": sys.executable, "out_dir": str(tmp_path / "hosts")}
    (project / "devbox.yml").write_text(yaml.safe_dump(config))
    app.render(app.plan().topology)
    state = load_state(project / ".devbox" / "state.json")
    names = [m.name for m in app.load_topology().machines]
    for name in names:
        state.machine(name).ssh = sshd.devbox_ssh
    save_state(project / ".devbox" / "state.json", state)
    app.playbooks = StampRedirectingRunner(tmp_path / "hosts", runner_dir=project / ".devbox" / "runner",
                                           logs_dir=project / ".devbox" / "logs",
                                           known_hosts=project / ".devbox" / "known_hosts")

    result = app.provision()
    assert result.playbook.ok, result.playbook.failures
    assert sorted(h.host for h in result.playbook.hosts) == sorted(names)

    # the secrets the service got are the generated development values
    dev_values = yaml.safe_load((project / ".devbox" / "secrets.yml").read_text())
    for name in names:
        conf = (tmp_path / "hosts" / f"{name}.conf").read_text()
        assert f"db={dev_values['vault_db_password']}" in conf and f"api={dev_values['vault_api_token']}" in conf
        stamp = json.loads((tmp_path / "hosts" / name / "applied.json").read_text())
        assert stamp["environment"] == "dev" and stamp["applied_by"]
    assert "session=" + dev_values["session_key"] in (tmp_path / "hosts" / "web-1.conf").read_text()
    for secret_file in (project / ".devbox" / "secrets.yml",
                        project / ".devbox" / "inventory" / "group_vars" / "all" / "zz-devbox-secrets.yml"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    # Ansible was never offered a vault password
    commands = [p for p in (project / ".devbox" / "runner" / "artifacts").rglob("command")]
    assert commands and not any("vault" in p.read_text() for p in commands)

    # the scan: every file devbox wrote (and the "hosts"), byte for byte
    written = all_files(project / ".devbox", tmp_path / "hosts") + [project / "Vagrantfile", project / "devbox.yml"]
    assert len(written) > 20 and any("artifacts" in str(p) for p in written)
    leaks = [(c, str(p)) for p in written for c in CANARIES if c.encode() in p.read_bytes()]
    assert leaks == []
    # control: the scan does see what the playbook showed (the development value is in the artifacts and log)
    seen = {p.name for p in written if dev_values["vault_db_password"].encode() in p.read_bytes()}
    assert "ansible.log" in seen and "stdout" in seen


def test_a_development_run_refuses_a_vault_password_from_the_environment(project, monkeypatch):
    app = Devbox.create(project)
    app.init(inventory=project / "inventories" / "production")
    state = load_state(project / ".devbox" / "state.json")
    for m in app.load_topology().machines:
        state.machine(m.name).ssh = {"host": "127.0.0.1", "port": 1, "user": "root", "identity_file": "/nonexistent"}
    save_state(project / ".devbox" / "state.json", state)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(ENVS / "production-vault-password.txt"))
    with pytest.raises(SafetyError, match="ANSIBLE_VAULT_PASSWORD_FILE"):
        app.provision()
    assert not (project / ".devbox" / "runner").exists()  # stopped before Ansible started
