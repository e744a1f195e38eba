"""Reading production inventories with Ansible's own loader: the shapes found in real projects, and failing
closed on everything Ansible would only warn about."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.errors import InventoryError
from provisioner.plan.inventory import VaultValue, classify_source, load_inventory

INVENTORIES = Path(__file__).resolve().parents[1] / "data" / "inventories"
BAD = INVENTORIES / "bad"


def test_kubernetes_shape_children_ranges_and_empty_group():
    inv = load_inventory(INVENTORIES / "kubernetes" / "hosts.ini")
    assert list(inv.hosts)[:4] == ["node1", "node2", "node3", "node04"]
    assert len(inv.hosts) == 12 and "node12" in inv.hosts   # node[04:12] expanded by Ansible
    assert inv.groups["etcd"].children == ("kube_control_plane",)
    assert inv.groups["calico_rr"].hosts == () and inv.groups["calico_rr"].children == ()
    node1 = inv.hosts["node1"]
    assert node1.groups == ("kube_control_plane",)
    assert node1.all_groups == {"kube_control_plane", "etcd", "k8s_cluster"}
    assert node1.vars["etcd_member_name"] == "etcd1"
    assert inv.groups["k8s_cluster"].vars == {"kube_network_plugin": "calico", "ansible_user": "ubuntu"}


def test_openstack_shape_three_levels_forward_reference_and_local_host():
    inv = load_inventory(INVENTORIES / "openstack" / "multinode")
    assert len(inv.groups) > 40
    # nova-api -> nova -> control -> hosts: three levels of children
    assert inv.groups["nova-api"].children == ("nova",)
    assert inv.groups["nova"].children == ("control",)
    assert {"nova-api", "nova", "control", "common", "baremetal"} <= inv.hosts["control02"].all_groups
    # chrony-server names haproxy before haproxy is defined
    assert inv.groups["chrony-server"].children == ("haproxy",)
    assert "chrony-server" in inv.hosts["network01"].all_groups
    assert inv.hosts["localhost"].vars["ansible_connection"] == "local"
    assert len(inv.hosts) == 30


def test_per_host_ports_become_ansible_port():
    inv = load_inventory(INVENTORIES / "replicaset" / "hosts.ini")
    assert inv.hosts["mongo-b.db.example.com"].vars["ansible_port"] == 2202
    assert inv.groups["mongo"].vars["ansible_host"] == "203.0.113.50"


def test_yaml_nested_children_and_vars():
    inv = load_inventory(INVENTORIES / "yaml-nested" / "hosts.yml")
    assert inv.groups["frontend"].children == ("lb", "app")
    assert inv.groups["app"].children == ("app_blue", "app_green")
    assert inv.hosts["app03.example.com"].all_groups == {"app_green", "app", "frontend"}
    assert inv.groups["all"].vars == {"ntp_server": "ntp.example.com"}
    assert inv.hosts["db02.example.com"].vars == {"pg_role": "replica"}


def test_ipv6_host_names_and_addresses():
    inv = load_inventory(INVENTORIES / "ipv6" / "hosts.ini")
    assert {"2001:db8::10", "2001:db8::11", "web-v6", "ns1"} == set(inv.hosts)
    assert inv.hosts["web-v6"].vars["ansible_host"] == "2001:db8::20"


def test_odd_names_kept_exactly_as_written():
    inv = load_inventory(INVENTORIES / "odd-names" / "hosts.ini")
    assert {"WEB_01", "Web_02", "DB_MASTER_01", "stray_Host", "lonely_host_"} <= set(inv.hosts)
    assert inv.hosts["stray_Host"].groups == ()
    assert inv.hosts["WEB_01"].groups == ("Web_Servers",)
    # Ansible's warning about the group name is kept for the plan, not printed by Ansible itself
    assert "Invalid characters were found in group names but not replaced: 9th_floor_printers" in inv.warnings


def test_loader_variables_are_not_host_variables():
    inv = load_inventory(INVENTORIES / "webapp" / "hosts.ini")
    assert "inventory_file" not in inv.hosts["web1"].vars and "inventory_dir" not in inv.hosts["web1"].vars


def test_vault_encrypted_group_vars_need_no_password(monkeypatch):
    # No vault password anywhere: if anything tried to decrypt, Ansible would raise.
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = load_inventory(INVENTORIES / "vaulted")
    assert set(inv.hosts) == {"web1", "web2", "db1", "db2"}
    assert inv.vars_dir == INVENTORIES / "vaulted"


def test_inline_vault_in_the_inventory_stays_opaque(tmp_path):
    source = (INVENTORIES / "vaulted" / "group_vars" / "web.yml").read_text()
    block = source[source.index("!vault"):]
    indented = "\n".join("        " + line if i else line for i, line in enumerate(block.splitlines()))
    (tmp_path / "hosts.yml").write_text(f"all:\n  hosts:\n    h1:\n      api_key: {indented}\n")
    inv = load_inventory(tmp_path / "hosts.yml")
    assert isinstance(inv.hosts["h1"].vars["api_key"], VaultValue)


BAD_CASES = {
    "cycle.ini": (6, "recursive dependency loop"),
    "undefined-child.ini": (6, "undefined group 'webb'"),
    "vars-for-undefined-group.ini": (4, "undefined group 'db'"),
    "yaml-as-ini.ini": (1, "Invalid host pattern 'all:'"),
    "unparseable.yml": (6, "YAML parsing failed"),
    "bad-host-vars.ini": (2, "Expected key=value"),
    "bad-section.ini": (1, "cannot parse this line"),
    "garbage.ini": (None, "binary file"),
    "empty.ini": (None, "defines no hosts"),
    "comments-only.ini": (None, "defines no hosts"),
    "empty-dir": (None, "defines no hosts"),
    "aws_ec2.yml": (None, "inventory plugin config"),
    "inventory-script.sh": (None, "executable inventory script"),
    "vault-encrypted.ini": (None, "vault-encrypted as a whole"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_inventories_fail_closed_with_file_and_line(name):
    line, problem = BAD_CASES[name]
    with pytest.raises(InventoryError) as info:
        load_inventory(BAD / name)
    err = info.value
    assert Path(err.path).name == name
    assert err.line == line
    assert problem in err.problem
    assert err.hint


def test_yaml_fed_to_ini_says_so():
    with pytest.raises(InventoryError) as info:
        load_inventory(BAD / "yaml-as-ini.ini")
    assert ".yml extension" in info.value.hint


def test_inventory_script_is_never_run(tmp_path, monkeypatch):
    canary = tmp_path / "ran"
    monkeypatch.setenv("DEVBOX_SCRIPT_CANARY", str(canary))
    with pytest.raises(InventoryError) as info:
        load_inventory(BAD / "inventory-script.sh")
    assert "allow_inventory_scripts" in info.value.hint
    assert not canary.exists()


def test_script_in_an_inventory_directory_is_refused_before_anything_runs(tmp_path, monkeypatch):
    canary = tmp_path / "ran"
    monkeypatch.setenv("DEVBOX_SCRIPT_CANARY", str(canary))
    inv_dir = tmp_path / "inventory"
    inv_dir.mkdir()
    (inv_dir / "01-static.ini").write_text("[web]\nweb1\n")
    script = inv_dir / "02-cloud"
    script.write_text((BAD / "inventory-script.sh").read_text())
    script.chmod(0o755)
    with pytest.raises(InventoryError, match="executable inventory script"):
        load_inventory(inv_dir)
    assert not canary.exists()


def test_scripts_run_only_after_opting_in(tmp_path, monkeypatch):
    canary = tmp_path / "ran"
    monkeypatch.setenv("DEVBOX_SCRIPT_CANARY", str(canary))
    script = tmp_path / "inventory.sh"
    script.write_text((BAD / "inventory-script.sh").read_text())
    script.chmod(0o755)
    inv = load_inventory(script, allow_scripts=True)
    assert canary.exists()
    assert inv.hosts["web1"].groups == ("web",)


CONSTRUCTED = """plugin: {name}
strict: true
keyed_groups:
  - key: tier
    prefix: tier
