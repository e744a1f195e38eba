"""Hosts' variables as Ansible resolves them (group_vars/host_vars beside the inventory and the playbook), read
without decrypting; and what the plan does with them: exclusion by connection type wherever it is set, differences
between collapsed hosts named from any file, environment groups left out."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.config.schema import parse_config
from provisioner.plan.hostvars import HostVariables
from provisioner.plan.inventory import load_inventory
from provisioner.plan.topology import derive_topology

ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")

HOSTS = """\
[all:vars]
level=all-inline
only_all_inline=1

[parent]
p1

[parent:children]
child

[child]
c1 level=host-inline
c2

[child:vars]
level=child-inline
child_inline=1

[parent:vars]
level=parent-inline
parent_inline=1

[low]
c2

[low:vars]
ansible_group_priority=10
level=low-inline

[zeta]
c2
[alpha]
c2
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def layered(tmp_path: Path) -> tuple[Path, Path]:
    """An inventory folder and a playbook folder, each with group_vars and host_vars, overriding each other."""
    inv, pb = tmp_path / "inventory", tmp_path / "playbooks"
    write(inv / "hosts.ini", HOSTS)
    write(inv / "group_vars" / "all.yml", "level: all-file-inv\nall_inv: 1\n")
    write(pb / "group_vars" / "all" / "main.yml", "level: all-file-pb\nall_pb: 1\n")
    write(inv / "group_vars" / "parent.yml", "level: parent-file-inv\n")
    write(pb / "group_vars" / "parent.yaml", "level: parent-file-pb\nparent_pb: 1\n")
    write(inv / "group_vars" / "child" / "a.yml", "level: child-file-inv\nchild_a: 1\n")
    write(inv / "group_vars" / "child" / "b.yml", "child_b: 2\n")
    write(inv / "group_vars" / "zeta.yml", "order: zeta\n")
    write(inv / "group_vars" / "alpha.yml", "order: alpha\n")
    write(inv / "host_vars" / "c1.yml", "level: host-file-inv\nmine: 1\n")
    write(pb / "host_vars" / "c1", "mine: 2\n")
    write(pb / "site.yml", "- hosts: all\n  tasks: []\n")
    return inv, pb


def ansible_hostvars(inv: Path, pb: Path) -> dict:
    proc = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(inv), "--playbook-dir", str(pb), "--list"],
                          capture_output=True, text=True, cwd=pb,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(pb), "ANSIBLE_NOCOLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["_meta"]["hostvars"]


def test_resolution_is_what_ansible_itself_resolves(tmp_path):
    inv, pb = layered(tmp_path)
    inventory = load_inventory(inv)
    variables = HostVariables(inventory, pb)
    expected = ansible_hostvars(inv, pb)
    for name, host in inventory.hosts.items():
        ours = dict(variables.resolve(host).vars)
        theirs = {k: v for k, v in expected.get(name, {}).items() if k not in ("inventory_file", "inventory_dir")}
        assert ours == theirs, name
    # the layers that decide, spelled out
    c1, c2 = (variables.resolve(inventory.hosts[h]) for h in ("c1", "c2"))
    assert c1.vars["level"] == "host-file-inv" and c1.vars["mine"] == 2   # playbook-side host_vars win
    assert c2.vars["level"] == "parent-file-pb"   # group_vars beside the playbook beat those beside the inventory
    assert c2.vars["order"] == "zeta"             # same depth and priority: by name, so zeta after alpha
    assert c1.where("mine") == "host_vars/c1 (beside the playbook)" and c1.where("nothing") is None
    assert c2.where("order") == "group_vars/zeta.yml (beside the inventory)"
    assert c1.host_level == {"level": "host-file-inv", "mine": 2}


