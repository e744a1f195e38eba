"""From production hosts to development VMs: collapse, rules, names, addresses, warnings."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import ADDRESSED, addressed_inventory
from provisioner.config.schema import load_config, parse_config
from provisioner.errors import ConfigError, DevboxError
from provisioner.environments.model import read_target_hosts
from provisioner.plan.hostvars import HostVariables
from provisioner.plan.inventory import load_inventory
from provisioner.plan.topology import (Topology, derive_topology, fit_budget, free_network, is_connection_var,
                                       jump_hosts_in, plan_memory, production_addresses, slug, suggest_rules)

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "tests" / "data" / "inventories"
GOOD = ["kubernetes/hosts.ini", "openstack/multinode", "replicaset/hosts.ini", "env-type/hosts.ini",
        "yaml-nested/hosts.yml", "ipv6/hosts.ini", "odd-names/hosts.ini", "webapp/hosts.ini", "vaulted"]
VALID_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def plan(source, rules=None, tmp_path=None):
    if isinstance(source, str) and "\n" in source:
        path = tmp_path / "hosts.ini"
        path.write_text(source)
        source = path
    return derive_topology(load_inventory(source), parse_config(rules or {}, None))


def names(topology):
    return [m.name for m in topology.machines]


@pytest.mark.parametrize("source", GOOD)
def test_every_host_exactly_once_and_names_valid(source):
    inv = load_inventory(INVENTORIES / source)
    topology = derive_topology(inv, parse_config({}, None))
    accounted = [h for m in topology.machines for h in m.represents] + [e.host for e in topology.excluded]
    assert sorted(accounted) == sorted(inv.hosts)
    assert len(set(names(topology))) == len(topology.machines)
    assert all(VALID_NAME.match(m.name) and m.hostname == m.name for m in topology.machines)
    assert len({m.address for m in topology.machines}) == len(topology.machines)


@pytest.mark.parametrize("source", GOOD)
def test_deterministic(source):
    first = derive_topology(load_inventory(INVENTORIES / source), parse_config({}, None))
    second = derive_topology(load_inventory(INVENTORIES / source), parse_config({}, None))
    assert first == second


def test_same_role_groups_collapse_and_warn_about_differing_vars():
    topology = plan(INVENTORIES / "kubernetes" / "hosts.ini")
    assert names(topology) == ["kube-control-plane-1", "kube-node-1"]
    cp = topology.machine("kube-control-plane-1")
    assert cp.represents == ("node1", "node2", "node3")
    assert cp.host_vars == {}   # host-level production values stay in production unless devbox.yml keeps them
    assert any("kube-control-plane-1" in w and "etcd_member_name, ip (values not shown)" in w
               for w in topology.warnings)
    assert not any("10.10.0." in w for w in topology.warnings)
    kept = plan(INVENTORIES / "kubernetes" / "hosts.ini", {"host_vars": {"keep": ["etcd_member_name"]}})
    assert kept.machine("kube-control-plane-1").host_vars == {"etcd_member_name": "etcd1"}   # node1's


def test_count_rule_on_a_parent_group_keeps_a_quorum():
    topology = plan(INVENTORIES / "kubernetes" / "hosts.ini", {"groups": {"etcd": {"count": 3}}})
    assert names(topology) == ["kube-control-plane-1", "kube-control-plane-2", "kube-control-plane-3", "kube-node-1"]
    assert [m.represents for m in topology.machines[:3]] == [("node1",), ("node2",), ("node3",)]


def test_count_splits_hosts_into_contiguous_runs_and_never_exceeds_them():
    topology = plan(INVENTORIES / "webapp" / "hosts.ini", {"groups": {"web": {"count": 3}, "lb": {"count": 4}}})
    web = [m for m in topology.machines if m.name.startswith("web-")]
    assert [m.represents for m in web] == [("web1", "web2", "web3"), ("web4", "web5"), ("web6", "web7")]
    assert [m.name for m in topology.machines if m.name.startswith("lb")] == ["lb-1"]   # one lb host, one VM


def test_keep_distinct_and_sizes():
    topology = plan(INVENTORIES / "webapp" / "hosts.ini",
                    {"groups": {"db": {"keep_distinct": "pg_role", "memory": 2048, "cpus": 2}},
                     "defaults": {"memory": 768}})
    primary, replica = topology.machine("db-primary"), topology.machine("db-replica")
    assert (primary.represents, replica.represents) == (("db1",), ("db2",))
    assert (primary.memory, primary.cpus) == (2048, 2)
    assert topology.machine("web-1").memory == 768
    assert primary.host_vars == {"pg_role": "primary"}   # the keep_distinct variable is what tells the VMs apart
    assert topology.machine("web-1").host_vars == {}      # gunicorn_workers: not kept


def test_exclude_rule_with_reason(tmp_path):
    topology = plan(INVENTORIES / "webapp" / "hosts.ini", {"groups": {"bastion": {"exclude": True}}})
    assert [(e.host, e.reason) for e in topology.excluded] == [
        ("bastion1", "group bastion is excluded by the rules `devbox init` proposes")]   # no devbox.yml
    assert "bastion-1" not in names(topology)
    (tmp_path / "devbox.yml").write_text("groups: {bastion: {exclude: true}}\n")
    topology = derive_topology(load_inventory(INVENTORIES / "webapp" / "hosts.ini"), load_config(tmp_path / "devbox.yml"))
    assert [(e.host, e.reason) for e in topology.excluded] == [("bastion1", "group bastion is excluded in devbox.yml")]


def test_environment_and_location_groups_ignored_by_rule():
    topology = plan(INVENTORIES / "env-type" / "hosts.ini")
    # environment groups never split hosts nor hold a VM: one VM per location x type combination
    assert names(topology) == ["webservers-dc1-1", "webservers-dc2-1", "dbservers-dc1-1", "dbservers-dc2-1"]
    assert all("production" not in m.groups and "staging" not in m.groups for m in topology.machines)
    topology = plan(INVENTORIES / "env-type" / "hosts.ini", {"ignore_groups": ["dc1", "dc2"]})
    assert names(topology) == ["webservers-1", "dbservers-1"]
    web = topology.machine("webservers-1")
    # the VM joins every group of the hosts it stands for, ignored ones too, so their plays still reach it; never
    # an environment group (whose group_vars hold that environment's values)
    assert web.groups == ("dc1", "dc2", "webservers")
    assert web.represents == ("web-prod-1", "web-prod-2", "web-prod-3", "web-stage-1")
    assert any("join no environment group (production, staging)" in w and "environment_groups: keep:" in w
               for w in topology.warnings)
    kept = plan(INVENTORIES / "env-type" / "hosts.ini",
                {"ignore_groups": ["production", "staging", "dc1", "dc2"], "environment_groups": {"keep": ["staging"]}})
    assert kept.machine("webservers-1").groups == ("dc1", "dc2", "staging", "webservers")
    assert "staging" in kept.group_tree and "production" not in kept.group_tree


def test_local_and_windows_hosts_excluded_with_reason_once():
    topology = plan(INVENTORIES / "openstack" / "multinode")
    assert [e.host for e in topology.excluded] == ["localhost"]
    assert "ansible_connection=local" in topology.excluded[0].reason
    topology = plan(INVENTORIES / "odd-names" / "hosts.ini")
    assert [e.host for e in topology.excluded] == ["printer_A"]
    assert "Windows" in topology.excluded[0].reason
    assert not any("printer_A" in w for w in topology.warnings)   # the exclusion says it, once


def test_hosts_in_no_group_warned():
    topology = plan(INVENTORIES / "odd-names" / "hosts.ini")
    assert any("no group" in w and "stray_Host" in w for w in topology.warnings)
    assert topology.machine("ungrouped-1").represents == ("stray_Host",)


def test_names_from_odd_group_names():
    topology = plan(INVENTORIES / "odd-names" / "hosts.ini")
    assert names(topology) == ["ungrouped-1", "web-servers-1", "db-primary-1", "monitoring-1", "everything-else-1"]


def test_openstack_collapses_to_one_vm_per_node_type():
    topology = plan(INVENTORIES / "openstack" / "multinode")
    assert names(topology) == ["control-1", "network-1", "compute-1", "monitoring-1", "storage-1"]
    assert len(topology.machine("compute-1").represents) == 20


def test_connection_variables_never_reach_the_vms(tmp_path):
    topology = plan("""[web]
