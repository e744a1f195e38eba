"""Public production inventories vendored with their provenance (tests/data/inventories/real/): each is recorded
(repository, commit, licence), devbox plans it (or refuses it with a message) as Ansible's parser reads it, and
nothing devbox writes for it carries a production address."""
from __future__ import annotations

import ipaddress
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import assert_handled
from provisioner.app import Devbox
from provisioner.cli import main
from provisioner.plan import topology
from provisioner.plan.hostvars import HostVariables
from provisioner.plan.inventory import load_inventory

REAL = Path(__file__).resolve().parents[1] / "data" / "inventories" / "real"
CORPUS = sorted(p.name for p in REAL.iterdir() if (p / "SOURCE.yml").is_file())
VENV_BIN = str(Path(sys.executable).parent)


@dataclass(frozen=True)
class Outcome:
    """What `devbox plan --json` does with an inventory today: exit code, VM count, excluded hosts (host: a part of
    the reason) and its warnings (a part of each, in order)."""
    code: int
    vms: int | None = None
    excluded: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


INVALID_GROUP_NAMES = "Invalid characters were found in group names but not replaced: "
INCLUDE = "list it under `include_hosts:` in devbox.yml to give it a VM anyway"
LOCAL = "ansible_connection=local: it runs on the control node, so it needs no VM; " + INCLUDE
WINRM = "ansible_connection=winrm (set in group_vars/windows.yml (beside the inventory)): a Windows host"
WINDOWS_HOSTS = ([f"192.168.2.{n}" for n in (50, 51, 52, 53, 54, 55, 56, 57, 60, 61, 62, 63, 64, 65, 66, 67, 70, 71)]
                 + ["192.168.8.19"] + [f"192.168.200.{n}" for n in (2, 5, 6, 7, 8, 9)])
TOO_BIG = "too big for this machine (16384 MiB of memory, less room for the host): the plan needs "
PROPOSED = "is excluded by the rules `devbox init` proposes"   # plan without devbox.yml applies init's rules
FEDORA_STAGING = {   # defect 7: the *_stg copies of builder groups are proposed for exclusion
    **{f"buildvm-{kind}-0{n}.stg.iad2.fedoraproject.org": "group builders_iad2_stg " + PROPOSED
       for kind, count in (("x86", 5), ("a64", 2), ("ppc64le", 5)) for n in range(1, count + 1)},
    "buildvm-s390x-01.stg.s390.fedoraproject.org": "group builders_stg " + PROPOSED,
    "bvmhost-a64-01.stg.iad2.fedoraproject.org": "group buildvmhost_stg_iad2 " + PROPOSED,
    "bvmhost-p09-01.stg.iad2.fedoraproject.org": "group buildvmhost_stg_iad2 " + PROPOSED}


def differing(names: str) -> str:
    return f"whose variables differ: {names} (values not shown)"


