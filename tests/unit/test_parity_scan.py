"""The static scan of what the playbooks manage, on a small playbook tree and on the shipped playbooks."""
from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import DevboxError
from provisioner.parity.scan import scan_playbook

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "tests" / "data" / "parity" / "playbooks" / "site.yml"


def test_scan_follows_roles_imports_blocks_and_loops():
    managed = scan_playbook(TREE, inventory_vars={"ops_users": [{"name": "alice"}, {"name": "bob"}]})
    assert managed.packages == {
        "curl", "openssh-server",   # a list in role defaults; the version pin is not part of the name
        "jq",                       # a play variable
        "htop", "less", "vim-tiny", # one-line form and comma-separated names, inside block/rescue
        "nginx-light",              # a role variable inside a longer name
        "ssl-cert", "logrotate",    # a literal loop
        "python3-venv",             # from a role reached only through include_role in an imported playbook
    }
    assert managed.services == {"nginx", "ssh.service"}  # tasks and handlers
    assert managed.users == {"alice", "bob", "app"}      # loop over an inventory list of dicts
    assert managed.groups == {"ops", "app"}
    assert managed.unresolved == ("{{ lookup('env', 'APP_PACKAGE') }}",)
    assert {"rsync", "curl"} <= managed.mentioned


def test_without_inventory_variables_the_role_default_applies():
    assert scan_playbook(TREE).users == {"app"}


def test_missing_playbook_is_a_clear_error(tmp_path):
    with pytest.raises(DevboxError, match="not found"):
        scan_playbook(tmp_path / "site.yml")


def test_broken_yaml_names_the_file(tmp_path):
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: [\n")
    with pytest.raises(DevboxError, match="site.yml"):
        scan_playbook(tmp_path / "site.yml")


def test_shipped_playbooks_resolve_every_package_name():
    managed = scan_playbook(ROOT / "playbooks" / "site.yml")
    assert managed.unresolved == ()
    assert {"nftables", "openssh-server"} <= managed.packages
    assert "ssh" in managed.services