web1 ansible_host=10.1.1.1 ansible_port=2222 ansible_user=deploy ansible_ssh_common_args='-o ProxyJump=bastion' ansible_password=x ansible_become_password=y ansible_ssh_private_key_file=/k ansible_ssh_extra_args=-v keep_me=1
[web:vars]
ansible_ssh_common_args='-o ProxyJump=jump'
ansible_user=deploy
http_port=80
""", tmp_path=tmp_path)
    assert topology.machine("web-1").host_vars == {}
    assert topology.group_tree["web"]["vars"] == {"http_port": 80}
    kept = plan(tmp_path / "hosts.ini", {"host_vars": {"keep": ["keep_me", "ansible_host"]}})
    assert kept.machine("web-1").host_vars == {"keep_me": 1}   # connection settings are never kept
    assert "10.1.1.1" not in json.dumps(topology.to_state())


def test_is_connection_var():
    for name in ("ansible_host", "ansible_ssh_host", "ansible_ssh_common_args", "ansible_winrm_transport",
                 "ansible_become_pass", "ansible_connection"):
        assert is_connection_var(name)
    for name in ("ansible_python_interpreter", "ansible_become_user", "http_port"):
        assert not is_connection_var(name)


def test_addresses_from_the_network_and_capacity(tmp_path):
    topology = plan(INVENTORIES / "webapp" / "hosts.ini", {"network": "10.9.0.0/24"})
    assert [m.address for m in topology.machines] == [f"10.9.0.{i}" for i in range(11, 16)]
    hosts = "\n".join(f"[g{i}]\nh{i}" for i in range(10))
    with pytest.raises(DevboxError, match="room for 4 VMs"):
        plan(hosts, {"network": "10.9.0.0/28"}, tmp_path=tmp_path)
    (tmp_path / "devbox.yml").write_text("network: 10.9.0.0/28\n")
    with pytest.raises(ConfigError, match="room for 4 VMs"):   # with a devbox.yml, the error names it
        derive_topology(load_inventory(tmp_path / "hosts.ini"), load_config(tmp_path / "devbox.yml"))


def test_full_default_network_without_devbox_yml_does_not_blame_devbox_yml(tmp_path):
    hosts = "\n".join(f"[g{i}]\nh{i}" for i in range(250))
    with pytest.raises(DevboxError) as caught:
        plan(hosts, tmp_path=tmp_path)
    assert not isinstance(caught.value, ConfigError)
    assert "no devbox.yml" in caught.value.message and "room for 244 VMs" in caught.value.message
    assert "devbox init" in caught.value.hint


def test_production_addresses_are_the_ones_ansible_resolves_from_vars_files_group_vars_and_host_names(tmp_path):
    """ansible_host in host_vars/ and group_vars/ files (beside the inventory and beside the playbook), in
    `[group:vars]`, and a host named by its address: all found, and exactly the addresses Ansible's own
    VariableManager gives the hosts (read_target_hosts) on the inventory side."""
    inventory, project = addressed_inventory(tmp_path)
    inv = load_inventory(inventory)
    found = {str(a) for a in production_addresses(inv, HostVariables(inv, project / "playbooks"))}
    assert found == set(ADDRESSED)
    inventory_side = {str(a) for a in production_addresses(inv)}
    assert inventory_side == set(ADDRESSED) - {"192.168.56.14"}   # the playbook's host_vars need the playbook
    by_ansible = {t.address for t in read_target_hosts(inventory) if re.fullmatch(r"[\d.]+", t.address)}
    assert inventory_side == by_ansible
    assert free_network(inv, "192.168.56.0/24", HostVariables(inv, project / "playbooks")) == "192.168.57.0/24"
    topology = derive_topology(inv, parse_config({}, None), HostVariables(inv, project / "playbooks"))
    assert "the development network 192.168.56.0/24 holds the addresses of 4 production hosts" in \
        " ".join(topology.warnings)
    assert not any(address in " ".join(topology.warnings) for address in ADDRESSED)


def test_development_network_checked_against_production_addresses(tmp_path):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\nweb1 ansible_host=192.168.56.20\n[db]\n192.168.57.4\n")
    inv = load_inventory(inventory)
    assert free_network(inv, "192.168.56.0/24") == "192.168.58.0/24"   # .56 and .57 hold production hosts
    assert free_network(inv, "10.9.0.0/24") == "10.9.0.0/24"
    topology = plan(inventory, {"network": "192.168.56.0/24"})
    assert ("the development network 192.168.56.0/24 holds the addresses of 1 production host: set another `network` "
            "in devbox.yml (`devbox init` proposes a free one)") in topology.warnings
    assert not any("192.168.56.20" in w for w in topology.warnings)   # warnings reach plan.json: no address
    assert not any("production host" in w for w in plan(inventory, {"network": "10.9.0.0/24"}).warnings)


def test_name_collisions_between_groups_are_said(tmp_path):
    topology = plan("[web_app]\na\n[web-app]\nb\n[web-app-1]\nc\n", tmp_path=tmp_path)
    assert names(topology) == ["web-app-1", "web-app-1-2", "web-app-1-1"]
    assert [w for w in topology.warnings if "is not named" in w] == [
        "VM web-app-1-2 (for web-app) is not named web-app-1: another VM of the plan has that name (group names "
        "differing only in `_`/`-`/case or a numeric suffix give the same VM name)"]


def test_name_collisions_resolved_readably(tmp_path):
    topology = plan("""[web]