# Pinned as devbox plans them without a devbox.yml, so with the rules `devbox init` proposes (issue #15, defect 4).
# The fixes these pins show: exclusion by a group's connection type (ffweingarten's 25 Windows hosts), differences
# named wherever they live (host_vars files: archlinux, fedora, usegalaxy-au), environment groups hold no VM
# (trellis' production), another environment's copies of role groups and bastions excluded by the proposed rules
# (fedora's *_stg, the bastions), each exclusion said once, and the too-big warning with rules that fit (pinned
# against a 16 GiB workstation).
HOST_LEVEL = "host-level variables not copied to the VMs (production values stay in production): "
EXPECTED = {
    "archlinux-infrastructure": Outcome(0, 24, warnings=(
        "archive-mirrors-1 stands for 3 hosts",
        "borg-clients-mysql-servers-nginx-node-exporters-1 stands for 2 hosts (bbs.archlinux.org, bugs.archlinux.org) "
        + differing("fail2ban_jails, filesystem, mysql_backup_defaults, mysql_backup_dir, zabbix_agent_templates"), HOST_LEVEL)),
    "ceph-ansible-all-daemons": Outcome(0, 10, warnings=(
        INVALID_GROUP_NAMES + "grafana-server",
        "mons-1 stands for 2 hosts (mon1, mon2) " + differing("monitor_address, monitor_interface"),
        "osds-1 stands for 2 hosts (osd0, osd1) " + differing("osd_crush_location"), HOST_LEVEL)),
    "fedora-builders": Outcome(0, 16, FEDORA_STAGING, warnings=(  # the *_stg copies excluded by the proposed rules
        "buildvm-buildvm-iad2-runroot-1 stands for 3 hosts",
        "buildvm-buildvm-iad2-1 stands for 29 hosts",
        "buildvm-aarch64-buildvm-aarch64-iad2-runroot-1 stands for 3 hosts",
        "buildvm-aarch64-buildvm-aarch64-iad2-1 stands for 37 hosts",
        "buildvm-s390x-1 stands for 17 hosts",
        "buildvm-s390x-runroot-1 stands for 3 hosts",
        "bvmhost-s390x-1 stands for 2 hosts",
        "buildvmhost-buildvmhost-iad2-1 stands for 9 hosts",
        "buildhw-buildhw-iad2-1 stands for 4 hosts",
        "buildhw-buildhw-iad2-osbuild-1 stands for 16 hosts",
        "buildvm-ppc64le-buildvm-ppc64le-iad2-runroot-1 stands for 5 hosts",
        "buildvm-ppc64le-buildvm-ppc64le-iad2-1 stands for 28 hosts",
        "bkernel-1 stands for 2 hosts",
        "buildvm-x86-riscv-1 stands for 2 hosts", HOST_LEVEL)),
    "ffweingarten-landscape": Outcome(0, 8, {"jump.prod.ff-weingarten.de": "group jump " + PROPOSED,
                                             **{h: WINRM for h in WINDOWS_HOSTS}}, warnings=(HOST_LEVEL,)),   # each said once, not warned

    "galaxyproject-infrastructure": Outcome(0, 25, warnings=(
        "smartosglobalzones-1 stands for 7 hosts (smart1.galaxyproject.org, smart2.galaxyproject.org, "
        "smart3.galaxyproject.org, thumper.p.galaxyproject.org, westvleteren.p.galaxyproject.org and 2 more) "
        + differing("ansible_python_interpreter"),
        HOST_LEVEL, TOO_BIG + "25 VMs and 12800 MiB of memory, more than 12288 MiB",
        "to fit: `defaults: {memory: 384}` gives 25 VMs, 9600 MiB")),
    "kolla-ansible-all-in-one": Outcome(0, 0, {"localhost": LOCAL}, (
        INVALID_GROUP_NAMES, "no VMs: every host is excluded")),   # the exclusion is said once, not warned
    "kolla-ansible-multinode": Outcome(0, 7, {"localhost": LOCAL}, (   # init's rules: three VMs for etcd
        INVALID_GROUP_NAMES,)),
    "kubespray-sample": Outcome(1),              # `:children` of undefined groups: Ansible's ini parser rejects it
    "otc-system-config": Outcome(0, 1, warnings=(
        "hosts in no group (only plays for `all` reach them): scheduler1.apimon.eco.tsi-dev.otc-service.com",
        "ungrouped-1 stands for 18 hosts (scheduler1.apimon.eco.tsi-dev.otc-service.com", HOST_LEVEL)),
    "proseo-brain": Outcome(0, 1),               # defect 9: the ProxyCommand bastion is not recognised as a jump host
    "proseo-hands": Outcome(0, 2, {"bastion-control": "group bastion " + PROPOSED}, warnings=(
        "kube-node-1 stands for 10 hosts (worker1, worker2, worker3, worker4, worker5 and 5 more) " + differing("ip"), HOST_LEVEL,)),
    "rust-simpleinfra-prod": Outcome(0, 6, {"bastion.infra.rust-lang.org": "group bastion " + PROPOSED}, warnings=(
        INVALID_GROUP_NAMES + "dev-desktop, crater-server",
        "crater-1 stands for 2 hosts (crater-azure-1.infra.rust-lang.org, crater-azure-2.infra.rust-lang.org) "
        + differing("ssm_crater_azure_1, vars_crater_threads, vars_crater_token"), HOST_LEVEL)),
    "trellis-wordpress": Outcome(0, 1, warnings=("the VMs join no environment group (production)",)),
    "usegalaxy-au": Outcome(0, 52, warnings=(    # staging_* groups with no role group to copy still get VMs
        INVALID_GROUP_NAMES + "GPU-pulsars",
        "nfs-servers-pawsey-group-1 stands for 3 hosts (pawsey-user-nfs, pawsey-misc-nfs, pawsey-job-nfs) "
        + differing("internal_ip"),
        "nfs-servers-1 stands for 4 hosts",
        "pawsey-workers-1 stands for 8 hosts",
        "aarnet-workers-1 stands for 8 hosts",
        "pulsar-paw-workers-1 stands for 5 hosts",
        "pulsar-nci-test-workers-1 stands for 2 hosts",
        # three hosts, each with its own host_vars file: named now, whatever file the difference is in
        "pulsar-qld-himems-1 stands for 3 hosts (qld-pulsar-himem-0, qld-pulsar-himem-1, qld-pulsar-himem-2) "
        "whose variables differ: cvmfs_quota_limit, extra_keys, head_nodes,",
        "pulsar-nci-training-workers-1 stands for 11 hosts",
        "cvmfslocalproxies-1 stands for 2 hosts",
        HOST_LEVEL, TOO_BIG + "52 VMs and 26624 MiB of memory, more than 12288 MiB",   # said, with rules that fit
        "to fit: `defaults: {memory: 384}` gives 52 VMs, 19968 MiB",
        "to fit: `exclude: true` for the groups that make the most VMs (pawsey_group, rabbitservers,")),
    "usegalaxy-eu": Outcome(0, 25, warnings=(
        INVALID_GROUP_NAMES + "build-workers, cvmfs-stratum0, htcondor-manager, htcondor-submit",
        "celerycluster-1 stands for 8 hosts",
        HOST_LEVEL, TOO_BIG + "25 VMs and 12800 MiB of memory, more than 12288 MiB",
        "to fit: `defaults: {memory: 384}` gives 25 VMs, 9600 MiB")),
}


