"""What devbox does with the variables of the vendored public inventories (tests/data/inventories/real/): their
playbook-side group_vars are read, their environment groups hold no VM, and no production address or host-level
production value reaches a file `devbox init` writes."""
from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import assert_handled
from provisioner.app import Devbox
from provisioner.cli import main
from provisioner.config.schema import parse_config
from provisioner.plan.hostvars import HostVariables
from provisioner.plan.inventory import load_inventory
from provisioner.plan.topology import derive_topology

REAL = Path(__file__).resolve().parents[1] / "data" / "inventories" / "real"
PLANNABLE = sorted(p.name for p in REAL.iterdir() if (p / "SOURCE.yml").is_file() and p.name != "kubespray-sample")
VENV_BIN = str(Path(sys.executable).parent)


def source(name: str) -> dict:
    return yaml.safe_load((REAL / name / "SOURCE.yml").read_text())


def project_for(name: str, tmp_path: Path, extra: str = "") -> Path:
    """A project whose devbox.yml names the vendored inventory and, where the project keeps one, the playbook
    folder (its site.yml need not exist: Ansible and devbox take the folder's group_vars/host_vars)."""
    data = source(name)
    project = tmp_path / "project"
    project.mkdir()
    lines = [f"inventory: {REAL / name / data['inventory']}"]
    if data.get("playbook_dir"):
        lines.append(f"playbook: {REAL / name / data['playbook_dir'] / 'site.yml'}")
    (project / "devbox.yml").write_text("\n".join(lines) + "\n" + extra)
    return project


def cli(project: Path, *args: str):
    result = CliRunner().invoke(main, ["-C", str(project), *args], obj=Devbox(project_dir=project))
    assert_handled(result, 0)
    return result


def production_values(name: str) -> set[str]:
    """Addresses of production hosts (IP-named hosts, ansible_host) and every host-level value that is an address."""
    data = source(name)
    inventory = load_inventory(REAL / name / data["inventory"])
    playbook_dir = REAL / name / data["playbook_dir"] if data.get("playbook_dir") else None
    variables = HostVariables(inventory, playbook_dir)
    found = set()
    for host in inventory.hosts.values():
        resolved = variables.resolve(host)
        address = resolved.vars.get("ansible_host")
        if isinstance(address, str) and "{{" not in address:
            found.add(address)
        found.update(v for v in (host.name, *resolved.host_level.values()) if isinstance(v, str) and is_address(v))
    return found


def is_address(text: str) -> bool:
    """An IP address that identifies a machine (a netmask or loopback address identifies nothing)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_reserved or address.is_link_local or address.is_unspecified)


@pytest.mark.parametrize("name", PLANNABLE)
def test_init_writes_no_production_address(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", VENV_BIN)   # no vagrant: the render is what is checked here
    project = project_for(name, tmp_path)
    cli(project, "init")
    values = production_values(name)
    written = {p: p.read_text(encoding="utf-8") for p in project.rglob("*") if p.is_file() and p.name != "lock"}
    assert len(written) >= 4
    leaks = {(p.relative_to(project).as_posix(), v) for p, text in written.items() for v in values if v in text}
    assert not leaks


def test_inventories_with_addresses_to_protect_are_in_the_corpus():
    # the test above must be able to fail: two of the vendored inventories carry production addresses
    assert "188.166.58.24" in production_values("trellis-wordpress")
    assert {"192.168.1.10", "192.168.1.12"} <= production_values("ceph-ansible-all-daemons")


def test_trellis_playbook_side_group_vars_and_its_environment_group(tmp_path):
    project = project_for("trellis-wordpress", tmp_path)
    plan = json.loads(cli(project, "plan", "--json").stdout)
    assert [(m["name"], m["groups"]) for m in plan["machines"]] == [("web-1", ["web"])]   # not in `production`
    warnings = "\n".join(plan["warnings"])
    assert "join no environment group (production)" in warnings
    # group_vars/all/vault.yml beside the playbook is encrypted as a whole: devbox says it cannot see inside
    assert "group_vars/all/vault.yml (beside the playbook)" in warnings
    cli(project, "init")
    hosts = yaml.safe_load((project / ".devbox" / "inventory" / "hosts.yml").read_text())
    assert set(hosts["all"]["children"]) == {"web"}
    assert "stands for: address-named-host-1" in (project / "Vagrantfile").read_text()


def test_trellis_staging_and_production_plan_alike(tmp_path):
    """The same stack's staging inventory gives the same VM: the environment group is what differs."""
    data = source("trellis-wordpress")
    plans = []
    for index, inventory in enumerate(("repo/hosts/production", "repo/hosts/staging")):
        project = tmp_path / f"p{index}"
        project.mkdir()
        (project / "devbox.yml").write_text(f"inventory: {REAL / 'trellis-wordpress' / inventory}\n"
                                            f"playbook: {REAL / 'trellis-wordpress' / data['playbook_dir']}/site.yml\n")
        plans.append([(m["name"], m["groups"]) for m in json.loads(cli(project, "plan", "--json").stdout)["machines"]])
    assert plans[0] == plans[1] == [("web-1", ["web"])]


def test_kolla_control_node_excluded_and_includable(tmp_path):
    project = project_for("kolla-ansible-multinode", tmp_path)
    plan = json.loads(cli(project, "plan", "--json").stdout)
    assert [e["host"] for e in plan["excluded"]] == ["localhost"]
    assert "`include_hosts:`" in plan["excluded"][0]["reason"]
    (tmp_path / "again").mkdir()
    project = project_for("kolla-ansible-multinode", tmp_path / "again", "include_hosts: [localhost]\n")
    plan = json.loads(cli(project, "plan", "--json").stdout)
    assert plan["excluded"] == [] and any("localhost" in m["represents"] for m in plan["machines"])


def test_ceph_host_values_named_not_copied(tmp_path):
    inventory = load_inventory(REAL / "ceph-ansible-all-daemons" / "hosts")
    topology = derive_topology(inventory, parse_config({}, None))
    mons = topology.machine("mons-1")
    assert mons.represents == ("mon1", "mon2") and mons.host_vars == {}
    assert any(w.startswith("mons-1 stands for 2 hosts (mon1, mon2) whose variables differ: monitor_address, "
                            "monitor_interface (values not shown)") for w in topology.warnings)
    assert not any("192.168.1." in w for w in topology.warnings)
