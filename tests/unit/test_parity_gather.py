"""Fact gathering: the vault-free inventory copy (fast) and a real ansible-runner run of parity_facts.yml."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner.errors import CommandFailed
from provisioner.parity.gather import gather, inventory_all_vars, is_vault_file, readable_inventory_copy
from provisioner.parity.scan import Managed
from provisioner.adapters.playbook_runner import AnsibleRunnerPlaybookRunner

ROOT = Path(__file__).resolve().parents[2]
VAULT_FILE = ROOT / "tests" / "data" / "envs" / "production" / "group_vars" / "all" / "vault.yml"

HOSTS = """\
all:
  children:
    web:
      hosts:
        alpha: {ansible_connection: local}
    db:
      hosts:
        beta: {ansible_connection: local}
  vars:
    # the system Python, as on a real Debian host (it has the apt bindings package_facts reads)
    ansible_python_interpreter: /usr/bin/python3
"""


@pytest.fixture
def inventory(tmp_path) -> Path:
    """A reference inventory with a whole-file vault, like production's."""
    inv = tmp_path / "reference"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(HOSTS)
    (inv / "group_vars" / "all" / "main.yml").write_text(
        "ops_users: [{name: root}]\nsecret_inline: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n")
    shutil.copy(VAULT_FILE, inv / "group_vars" / "all" / "vault.yml")
    return inv


def test_copy_leaves_out_vault_files_only(inventory, tmp_path):
    copy = readable_inventory_copy(inventory, tmp_path / "copy")
    assert (copy / "hosts.yml").read_text() == HOSTS
    assert (copy / "group_vars" / "all" / "main.yml").exists()
    assert not (copy / "group_vars" / "all" / "vault.yml").exists()
    assert is_vault_file(inventory / "group_vars" / "all" / "vault.yml")
    # the copy is rebuilt each time: a file gone from the source is gone from the copy
    (inventory / "group_vars" / "all" / "main.yml").unlink()
    readable_inventory_copy(inventory, tmp_path / "copy")
    assert not (copy / "group_vars" / "all" / "main.yml").exists()


def test_copy_of_a_single_file_inventory_takes_its_vars_folders(inventory, tmp_path):
    copy = readable_inventory_copy(inventory / "hosts.yml", tmp_path / "copy")
    assert copy == tmp_path / "copy" / "hosts.yml"
    assert (tmp_path / "copy" / "group_vars" / "all" / "main.yml").exists()
    assert not (tmp_path / "copy" / "group_vars" / "all" / "vault.yml").exists()


def test_all_vars_for_the_scan_skip_vault(inventory):
    assert inventory_all_vars(inventory) == {"ops_users": [{"name": "root"}], "secret_inline": None}


@pytest.mark.ansible
def test_real_run_gathers_both_hosts_without_any_vault_password(inventory, tmp_path):
    runner = AnsibleRunnerPlaybookRunner(runner_dir=tmp_path / "runner", logs_dir=tmp_path / "logs",
                                         known_hosts=tmp_path / "known_hosts")
    managed = Managed(packages=frozenset({"openssh-client"}), users=frozenset({"root", "no-such-user"}),
                      groups=frozenset({"adm"}))
    copy = readable_inventory_copy(inventory, tmp_path / "copy")
    got = gather(runner, inventory=copy, managed=managed, side="staging", hosts=["alpha", "beta"])
    assert got.unreachable == ()
    assert set(got.profiles) == {"alpha", "beta"}
    alpha, beta = got.profiles["alpha"], got.profiles["beta"]
    assert alpha.os.startswith("Debian") and alpha.python != "unknown"
    assert alpha.packages["openssh-client"] == beta.packages["openssh-client"] != "absent"
    assert set(alpha.users) == {"root"} and set(alpha.groups) == {"adm"}
    assert "web" in alpha.group_names and "db" in beta.group_names
    assert alpha.roles is None  # no applied-record on this machine


@pytest.mark.ansible
def test_the_original_inventory_with_its_vault_file_is_what_breaks(inventory, tmp_path):
    """Why the copy exists: Ansible refuses a whole-file vault without a password even when nothing reads it."""
    runner = AnsibleRunnerPlaybookRunner(runner_dir=tmp_path / "runner", logs_dir=tmp_path / "logs",
                                         known_hosts=tmp_path / "known_hosts")
    with pytest.raises(CommandFailed, match="no vault secrets found"):
        gather(runner, inventory=inventory, managed=Managed(), side="staging", hosts=["alpha", "beta"])


@pytest.mark.ansible
def test_facts_playbook_passes_ansible_lint_production_profile(tmp_path):
    import subprocess
    import sys
    from provisioner.parity.gather import FACTS_PLAYBOOK
    lint = Path(sys.executable).parent / "ansible-lint"
    result = subprocess.run([str(lint), "--profile", "production", "--offline", str(FACTS_PLAYBOOK)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