@pytest.fixture(autouse=True)
def workstation_of_16_gib(tmp_path_factory, monkeypatch):
    """The too-big warning depends on the machine's memory: pin it (a 16 GiB workstation, 12 GiB for VMs)."""
    from provisioner.plan import planning
    meminfo = tmp_path_factory.mktemp("proc") / "meminfo"
    meminfo.write_text("MemTotal:       16777216 kB\n")
    monkeypatch.setattr(planning, "MEMINFO", meminfo)


def source(name: str) -> dict:
    return yaml.safe_load((REAL / name / "SOURCE.yml").read_text())


def vendored_files(name: str) -> list[Path]:
    """The files copied from the source repository (everything in the folder but SOURCE.yml)."""
    return sorted(p for p in (REAL / name).rglob("*") if p.is_file() and p.name != "SOURCE.yml")


def test_every_vendored_inventory_has_an_expectation():
    assert sorted(EXPECTED) == CORPUS
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("name", CORPUS)
def test_provenance_is_recorded(name):
    data = source(name)
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", data["repository"])
    assert data["url"] == f"https://github.com/{data['repository']}"
    assert re.fullmatch(r"[0-9a-f]{40}", data["commit"])
    assert data["licence"] and data["licence_file"]
    assert all(re.fullmatch(r"[0-9a-f]{40}", p["commit"]) for p in data["paths"])
    assert (REAL / name / data["inventory"]).exists()
    # every vendored file has its source path and commit recorded, and every recorded file is there
    copied = sorted(REAL / name / p["copied_to"] for p in data["paths"])
    assert copied == vendored_files(name)
    assert {"shape", "hosts", "hosts_distinct", "groups", "warnings", "needs"} <= set(data)


@pytest.mark.parametrize("name", CORPUS)
def test_devbox_plans_it_or_says_why_not(name, tmp_path):
    expected = EXPECTED[name]
    project = tmp_path / "project"
    project.mkdir()
    inventory = REAL / name / source(name)["inventory"]
    result = CliRunner().invoke(main, ["-C", str(project), "plan", "--inventory", str(inventory), "--json"],
                                obj=Devbox(project_dir=project))
    assert_handled(result, expected.code)
    if expected.code == 0:
        plan = json.loads(result.stdout)
        assert len(plan["machines"]) == expected.vms
        excluded = {e["host"]: e["reason"] for e in plan["excluded"]}
        assert excluded.keys() == expected.excluded.keys()
        assert all(part in excluded[host] for host, part in expected.excluded.items())
        assert len(plan["warnings"]) == len(expected.warnings), plan["warnings"]
        assert all(part in warning for part, warning in zip(expected.warnings, plan["warnings"])), plan["warnings"]
        represented = [h for m in plan["machines"] for h in m["represents"]] + list(excluded)
        assert len(represented) == len(set(represented)) == source(name)["hosts_distinct"]
    else:
        assert str(inventory) in result.output and "hint:" in result.output
    assert list(project.iterdir()) == []   # plan writes nothing


# --- no production address in anything devbox writes ----------------------------------------------------------

IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
ANSIBLE_HOST = re.compile(r"\bansible_(?:ssh_)?host\s*[=:]\s*[\"']?([^\s\"'#]+)")


