"""`devbox parity --against staging` over real SSH: a real sshd on loopback plays both the development VM and the
staging host, so the whole path runs for real (CLI, rails, pinned host key, vault-free inventory copy, two
ansible-runner runs of the facts playbook) and, being the same machine, must report no drift."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import assert_handled

from provisioner.app import Devbox
from provisioner.cli.main import main
from provisioner.environments.trust import record, scan_host

pytestmark = pytest.mark.ansible

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "data" / "parity" / "playbooks" / "site.yml"
VAULT_FILE = ROOT / "tests" / "data" / "envs" / "staging" / "group_vars" / "all" / "vault.yml"


@pytest.fixture
def project(tmp_path, sshd) -> Path:
    root = tmp_path / "project"
    staging = root / "inventories" / "staging"
    (staging / "group_vars" / "all").mkdir(parents=True)
    (staging / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "children": {"staging": {"children": {"web": {"hosts": {"web-s1": sshd.ansible_login}}}}},
        "vars": {"ansible_python_interpreter": "/usr/bin/python3"}}}))
    shutil.copy(VAULT_FILE, staging / "group_vars" / "all" / "vault.yml")  # no password anywhere in this test
    (root / "inventories" / "production").mkdir(parents=True)
    (root / "inventories" / "production" / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"web": {"hosts": {"web1": {"ansible_host": "10.20.0.11"}}}}}}))
    (root / "devbox.yml").write_text(yaml.safe_dump({
        "inventory": "inventories/production", "playbook": str(PLAYBOOK),
        "environments": {"staging": {"inventory": "inventories/staging"}}}))
    devbox = root / ".devbox"
    (devbox / "inventory").mkdir(parents=True)
    (devbox / "plan.json").write_text(json.dumps({"machines": [
        {"name": "web-1", "hostname": "web-1", "groups": ["web"], "represents": ["web1"], "memory": 512,
         "cpus": 1, "address": "192.168.56.11"}], "excluded": [], "warnings": []}))
    (devbox / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "children": {"web": {"hosts": {"web-1": None}}}, "vars": {"ansible_python_interpreter": "/usr/bin/python3"}}}))
    (devbox / "state.json").write_text(json.dumps({"version": 1, "machines": {"web-1": {"ssh": sshd.devbox_ssh}}}))
    return root


def test_same_machine_on_both_sides_over_ssh_is_parity(project, sshd):
    app = Devbox.create(project)
    refused = CliRunner().invoke(main, ["-C", str(project), "parity", "--against", "staging", "--yes"], obj=app)
    assert_handled(refused, 1)
    assert "not trusted" in refused.output

    known_hosts = project / "environments" / "staging.known_hosts"
    record(known_hosts, scan_host(sshd.target, known_hosts))
    result = CliRunner().invoke(main, ["-C", str(project), "parity", "--against", "staging", "--yes", "--json"],
                                obj=app)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert doc["ok"] and doc["drift"] == [] and doc["unreachable"] == []
    assert doc["pairs"] == [{"machine": "web-1", "references": ["web-s1"], "paired_by": "groups"}]
    # the staging facts were read from a copy of its inventory that has no vault file
    copy = project / ".devbox" / "envs" / "staging" / "parity-inventory"
    assert (copy / "hosts.yml").exists() and not (copy / "group_vars" / "all" / "vault.yml").exists()
    assert "Accepted publickey for root" in (sshd.root / "sshd.log").read_text()