a
b
[monitored]
b
[web2]
c
""", tmp_path=tmp_path)
    assert names(topology) == ["web-1", "web-monitored-1", "web2-1"]


def test_long_names_truncated_to_a_valid_hostname(tmp_path):
    group = "a" * 80
    topology = plan(f"[{group}]\nh1\n", tmp_path=tmp_path)
    assert all(VALID_NAME.match(n) and len(n) <= 63 for n in names(topology))


def test_long_names_keep_their_index_and_whole_words(tmp_path):
    group = "payments_settlement_reconciliation_worker_pool_eu_central_primary"
    topology = plan(f"[{group}]\nh1\nh2\nh3\n", {"groups": {group: {"count": 3}}}, tmp_path=tmp_path)
    assert names(topology) == [f"payments-settlement-reconciliation-worker-pool-eu-central-{i}" for i in (1, 2, 3)]
    group = "payments_settlement_reconciliation_worker_pool_europe_centralised"   # the cut falls inside a word
    topology = plan(f"[{group}]\nh1\nh2\n", {"groups": {group: {"count": 2}}}, tmp_path=tmp_path)
    assert names(topology) == [f"payments-settlement-reconciliation-worker-pool-europe-{i}" for i in (1, 2)]
    assert all(len(n) <= 59 and VALID_NAME.match(n) for n in names(topology))


def test_non_ascii_group_names_transliterated(tmp_path):
    topology = plan("[données]\nh1\n[Grüße]\nh2\n", tmp_path=tmp_path)
    assert names(topology) == ["donnees-1", "grue-1"]
    assert slug("Ärger_Ölpreis") == "arger-olpreis"


def test_slug():
    assert slug("Web_Servers") == "web-servers"
    assert slug("9th_floor") == "vm-9th-floor"
    assert slug("__") == "vm"


def test_state_round_trip_keeps_everything():
    topology = plan(INVENTORIES / "webapp" / "hosts.ini", {"groups": {"db": {"keep_distinct": "pg_role"}}})
    again = Topology.from_state(json.loads(json.dumps(topology.to_state())))
    assert again == topology


def test_plan_json_schema_is_exactly_the_contract():
    data = plan(INVENTORIES / "openstack" / "multinode").to_json()
    assert set(data) == {"machines", "excluded", "warnings"}
    assert all(set(m) == {"name", "hostname", "groups", "represents", "memory", "cpus", "address"}
               for m in data["machines"])
    assert all(set(e) == {"host", "reason"} for e in data["excluded"])


def test_suggested_rules():
    ignore, rules = suggest_rules(load_inventory(INVENTORIES / "webapp" / "hosts.ini"))
    assert [s.group for s in ignore] == ["production"]
    assert {s.group: dict(s.rule) for s in rules} == {"db": {"keep_distinct": "pg_role"}, "bastion": {"exclude": True}}
    _, rules = suggest_rules(load_inventory(INVENTORIES / "kubernetes" / "hosts.ini"))
    assert {s.group: dict(s.rule) for s in rules} == {"etcd": {"count": 3}}


def test_jump_host_found_through_proxyjump(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[gw]\njumpy ansible_host=198.51.100.1\n[app]\napp1\n[app:vars]\n"
                    "ansible_ssh_common_args='-o ProxyJump=ops@198.51.100.1:22'\n")
    _, rules = suggest_rules(load_inventory(path))
    assert {s.group: dict(s.rule) for s in rules} == {"gw": {"exclude": True}}


def test_jump_host_found_through_proxycommand(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[gw]\ngw\n[app]\napp1\n[app:vars]\n"
                    "ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p gw\"'\n")
    _, rules = suggest_rules(load_inventory(path))
    assert {s.group: dict(s.rule) for s in rules} == {"gw": {"exclude": True}}


def test_jump_hosts_in_ssh_arguments():
    assert jump_hosts_in('-o ProxyCommand="ssh -W %h:%p gw"') == ["gw"]
    assert jump_hosts_in("-o 'ProxyCommand ssh -q -i key -p 2222 -W %h:%p ops@gw.example'") == ["ops@gw.example"]
    assert jump_hosts_in('-o ProxyCommand="ssh gw nc %h %p"') == ["gw"]
    assert jump_hosts_in("-J a@b:22,c -o ProxyJump=d") == ["a@b:22", "c", "d"]
    assert jump_hosts_in('-o ProxyCommand="nc -X 5 -x proxy:1080 %h %p" -o ProxyJump=none') == []
    assert jump_hosts_in("-o StrictHostKeyChecking=no -o 'unbalanced") == []


def test_reference_service_plan():
    """The repository's own devbox.yml on the reference production inventory."""
    config = load_config(REPO / "devbox.yml", required=True)
    topology = derive_topology(load_inventory(config.inventory_path()), config)
    roles = {m.name.rsplit("-", 1)[0] if m.name[-1].isdigit() else m.name for m in topology.machines}
    assert roles == {"lb", "web", "cache", "db-primary", "db-replica"}
    assert [e.host for e in topology.excluded] == ["bastion-01"]
    assert "excluded in devbox.yml" in topology.excluded[0].reason