def test_each_vars_file_is_read_once(tmp_path):
    inv, pb = layered(tmp_path)
    write(inv / "group_vars" / "no_such_group.yml", "never: read\n")   # Ansible reads files of known groups only
    inventory = load_inventory(inv)
    variables = HostVariables(inventory, pb)
    derive_topology(inventory, parse_config({}, None), variables)
    first = variables.reads
    for host in inventory.hosts.values():
        variables.resolve(host)
    derive_topology(inventory, parse_config({}, None), variables)
    assert variables.reads == first == 10   # every vars file of the fixture once


CONNECTIONS = [("local", "control node"), ("winrm", "Windows"), ("psrp", "Windows"),
               ("network_cli", "network device"), ("ansible.netcommon.netconf", "network device"),
               ("httpapi", "network device")]
PLACES = {
    "group inline vars": ("inventory/hosts.ini", "[sw:vars]\nansible_connection={c}\n", "the inventory's vars of group sw"),
    "all:vars": ("inventory/hosts.ini", "[all:vars]\nansible_connection={c}\n", "the inventory's vars of all"),
    "group_vars beside the inventory": ("inventory/group_vars/sw.yml", "ansible_connection: {c}\n",
                                        "group_vars/sw.yml (beside the inventory)"),
    "group_vars beside the playbook": ("playbooks/group_vars/sw/conn.yml", "ansible_connection: {c}\n",
                                       "group_vars/sw/conn.yml (beside the playbook)"),
    "group_vars/all beside the playbook": ("playbooks/group_vars/all.yml", "ansible_connection: {c}\n",
                                           "group_vars/all.yml (beside the playbook)"),
    "host_vars beside the inventory": ("inventory/host_vars/sw1.yml", "ansible_connection: {c}\n",
                                       "host_vars/sw1.yml (beside the inventory)"),
    "host_vars beside the playbook": ("playbooks/host_vars/sw1.json", '{{"ansible_connection": "{c}"}}\n',
                                      "host_vars/sw1.json (beside the playbook)"),
}


@pytest.mark.parametrize("connection, kind", CONNECTIONS)
@pytest.mark.parametrize("place", sorted(PLACES))
def test_connection_type_excludes_wherever_it_is_set(tmp_path, place, connection, kind):
    rel, text, label = PLACES[place]
    hosts = "[sw]\nsw1\n"
    if rel == "inventory/hosts.ini":
        hosts += text.format(c=connection)
    else:
        write(tmp_path / rel, text.format(c=connection))
    write(tmp_path / "inventory" / "hosts.ini", hosts)
    only_sw = "sw1" if "host_vars" in place else None
    inventory = load_inventory(tmp_path / "inventory")
    topology = derive_topology(inventory, parse_config({}, None), HostVariables(inventory, tmp_path / "playbooks"))
    assert [e.host for e in topology.excluded] == ["sw1"] and not topology.machines
    reason = topology.excluded[0].reason
    assert f"ansible_connection={connection} (set in {label})" in reason and kind in reason
    assert "`include_hosts:`" in reason
    included = derive_topology(inventory, parse_config({"include_hosts": [only_sw or "sw*"]}, None),
                               HostVariables(inventory, tmp_path / "playbooks"))
    assert [m.represents for m in included.machines] == [("sw1",)] and not included.excluded
    assert not any("include_hosts" in w for w in included.warnings)
    typo = derive_topology(inventory, parse_config({"include_hosts": ["sw2"]}, None))
    assert "include_hosts names no host of the inventory: sw2" in typo.warnings


def test_a_host_var_overrides_a_group_connection(tmp_path):
    write(tmp_path / "hosts.ini", "[win]\nw1\nw2 ansible_connection=ssh\n[win:vars]\nansible_connection=winrm\n")
    topology = derive_topology(load_inventory(tmp_path / "hosts.ini"), parse_config({}, None))
    assert [e.host for e in topology.excluded] == ["w1"]
    assert [m.represents for m in topology.machines] == [("w2",)]


