"""devbox.yml `hypervisors:`: validation, placement (memory, replicas apart, refusal with numbers, stable across
runs), each hypervisor's routed subnet, plan.json, and the Vagrantfile (rendered and checked by the real Vagrant)."""
from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from provisioner.adapters.vagrant_driver import validate_vagrantfile
from provisioner.config.schema import parse_config
from provisioner.errors import ConfigError
from provisioner.plan.inventory import load_inventory
from provisioner.plan.placement import SUBNET_POOL, Previous
from provisioner.plan.render import DEFAULT_TEMPLATE, install_vagrantfile, jump_command, render_vagrantfile
from provisioner.plan.topology import Topology, derive_topology

REPO = Path(__file__).resolve().parents[2]
WEBAPP = REPO / "tests" / "data" / "inventories" / "webapp" / "hosts.ini"
HV1 = {"name": "hv1", "uri": "qemu+ssh://root@hv1.example/system?keyfile=/keys/hv", "memory_mb": 2048, "cpus": 2,
       "known_hosts": "/keys/hypervisors.known_hosts"}
HV2 = {"name": "hv2", "uri": "qemu+ssh://root@hv2.example/system?keyfile=/keys/hv", "memory_mb": 2048, "cpus": 2}


def plan(hypervisors, groups=None, previous=None, **rules):
    config = parse_config({"groups": {"web": {"count": 3}, **(groups or {})}, "hypervisors": hypervisors, **rules},
                          Path("devbox.yml"))
    return derive_topology(load_inventory(WEBAPP), config, previous=previous), config


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, Path("devbox.yml"))
    return err.value.problems


# --- devbox.yml ---------------------------------------------------------------------------------------------

def test_hypervisors_are_read_with_names_derived_from_the_uri():
    config = parse_config({"hypervisors": [{"uri": "qemu:///system", "memory_mb": 4096, "cpus": 4},
                                           {"uri": "qemu+ssh://ops@hv7.lab.example/system", "memory_mb": 8192,
                                            "cpus": 8, "subnet": "10.9.1.5/24"}]}, None)
    assert [(h.name, h.memory, h.cpus, h.subnet) for h in config.hypervisors] == [
        ("local", 4096, 4, None), ("hv7", 8192, 8, "10.9.1.0/24")]


@pytest.mark.parametrize("hypervisors, expected", [
    ("qemu:///system", "must be a non-empty list"),
    ([], "must be a non-empty list"),
    ([{"uri": "hv1", "memory_mb": 512, "cpus": 1}], "`hypervisors[0].uri` must be a libvirt connection URI"),
    ([{"uri": "qemu:///system", "memory_mb": 64, "cpus": 1}], "`hypervisors[0].memory_mb` must be a whole number"),
    ([{"uri": "qemu:///system", "memory_mb": 512}], "`hypervisors[0].cpus` is missing: it must be a whole number"),
    ([{"uri": "qemu:///system", "memory_mb": 512, "cpus": 1, "ram": 1}], "unknown key `hypervisors[0].ram`"),
    ([{**HV1, "subnet": "10.1.1.0/29"}], "too small"),
    ([{**HV1, "name": "HV 1"}], "`hypervisors[0].name` must be"),
    ([{**HV1, "name": "hv1\n"}], "`hypervisors[0].name` must be"),   # `$` alone would let a line break through
    ([HV1, {**HV2, "name": "hv1"}], "two hypervisors are named `hv1`"),
    ([{**HV1, "subnet": "10.5.0.0/16"}, {**HV2, "subnet": "10.5.3.0/24"}], "overlap: each hypervisor needs"),
    ([{**HV1, "subnet": "192.168.56.0/25"}], "overlaps the development network 192.168.56.0/24"),
    ([{**HV1, "uri": "qemu+libssh://root@hv1:2222/system?known_hosts=/kh"}], "names SSH port 2222"),
])
def test_bad_hypervisors_are_refused_with_the_entry_named(hypervisors, expected):
    assert any(expected in p for p in problems({"hypervisors": hypervisors})), problems({"hypervisors": hypervisors})