def test_keep_distinct_on_a_parent_leaves_classes_without_the_variable_alone():
    topology = plan(INVENTORIES / "yaml-nested" / "hosts.yml", {"groups": {"backend": {"keep_distinct": "pg_role"}}})
    assert names(topology) == ["lb-1", "app-blue-1", "app-green-1", "db-primary", "db-replica", "queue-1"]
    ignore, rules = suggest_rules(load_inventory(INVENTORIES / "yaml-nested" / "hosts.yml"))
    assert {s.group: dict(s.rule) for s in rules} == {"db": {"keep_distinct": "pg_role"}}


def test_network_devices_excluded_and_an_empty_plan_warned(tmp_path):
    topology = plan("[switches]\nsw1 ansible_connection=ansible.netcommon.network_cli\n[jump]\nj1\n",
                    {"groups": {"jump": {"exclude": True}}}, tmp_path=tmp_path)
    assert topology.machines == ()
    assert "network device" in topology.excluded[0].reason
    assert any(w.startswith("no VMs") for w in topology.warnings)


def test_thousands_of_distinct_classes_stay_fast(tmp_path):
    import time
    # one group per host (seen in inventories generated from a CMDB): every host is its own class
    text = "".join(f"[svc_{i}]\nhost{i}\n" for i in range(3000))
    start = time.perf_counter()
    topology = plan(text, {"network": "10.0.0.0/16"}, tmp_path=tmp_path)
    assert len(topology.machines) == 3000 and len(set(names(topology))) == 3000
    assert time.perf_counter() - start < 20