def test_playbook_side_vars_are_not_seen_without_the_playbook_folder(tmp_path):
    write(tmp_path / "inventory" / "hosts.ini", "[sw]\nsw1\n")
    write(tmp_path / "playbooks" / "group_vars" / "sw.yml", "ansible_connection: network_cli\n")
    inventory = load_inventory(tmp_path / "inventory")
    assert not derive_topology(inventory, parse_config({}, None)).excluded   # Ansible too needs --playbook-dir


def test_hosts_whose_host_vars_files_differ_are_named(tmp_path):
    hosts = "[web]\n" + "".join(f"web{i}\n" for i in range(1, 9))
    write(tmp_path / "hosts.ini", hosts)
    for i in range(1, 9):
        write(tmp_path / "host_vars" / f"web{i}.yml", f"public_ip: 203.0.113.{i}\nrack: r{i}\nsame: 1\n")
    write(tmp_path / "host_vars" / "web9.yml", "unused: 1\n")
    topology = derive_topology(load_inventory(tmp_path / "hosts.ini"), parse_config({}, None))
    assert [m.name for m in topology.machines] == ["web-1"]
    warning = next(w for w in topology.warnings if w.startswith("web-1 stands for 8 hosts"))
    assert "variables differ: public_ip, rack (values not shown)" in warning
    assert "203.0.113" not in warning and "same" not in warning.split("differ:")[1]
    assert topology.machine("web-1").host_vars == {}


def test_differences_in_group_vars_of_an_ignored_group_are_named(tmp_path):
    write(tmp_path / "hosts.ini", "[web]\nw1\nw2\n[dc1]\nw1\n[dc2]\nw2\n")
    write(tmp_path / "group_vars" / "dc1.yml", "ntp_server: a\n")
    write(tmp_path / "group_vars" / "dc2.yml", "ntp_server: b\n")
    topology = derive_topology(load_inventory(tmp_path / "hosts.ini"), parse_config({"ignore_groups": ["dc1", "dc2"]},
                                                                                    None))
    assert any("variables differ: ntp_server" in w for w in topology.warnings)


def test_a_vault_encrypted_group_vars_file_is_named_as_opaque(tmp_path):
    write(tmp_path / "hosts.ini", "[web]\nw1\n")
    write(tmp_path / "group_vars" / "web.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    topology = derive_topology(load_inventory(tmp_path / "hosts.ini"), parse_config({}, None))
    assert any("vault-encrypted as a whole" in w and "group_vars/web.yml" in w for w in topology.warnings)
    assert [m.name for m in topology.machines] == ["web-1"]


@pytest.mark.parametrize("group", ["production", "prod", "prd", "live", "staging", "stage", "stg", "uat", "preprod",
                                   "web_prod", "eu-staging", "Production", "qa_env"])
def test_environment_groups_are_left_out(tmp_path, group):
    write(tmp_path / "hosts.ini", f"[web]\nw1\n[{group}:children]\nweb\n[{group}:vars]\nsite_url=https://example.org\n")
    config = {"environments": {"qa_env": {"inventory": "x"}}}
    topology = derive_topology(load_inventory(tmp_path / "hosts.ini"), parse_config(config, None))
    assert group not in topology.group_tree and "web" in topology.group_tree["all"]["children"]
    assert topology.machine("web-1").groups == ("web",)
    assert any(f"join no environment group ({group})" in w for w in topology.warnings)
    kept = derive_topology(load_inventory(tmp_path / "hosts.ini"),
                           parse_config({**config, "environment_groups": {"keep": [group]}}, None))
    assert kept.group_tree[group]["children"] == ["web"]


def test_role_groups_that_only_look_alike_stay(tmp_path):
    write(tmp_path / "hosts.ini", "[stage_manager]\nh1\n[liveness]\nh2\n[products]\nh3\n")
    topology = derive_topology(load_inventory(tmp_path / "hosts.ini"), parse_config({}, None))
    assert {g for m in topology.machines for g in m.groups} == {"stage_manager", "liveness", "products"}


def test_an_included_host_is_reached_over_ssh_whatever_the_playbook_side_says(tmp_path, monkeypatch):
    """A network device given a VM (include_hosts) keeps the playbook's group_vars, ansible_connection included:
    the connection inventory devbox writes sets ssh for each VM, and Ansible itself resolves it so."""
    from click.testing import CliRunner

    from helpers import assert_handled
    from provisioner.app import Devbox
    from provisioner.cli import main
    from provisioner.machines.lifecycle import write_connection_inventory
    from provisioner.plan.planning import load_plan
    from provisioner.project.paths import ProjectPaths
    from provisioner.project.state import MachineRecord, State

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))   # no vagrant: the files are what is checked
    write(tmp_path / "inventory" / "hosts.ini", "[sw]\nsw1\n")
    write(tmp_path / "playbooks" / "group_vars" / "sw.yml", "ansible_connection: network_cli\n")
    write(tmp_path / "playbooks" / "site.yml", "- hosts: sw\n  tasks: []\n")
    write(tmp_path / "devbox.yml", "inventory: inventory/hosts.ini\ninclude_hosts: [sw1]\n")
    assert_handled(CliRunner().invoke(main, ["-C", str(tmp_path), "init"], obj=Devbox(project_dir=tmp_path)), 0)
    paths = ProjectPaths(tmp_path)
    state = State(machines={"sw-1": MachineRecord(ssh={"host": "127.0.0.1", "port": 2222, "user": "vagrant",
                                                        "identity_file": "/k"})})
    write_connection_inventory(paths, load_plan(tmp_path), state)
    hostvars = ansible_hostvars(paths.inventory, tmp_path / "playbooks")
    assert hostvars["sw-1"]["ansible_connection"] == "ssh"