def test_libvirt_uri_and_hypervisors_together_are_refused():
    assert any("`libvirt.uri` and `hypervisors`" in p
               for p in problems({"libvirt": {"uri": "qemu+ssh://a/system"}, "hypervisors": [HV1]}))


# --- placement ----------------------------------------------------------------------------------------------

def test_every_vm_is_placed_within_each_hypervisors_memory_and_gets_an_address_from_its_subnet():
    topology, _ = plan([HV1, HV2])
    uses = {h.name: h for h in topology.hypervisors}
    assert {m.hypervisor for m in topology.machines} == {"hv1", "hv2"}
    for m in topology.machines:
        assert ipaddress.IPv4Address(m.address) in ipaddress.IPv4Network(uses[m.hypervisor].subnet)
    for h in uses.values():
        assert h.used_memory == sum(m.memory for m in topology.machines if m.hypervisor == h.name) <= h.memory
    assert len({m.address for m in topology.machines}) == len(topology.machines)


def test_copies_of_one_role_go_to_different_hypervisors_where_there_is_room():
    topology, _ = plan([HV1, HV2], groups={"web": {"count": 2}})
    assert {topology.machine("web-1").hypervisor, topology.machine("web-2").hypervisor} == {"hv1", "hv2"}
    assert not any("share hypervisor" in w for w in topology.warnings)


def test_copies_share_a_hypervisor_only_when_the_other_is_full_and_plan_says_so():
    # hv2 has room for one VM, and the previous plan already put db-1 there
    topology, _ = plan([{**HV1, "memory_mb": 4096}, {**HV2, "memory_mb": 512}], groups={"web": {"count": 2}},
                       previous=Previous({"db-1": ("hv2", "")}, {}))
    placed = {m.name: m.hypervisor for m in topology.machines}
    assert placed["db-1"] == "hv2" and placed["web-1"] == placed["web-2"] == "hv1"
    assert any("web-1, web-2 (copies of one role) share hypervisor hv1" in w for w in topology.warnings)


def test_a_topology_that_does_not_fit_is_refused_with_the_numbers():
    with pytest.raises(ConfigError) as err:
        plan([{**HV1, "memory_mb": 1024}, {**HV2, "memory_mb": 1024}], groups={"db": {"memory": 1024}})
    text = "\n".join(err.value.problems)
    assert "the 7 VMs need 4096 MiB together; the hypervisors give 2048 MiB" in text
    assert "fits on no hypervisor: hv1 has " in text and "hv2 has " in text
    assert "memory_mb" in err.value.hint


def test_a_vm_wanting_more_cpus_than_a_hypervisor_grants_goes_elsewhere():
    topology, _ = plan([{**HV1, "cpus": 1}, {**HV2, "memory_mb": 4096}], groups={"db": {"cpus": 2}})
    assert topology.machine("db-1").hypervisor == "hv2"


def test_adding_a_vm_moves_no_other_vm_nor_its_address():
    first, _ = plan([HV1, HV2])
    state = Topology.from_state(first.to_state())
    second, _ = plan([HV1, HV2], groups={"web": {"count": 4}}, previous=state.previous_placement())
    before = {m.name: (m.hypervisor, m.address) for m in first.machines}
    after = {m.name: (m.hypervisor, m.address) for m in second.machines}
    assert set(after) - set(before) == {"web-4"}
    assert {n: after[n] for n in before} == before
    assert [h.subnet for h in first.hypervisors] == [h.subnet for h in second.hypervisors]


def test_without_the_previous_plan_placement_is_deterministic_and_listing_a_hypervisor_keeps_the_others_subnets():
    a, _ = plan([HV1, HV2])
    b, _ = plan([HV1, HV2])
    assert a.to_json() == b.to_json()
    c, _ = plan([HV1, HV2, {**HV2, "name": "hv3", "uri": "qemu+ssh://root@hv3.example/system"}])
    assert [h.subnet for h in c.hypervisors[:2]] == [h.subnet for h in a.hypervisors]


def test_derived_subnets_avoid_the_development_network_and_production_addresses():
    topology, _ = plan([HV1, HV2], network="10.231.0.0/17")
    for h in topology.hypervisors:
        net = ipaddress.IPv4Network(h.subnet)
        assert net.subnet_of(SUBNET_POOL) and not net.overlaps(ipaddress.IPv4Network("10.231.0.0/17"))