def test_hosts_named_by_address_are_redacted_in_what_is_written(tmp_path):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "10.0.0.1.yml").write_text("ansible_connection: winrm\n")
    topology = plan("[web]\n10.0.0.12\n10.0.0.13\n[win]\n10.0.0.1\nwin2 ansible_host=192.0.2.7\n"
                    "[win:vars]\nansible_connection=winrm\n", tmp_path=tmp_path)
    assert topology.machine("web-1").represents == ("10.0.0.12", "10.0.0.13")   # the terminal shows real names
    written = topology.redacted()
    state = json.dumps(written.to_state())
    for address in ("10.0.0.1", "10.0.0.12", "10.0.0.13", "192.0.2.7"):
        assert address not in state
    assert written.machine("web-1").represents == ("address-named-host-2", "address-named-host-3")
    assert [e.host for e in written.excluded] == ["address-named-host-1", "win2"]
    assert "host_vars/address-named-host-1.yml (beside the inventory)" in written.excluded[0].reason
    assert written.redacted() == written and Topology.from_state(written.to_state()) == written


STAGED = "".join(f"[{role}_prod]\n{role}1.prod\n{role}2.prod\n[{role}_stg]\n{role}1.stg\n"
                 f"[{role}:children]\n{role}_prod\n{role}_stg\n" for role in ("web", "api", "db", "cache"))