def _address(text: str) -> str | None:
    """``text`` if it is an IP address that can identify a machine: not loopback, unspecified, link-local,
    multicast or reserved (a netmask such as 255.255.255.0 is in the reserved range)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_link_local or address.is_multicast \
            or address.is_reserved:
        return None
    return text


def production_addresses(name: str) -> set[str]:
    """Every IPv4/IPv6 address and every ansible_host value in the vendored inventory, group_vars and host_vars
    files (comments included: they are production's too)."""
    found = set()
    for path in vendored_files(name):
        text = path.read_text(errors="replace")
        for match in IPV4.findall(text) + IPV6.findall(text):
            if _address(match):
                found.add(match)
        for value in ANSIBLE_HOST.findall(text):
            if value not in ("localhost", "127.0.0.1", "::1") and "{{" not in value:
                found.add(value)
    return found


def test_the_address_scan_finds_what_it_must():
    """The scanner itself, on files of the corpus: inline INI, YAML host vars, IPv6 in host_vars, names."""
    assert {"45.113.232.252", "192.168.199.24", "115.146.87.37"} <= production_addresses("usegalaxy-au")
    assert {"138.201.81.199", "2a01:4f8:172:1d86::1"} <= production_addresses("archlinux-infrastructure")
    assert "fe80::1" not in production_addresses("archlinux-infrastructure")   # link-local: nobody's identity
    assert {"85.215.220.164", "10.8.212.25"} <= production_addresses("proseo-hands")
    assert "192.168.2.50" in production_addresses("ffweingarten-landscape")   # a host named by its address
    assert "127.0.0.1" not in production_addresses("usegalaxy-eu")
    assert "10.3.169.51" in production_addresses("fedora-builders")
    assert "255.255.255.0" not in production_addresses("fedora-builders")   # a netmask
    assert mentions("src: 115.146.87.37:/galaxy-backup-au", "115.146.87.37")
    assert not mentions("ansible_host: 10.0.0.20", "10.0.0.2") and not mentions("10.0.0.2.5", "10.0.0.2")
    assert mentions("- 2a01:4f8:172:1d86::1/128", "2a01:4f8:172:1d86::1")
    assert not mentions("2a01:4f8:172:1d86::10", "2a01:4f8:172:1d86::1")


@pytest.mark.parametrize("name", CORPUS)
def test_no_production_address_written(name, tmp_path, monkeypatch):
    """`devbox plan` then `devbox init` (the real CLI, no Vagrant on PATH) on a copy of the inventory with its
    group_vars/host_vars: no address of production and no ansible_host value appears in any file devbox wrote."""
    monkeypatch.setenv("PATH", VENV_BIN)
    copy = tmp_path / "production"
    shutil.copytree(REAL / name, copy)
    (copy / "SOURCE.yml").unlink()
    project = tmp_path / "project"
    project.mkdir()
    inventory = copy / source(name)["inventory"]
    addresses = production_addresses(name)
    if EXPECTED[name].code == 0:   # and what devbox itself knows of production's addresses (vars files included)
        inv = load_inventory(inventory)
        devbox_found = {str(a) for a in topology.production_addresses(inv, HostVariables(inv))}
        assert devbox_found <= addresses, f"devbox finds addresses the scan of the files misses: {devbox_found - addresses}"
        addresses |= devbox_found
    for command in ("plan", "init"):
        result = CliRunner().invoke(main, ["-C", str(project), command, "--inventory", str(inventory)])
        assert_handled(result, EXPECTED[name].code)
    written = {p.relative_to(project).as_posix(): p.read_text(errors="replace")
               for p in sorted(project.rglob("*")) if p.is_file() and p.name != "lock"}
    if EXPECTED[name].code == 0:
        assert {"Vagrantfile", "devbox.yml", ".devbox/plan.json", ".devbox/inventory/hosts.yml"} <= set(written)
    leaks = sorted(f"{address} in {path}" for path, text in written.items() for address in addresses
                   if mentions(text, address))
    assert leaks == []


def mentions(text: str, address: str) -> bool:
    """``address`` appears in ``text`` as itself (10.0.0.2 is not in 10.0.0.20; 10.0.0.2:22 does mention it)."""
    if ":" in address:      # IPv6
        pattern = rf"(?<![\w:]){re.escape(address)}(?![\w:])"
    elif _address(address):  # IPv4
        pattern = rf"(?<![\w.]){re.escape(address)}(?!\d|\.\d)"
    else:                   # a name given as ansible_host
        pattern = rf"(?<![\w.-]){re.escape(address)}(?![\w-]|\.\w)"
    return re.search(pattern, text) is not None