def test_a_given_subnet_holding_production_addresses_is_warned_about():
    # webapp's web hosts are reached at 10.20.1.x (ansible_host)
    topology, _ = plan([{**HV1, "subnet": "10.20.1.0/24"}, HV2])
    assert any("subnet of hypervisor hv1 (10.20.1.0/24) holds the addresses of" in w for w in topology.warnings)


def test_a_vm_whose_hypervisor_left_the_list_is_placed_again_and_said():
    first, _ = plan([HV1, HV2])
    second, _ = plan([HV1, {**HV2, "name": "hv9", "uri": "qemu+ssh://root@hv9.example/system"}],
                     previous=first.previous_placement())
    moved = [m.name for m in first.machines if m.hypervisor == "hv2"]
    assert all(second.machine(n).hypervisor == "hv9" for n in moved)
    assert any("placed again" in w and moved[0] in w for w in second.warnings)


def test_without_hypervisors_nothing_changes():
    config = parse_config({"groups": {"web": {"count": 3}}}, None)
    topology = derive_topology(load_inventory(WEBAPP), config)
    assert not topology.hypervisors and all(m.hypervisor is None for m in topology.machines)
    assert "hypervisors" not in topology.to_json() and "hypervisor" not in topology.to_json()["machines"][0]
    assert topology.machines[0].address == "192.168.56.11"


def test_plan_json_round_trip_keeps_the_placement():
    topology, _ = plan([HV1, HV2])
    again = Topology.from_state(topology.to_state())
    assert again.to_json() == topology.to_json()
    assert again.previous_placement() == Previous({m.name: (m.hypervisor, m.address) for m in topology.machines},
                                                  {h.name: h.subnet for h in topology.hypervisors})


# --- the Vagrantfile ------------------------------------------------------------------------------------------

def test_jump_command_pins_the_hypervisors_host_key():
    command = jump_command("qemu+ssh://root@hv1.example/system?keyfile=/keys/hv", "/keys/kh")
    assert command == ("ssh hv1.example -l root -i /keys/hv -o IdentitiesOnly=yes -o UserKnownHostsFile=/keys/kh "
                       "-o StrictHostKeyChecking=yes -o BatchMode=yes -W %h:%p")
    assert jump_command("qemu:///system", "/keys/kh") is None
    assert "UserKnownHostsFile=/k/known" in jump_command("qemu+ssh://hv/system?known_hosts=/k/known", None)


def test_the_vagrantfile_carries_each_vms_hypervisor_and_routed_network():
    topology, config = plan([HV1, HV2])
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE)
    for m in topology.machines:
        block = text.split(f"config.vm.define '{m.name}'")[1].split("config.vm.define")[0]
        use = next(h for h in topology.hypervisors if h.name == m.hypervisor)
        assert f"libvirt.uri = '{use.uri}'" in block
        assert f"ip: '{m.address}', netmask: '255.255.255.0'" in block
        assert f"libvirt__network_name: 'devbox-{m.hypervisor}', libvirt__forward_mode: \"route\"" in block
        assert ("UserKnownHostsFile=/keys/hypervisors.known_hosts" in block) == (m.hypervisor == "hv1")


@pytest.mark.vagrant
def test_vagrant_validate_accepts_the_spread_out_vagrantfile(tmp_path):
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    topology, config = plan([HV1, HV2, {"uri": "qemu:///system", "memory_mb": 1024, "cpus": 1}])
    assert "local" in {m.hypervisor for m in topology.machines}
    install_vagrantfile(tmp_path, render_vagrantfile(topology, config, DEFAULT_TEMPLATE), validate_vagrantfile)
    assert "libvirt.proxy_command" in (tmp_path / "Vagrantfile").read_text()
    assert not (tmp_path / ".vagrant").exists()