def test_environment_groups_proposed_for_ignore_groups_only_where_hosts_keep_a_role(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(STAGED + "[solo_stg]\nsolo1\n[uat-db]\ndb1.prod\n[monitoring_prod]\nmon1\n")
    ignore, rules = suggest_rules(load_inventory(path))
    # not solo_stg nor monitoring_prod: their hosts have no other group to be a VM of
    assert [s.group for s in ignore] == ["web_prod", "api_prod", "db_prod", "cache_prod"]
    assert "environment" in ignore[1].reason
    # staging copies of a role group are excluded instead: the role's VMs stand for them
    assert {s.group: s.reason for s in rules} == {
        **{f"{r}_stg": f"another environment's copy of {r}_prod: the VMs of {r}_prod stand for it"
           for r in ("web", "api", "db", "cache")},
        "uat-db": "another environment's copy of db_prod: the VMs of db_prod stand for it"}


def test_too_big_for_the_budget_warned_with_rules_that_fit(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(STAGED)
    inv = load_inventory(path)
    rules = parse_config({}, None)
    topology = derive_topology(inv, rules)
    # the VMs join no environment group: each role's production and staging hosts share its VM
    assert (len(topology.machines), plan_memory(topology)) == (4, 2048)
    assert fit_budget(inv, rules, topology, 2048, "the budget") == []
    warnings = fit_budget(inv, rules, topology, 1800, "the budget in devbox.yml")
    assert warnings[0] == ("too big for the budget in devbox.yml: the plan needs 4 VMs and 2048 MiB of memory, "
                           "more than 1800 MiB; rules in devbox.yml that bring it under follow")
    # ignoring the environment groups or excluding the staging copies would change nothing here: not proposed
    assert warnings[1:] == ["to fit: `defaults: {memory: 384}` gives 4 VMs, 1536 MiB"]   # under the budget there
    tight = fit_budget(inv, rules, topology, 800, "this machine")
    assert tight[-1].startswith("to fit: `exclude: true` for the groups that make the most VMs (web, api) gives "
                                "2 VMs, 768 MiB")
    assert fit_budget(inv, rules, topology, 100, "this machine")[-1].startswith("to fit: no rule alone is enough")


def test_staging_copies_of_a_role_group_proposed_for_exclusion(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nw1\n[web_stg]\nws1\n[db_prod]\nd1\n[db-staging]\nds1\n[cache_stg]\ncs1\n[prod-api]\na1\n")
    inv = load_inventory(path)
    ignore, rules = suggest_rules(inv)
    assert ignore == ()   # none of these hosts has another group to be a VM of
    assert {s.group: (dict(s.rule), s.reason) for s in rules} == {
        "web_stg": ({"exclude": True}, "another environment's copy of web: the VMs of web stand for it"),
        "db-staging": ({"exclude": True}, "another environment's copy of db_prod: the VMs of db_prod stand for it")}
    proposed = derive_topology(inv, parse_config({"groups": {s.group: dict(s.rule) for s in rules}}, None))
    # no VM for a staging copy; db_prod and cache_stg are environment groups, which VMs never join (said): their
    # hosts, in no other group, share a VM named for those groups (not the VM of hosts in no group), and are named
    assert [(m.name, m.represents) for m in proposed.machines] == [
        ("web-1", ("w1",)), ("db-prod-cache-stg-only-1", ("d1", "cs1")), ("prod-api-1", ("a1",))]
    assert any(w.startswith("2 hosts are in no role group, only in environment groups the VMs do not join "
                            "(cache_stg, db_prod): cs1, d1; db-prod-cache-stg-only-1 stands for them")
               for w in proposed.warnings)
    assert any(w.startswith("the VMs join no environment group (cache_stg, db_prod)") for w in proposed.warnings)


def test_budget_proposes_excluding_staging_copies(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("".join(f"[{r}]\n{r}1\n[{r}-staging]\n{r}s1\n" for r in ("web", "db", "cache", "queue")))
    inv = load_inventory(path)
    rules = parse_config({}, None)
    topology = derive_topology(inv, rules)
    assert len(topology.machines) == 5   # the staging hosts, in no role group, share the VM of hosts in no group
    warnings = fit_budget(inv, rules, topology, 2048, "this machine")
    assert warnings[1] == ("to fit: `exclude: true` for web-staging, db-staging, cache-staging, queue-staging "
                           "(another environment's copies of role groups) gives 4 VMs, 2048 MiB")
    assert len(warnings) == 2


def test_host_level_variables_left_out_are_named_and_keep_brings_one_back(tmp_path):
    inventory = "[db]\ndb1 db_port=5432 ansible_host=203.0.113.9\n[web]\nweb1\n"
    topology = plan(inventory, tmp_path=tmp_path)
    assert topology.machine("db-1").host_vars == {}
    left = [w for w in topology.warnings if w.startswith("host-level variables not copied to the VMs")]
    assert len(left) == 1 and "db_port" in left[0] and "host_vars: {keep:" in left[0]
    assert "ansible_host" not in left[0] and "5432" not in left[0]   # connection settings and values never named
    kept = plan(inventory, {"host_vars": {"keep": ["db_port"]}}, tmp_path=tmp_path)
    assert kept.machine("db-1").host_vars == {"db_port": 5432}
    assert not any(w.startswith("host-level variables") for w in kept.warnings)
    given = plan(inventory, {"vars": {"db_port": 15432}}, tmp_path=tmp_path)   # a development value instead
    assert not any(w.startswith("host-level variables") for w in given.warnings)


ENVIRONMENT_ONLY = """\
stray.example.org
[production]
bastion.example.org
monitor.example.org
203.0.113.7
web1.example.org
[web]
web1.example.org
"""


def test_hosts_only_in_an_environment_group_are_named_and_not_taken_for_hosts_in_no_group(tmp_path):
    topology = plan(ENVIRONMENT_ONLY, tmp_path=tmp_path)
    # a host in no group, hosts only in production (no role group), and a web host: three different VMs
    assert [(m.name, m.represents, m.groups) for m in topology.machines] == [
        ("ungrouped-1", ("stray.example.org",), ()),
        ("production-only-1", ("bastion.example.org", "monitor.example.org", "203.0.113.7"), ()),
        ("web-1", ("web1.example.org",), ("web",))]
    said = [w for w in topology.warnings if "no role group" in w]
    assert said == [
        "3 hosts are in no role group, only in environment groups the VMs do not join (production): 203.0.113.7, "
        "bastion.example.org, monitor.example.org; production-only-1 stands for them, and plays that name these hosts "
        "or target production skip it (only plays for `all` and the groups it joins reach it). For a VM of its own, "
        "put each such host in a group named for its role in the inventory; or list production under "
        "`environment_groups: keep:` in devbox.yml so that plays for it reach the VMs (its group_vars then apply "
        "to them)"]
    assert "hosts in no group (only plays for `all` reach them): stray.example.org" in topology.warnings
    # what devbox writes names the address-named host by its token, never by its address
    written = json.dumps(topology.redacted().to_json())
    assert "203.0.113.7" not in written and "address-named-host-1, bastion.example.org" in written

    # keeping the environment group: the VM joins it (plays for production reach it), and nothing is warned
    kept = plan(ENVIRONMENT_ONLY, {"environment_groups": {"keep": ["production"]}}, tmp_path=tmp_path)
    assert [(m.name, m.groups) for m in kept.machines] == [
        ("ungrouped-1", ()), ("production-1", ("production",)), ("production-web-1", ("production", "web"))]
    assert not [w for w in kept.warnings if "no role group" in w]


def test_hosts_only_in_ignored_groups_get_a_vm_named_for_them_that_joins_them(tmp_path):
    topology = plan("solo\n[dc1]\nsolo\n[web]\nw1\n[dc1:children]\nweb\n", {"ignore_groups": ["dc1"]},
                    tmp_path=tmp_path)
    assert [(m.name, m.groups) for m in topology.machines] == [("dc1-only-1", ("dc1",)), ("web-1", ("web",))]
    assert not [w for w in topology.warnings if "no role group" in w]   # plays for dc1 reach it: nothing to say