groups:
  big: mem_gb > 8
"""


def constructed_inventory(tmp_path, config_name: str, plugin: str) -> Path:
    inv_dir = tmp_path / "inventory"
    inv_dir.mkdir()
    (inv_dir / "01-static.ini").write_text("[web]\nweb1 tier=front mem_gb=4\nweb2 tier=back mem_gb=16\n")
    (inv_dir / config_name).write_text(CONSTRUCTED.format(name=plugin))
    return inv_dir


@pytest.mark.parametrize("config_name, plugin", [("zz.config", "constructed"),
                                                  ("zz.config", "ansible.builtin.constructed"),
                                                  ("zz-constructed.yml", "ansible.builtin.constructed"),
                                                  ("zz-constructed.yml", "constructed")])
def test_constructed_plugin_configs_with_the_opt_in(tmp_path, config_name, plugin):
    """Ansible's real `constructed` plugin, by its short and its fully qualified name, in a `.config` file (its own
    extension, once misread as INI) and a `.yml` one: refused without the opt-in, run with it."""
    inv_dir = constructed_inventory(tmp_path, config_name, plugin)
    assert classify_source(inv_dir / config_name) == "plugin"
    with pytest.raises(InventoryError, match="inventory plugin config; devbox refuses to run it"):
        load_inventory(inv_dir)
    inv = load_inventory(inv_dir, allow_scripts=True)
    assert set(inv.hosts["web1"].groups) == {"web", "tier_front"}
    assert set(inv.hosts["web2"].groups) == {"web", "tier_back", "big"}
    assert inv.warnings == ()


def test_plugin_of_a_collection_not_installed_names_the_collection(tmp_path):
    inv = tmp_path / "aws_ec2.yml"
    inv.write_text((BAD / "aws_ec2.yml").read_text())
    with pytest.raises(InventoryError) as info:
        load_inventory(inv, allow_scripts=True)
    assert "amazon.aws.aws_ec2 of the collection amazon.aws, which is not installed" in info.value.problem
    assert "ansible-galaxy collection install amazon.aws" in info.value.hint


def test_plugin_config_errors_name_the_plugin(tmp_path):
    inv_dir = constructed_inventory(tmp_path, "zz.config", "constructed")
    (inv_dir / "zz.config").write_text(CONSTRUCTED.format(name="constructed").replace("mem_gb > 8", "mem_gb >"))
    with pytest.raises(InventoryError, match="the inventory plugin constructed failed"):
        load_inventory(inv_dir, allow_scripts=True)
    (inv_dir / "zz.config").write_text("plugin: no_such_plugin\n")
    with pytest.raises(InventoryError, match="Ansible does not know"):
        load_inventory(inv_dir, allow_scripts=True)
    (inv_dir / "zz.config").write_text("plugin: [\n")
    with pytest.raises(InventoryError, match="not valid YAML"):
        load_inventory(inv_dir, allow_scripts=True)


def test_executable_bit_alone_does_not_make_a_script(tmp_path):
    # Static files checked out with +x (common on shared drives) are still plain INI: nothing to run.
    path = tmp_path / "hosts"
    path.write_text("[web]\nweb1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    assert classify_source(path) == "static"
    assert set(load_inventory(path).hosts) == {"web1"}


def test_directory_inventory_reads_every_file_and_skips_vars_dirs(tmp_path):
    (tmp_path / "10-web.ini").write_text("[web]\nweb1\n")
    (tmp_path / "20-db.yml").write_text("all:\n  children:\n    db:\n      hosts:\n        db1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("this: is not an inventory\n")
    inv = load_inventory(tmp_path)
    assert set(inv.hosts) == {"web1", "db1"}


def test_missing_path():
    with pytest.raises(InventoryError, match="does not exist"):
        load_inventory(INVENTORIES / "no-such-inventory")


def test_toml_is_refused_clearly(tmp_path):
    path = tmp_path / "hosts.toml"
    path.write_text('[web.hosts.web1]\n')
    with pytest.raises(InventoryError, match="TOML"):
        load_inventory(path)


def test_corpus_script_keeps_its_executable_bit():
    # git keeps the mode; without it the refusal above would test nothing
    assert os.access(BAD / "inventory-script.sh", os.X_OK)