@pytest.mark.vagrant
def test_vagrant_libvirt_still_fails_on_a_proxy_command_with_a_port_in_the_uri(tmp_path):
    """Why devbox.yml refuses a port in a pinned hypervisor URI. When this test fails, vagrant-libvirt was fixed:
    lift the restriction in config/hypervisors.py."""
    (tmp_path / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "devbox/debian12"\n'
        '  config.vm.provider :libvirt do |libvirt|\n'
        "    libvirt.uri = 'qemu+libssh://root@hv1:2222/system?keyfile=/k'\n"
        "    libvirt.proxy_command = 'ssh hv1 -p 2222 -W %h:%p'\n  end\nend\n")
    import subprocess
    result = subprocess.run(["vagrant", "validate"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "VAGRANT_DEFAULT_PROVIDER": "libvirt"})
    assert result.returncode != 0 and "finalize_proxy_command" in result.stderr


# --- the command line ---------------------------------------------------------------------------------------

def _project(tmp_path, web_count=3, hv2_memory=2048):
    (tmp_path / "inv").mkdir(exist_ok=True)
    shutil.copy(WEBAPP, tmp_path / "inv" / "hosts.ini")
    import yaml
    (tmp_path / "devbox.yml").write_text(yaml.safe_dump({
        "inventory": "inv/hosts.ini", "groups": {"web": {"count": web_count}},
        "hypervisors": [HV1, {**HV2, "memory_mb": hv2_memory}]}))
    return tmp_path


def _cli(*args):
    from click.testing import CliRunner
    from provisioner.cli.main import main
    return CliRunner().invoke(main, [str(a) for a in args])


def test_plan_json_and_table_show_each_vms_hypervisor(tmp_path, monkeypatch):
    import json
    project = _project(tmp_path)
    data = json.loads(_cli("-C", project, "plan", "--json").stdout)
    assert {m["hypervisor"] for m in data["machines"]} == {"hv1", "hv2"}
    assert [h["name"] for h in data["hypervisors"]] == ["hv1", "hv2"]
    assert sum(h["used_memory"] for h in data["hypervisors"]) == sum(m["memory"] for m in data["machines"])
    monkeypatch.setenv("COLUMNS", "250")
    table = _cli("-C", project, "plan").stdout
    assert "hypervisor" in table and "2 hypervisors" in table and "10.231." in table


def test_plan_refuses_a_topology_that_does_not_fit_with_the_numbers(tmp_path):
    from helpers import assert_handled
    project = _project(tmp_path, hv2_memory=512)
    (project / "devbox.yml").write_text((project / "devbox.yml").read_text().replace("memory_mb: 2048", "memory_mb: 1024"))
    result = _cli("-C", project, "plan")
    assert_handled(result, 1)
    assert "the 7 VMs need 3584 MiB together; the hypervisors give 1536 MiB" in result.output


def test_init_then_a_bigger_plan_keeps_every_placed_vm_where_it_was(tmp_path, monkeypatch):
    import json
    monkeypatch.setenv("PATH", str(Path(__import__("sys").executable).parent))   # no vagrant: render unvalidated
    project = _project(tmp_path)
    assert _cli("-C", project, "init").exit_code == 0
    placed = {m["name"]: (m["hypervisor"], m["address"])
              for m in json.loads((project / ".devbox" / "plan.json").read_text())["machines"]}
    (project / "devbox.yml").write_text((project / "devbox.yml").read_text().replace("count: 3", "count: 4"))
    after = {m["name"]: (m["hypervisor"], m["address"]) for m in json.loads(_cli("-C", project, "plan", "--json").stdout)["machines"]}
    assert set(after) - set(placed) == {"web-4"} and {n: after[n] for n in placed} == placed


def test_up_refuses_vms_spread_over_hypervisors_before_booting_anything(tmp_path, monkeypatch):
    """Until devbox reaches VMs through their hypervisor, `up` must not boot VMs it could not reach."""
    from helpers import assert_handled
    monkeypatch.setenv("PATH", str(Path(__import__("sys").executable).parent))   # no vagrant: nothing can boot
    project = _project(tmp_path)
    result = _cli("-C", project, "up")
    assert_handled(result, 1)
    assert "cannot run VMs spread over hypervisors yet" in result.output
    assert "remove `hypervisors` from devbox.yml" in result.output
    assert not (project / ".devbox" / "plan.json").exists()   # refused before rendering anything