def test_a_group_named_like_a_path_reads_nothing_outside_group_vars(tmp_path):
    write(tmp_path / "inv" / "hosts.yml", "all:\n  children:\n    ../secret:\n      hosts:\n        h1:\n")
    write(tmp_path / "inv" / "group_vars" / "x.yml", "a: 1\n")
    write(tmp_path / "inv" / "secret.yml", "ansible_connection: local\n")
    inventory = load_inventory(tmp_path / "inv" / "hosts.yml")
    assert "../secret" in inventory.groups
    variables = HostVariables(inventory)
    assert "ansible_connection" not in variables.resolve(inventory.hosts["h1"]).vars and variables.reads == 0


def test_the_budget_proposals_read_no_vars_file_again(tmp_path):
    # the rules tried to fit a budget derive the plan again: with the same resolver, from the files already read
    from provisioner.plan.topology import fit_budget

    (tmp_path / "hosts").write_text("[web]\nw1\nw2\n[db]\nd1\n[db_stg]\nd2\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars").mkdir()
    for host in ("w1", "w2", "d1"):
        (tmp_path / "host_vars" / f"{host}.yml").write_text(f"serial: {host}\n")
    (tmp_path / "group_vars" / "web.yml").write_text("http_port: 80\n")
    (tmp_path / "host_vars" / "d2").mkdir()   # a folder read whole
    (tmp_path / "host_vars" / "d2" / "main.yml").write_text("ansible_connection: local\n")
    inv = load_inventory(tmp_path / "hosts")
    rules = parse_config({}, None)
    variables = HostVariables(inv)
    topology = derive_topology(inv, rules, variables)
    reads = variables.reads
    assert reads == 5   # each file once: four host_vars, one group_vars
    shared = fit_budget(inv, rules, topology, 600, "this machine", variables)
    assert shared[0].startswith("too big for this machine") and len(shared) > 1
    assert variables.reads == reads
    assert shared == fit_budget(inv, rules, topology, 600, "this machine")   # the same proposals as before
    assert "d2" not in {h for m in topology.machines for h in m.represents}   # excluded by its host_vars folder
