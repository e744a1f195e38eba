"""The hypervisor lab without VMs: two hypervisor namespaces (libvirtd, virtlogd, sshd) and a control one,
routed; from the control side libvirt answers over qemu+ssh with pinned host keys, a routed libvirt network is
defined and started on each hypervisor, and a wrong host key is refused. Run as root (it makes namespaces):

    sudo nice -n 19 .venv/bin/pytest -m lab tests/e2e/test_hypervisors_lab.py
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from provisioner.adapters.hypervisor_probe import RealHypervisorProbe
from provisioner.config.schema import parse_config
from provisioner.lab.hypervisors import HypervisorLab
from provisioner.machines import doctor
from provisioner.plan.placement import HypervisorUse

pytestmark = pytest.mark.lab


def routed_network_xml(use: HypervisorUse) -> str:
    net = ipaddress.IPv4Network(use.subnet)
    return (f"<network><name>{use.network_name}</name><forward mode='route'/>"
            f"<bridge name='virbr-{use.name[-6:]}' stp='on' delay='0'/>"
            f"<ip address='{net.network_address + 1}' netmask='{net.netmask}'/></network>")


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def hypervisor_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the hypervisor lab makes network namespaces: run it as root", pytrace=False)
    prefix = f"dbxhv{uuid.uuid4().hex[:4]}"
    root = Path("/var/lib/devbox/hypervisor-labs") / prefix   # qemu-readable, outside /root and /tmp
    lab = HypervisorLab(prefix, root, progress=lambda s, m: print(f"[{s}] {m}", flush=True))
    try:
        yield lab, lab.up()
    finally:
        lab.down()
        assert not any(Path("/run/netns", n).exists() for n in (lab.control, *(x.name for x in lab.nodes)))
        subprocess.run(["rm", "-rf", str(root)])


def test_libvirt_answers_over_ssh_with_pinned_keys_and_routed_networks_start(hypervisor_lab):
    lab, infos = hypervisor_lab
    assert len(infos) == 2
    for info in infos:
        # the control side routes the hypervisor's subnet through it
        route = run(["ip", "-n", lab.control, "route", "get", str(ipaddress.IPv4Network(info.subnet)[20])])
        assert f"via {info.address}" in route.stdout, route.stdout + route.stderr

        version = run(lab.in_control(["virsh", "-c", info.uri, "version"]))
        assert version.returncode == 0 and "Running hypervisor" in version.stdout, version.stdout + version.stderr

        use = HypervisorUse(name=info.name, uri=info.uri, subnet=info.subnet, memory=1024, cpus=1, used_memory=0,
                            machines=())
        xml = lab.root / f"{info.name}-net.xml"
        xml.write_text(routed_network_xml(use))
        for args in (["net-define", str(xml)], ["net-start", use.network_name]):
            result = run(lab.in_control(["virsh", "-c", info.uri, *args]))
            assert result.returncode == 0, result.stdout + result.stderr
        listed = run(lab.in_control(["virsh", "-c", info.uri, "net-list", "--name"]))
        assert use.network_name in listed.stdout.split()
        dumped = run(lab.in_control(["virsh", "-c", info.uri, "net-dumpxml", use.network_name])).stdout
        assert "<forward mode='route'" in dumped
        # the bridge holds the subnet's .1 inside the hypervisor's namespace only
        assert str(ipaddress.IPv4Network(info.subnet).network_address + 1) in \
            run(["ip", "-n", info.name, "-4", "addr"]).stdout
        assert str(ipaddress.IPv4Network(info.subnet).network_address + 1) not in run(["ip", "-4", "addr"]).stdout

    # from hypervisor 1's subnet (its bridge address, where a VM's traffic comes from) to hypervisor 2's: routed
    # through the control side, no NAT; nothing listens there, so "refused" (111) is the answer of hv2 itself
    gw1, gw2 = (str(ipaddress.IPv4Network(i.subnet).network_address + 1) for i in infos)
    probe = (f"import socket; s = socket.socket(); s.settimeout(10); s.bind(('{gw1}', 0)); "
             f"print(s.connect_ex(('{gw2}', 9)))")
    answer = run(["ip", "netns", "exec", infos[0].name, "python3", "-c", probe])
    assert answer.stdout.strip() == "111", answer.stdout + answer.stderr

    # a host key that is not the pinned one is refused
    wrong = lab.root / "wrong_known_hosts"
    other_key = (lab.root / "ssh" / f"{infos[1].name}_host_ed25519.pub").read_text().split()
    wrong.write_text(f"{infos[0].address} {other_key[0]} {other_key[1]}\n")
    bad_uri = infos[0].uri.replace(str(lab.known_hosts), str(wrong))
    refused = run(lab.in_control(["virsh", "-c", bad_uri, "version"]))
    assert refused.returncode != 0 and "host key" in refused.stderr.lower(), refused.stderr

    # libvirt's `ssh` transport (the ssh binary) ignores the URI's known_hosts: it checks ~/.ssh/known_hosts,
    # which knows nothing of the lab, so it fails closed; pinning a hypervisor's key in the URI needs `libssh`
    openssh_uri = infos[0].uri.replace("qemu+libssh://", "qemu+ssh://").replace("&sshauth=privkey", "")
    unpinned = run(lab.in_control(["virsh", "-c", openssh_uri, "version"]), env={**os.environ, "HOME": str(lab.root)})
    assert unpinned.returncode != 0 and "Host key verification failed" in unpinned.stderr, unpinned.stderr


def test_doctor_checks_the_real_hypervisors_and_names_the_missing_route(hypervisor_lab):
    lab, infos = hypervisor_lab
    config = parse_config({"hypervisors": [{"name": f"hv{i}", "uri": info.uri, "memory_mb": 1024, "cpus": 1,
                                            "subnet": info.subnet} for i, info in enumerate(infos, start=1)]},
                          Path("devbox.yml"))
    uses = tuple(HypervisorUse(f"hv{i}", info.uri, info.subnet, 1024, 1, 0, ()) for i, info in enumerate(infos, 1))
    probe = RealHypervisorProbe(enter=lab.in_control([]))   # doctor run from the control side
    checks = {c.name: c for c in doctor.hypervisor_checks(config.hypervisors, uses, probe)}
    assert {n: c.status for n, c in checks.items()} == {
        "hypervisor hv1": "ok", "hypervisor hv2": "ok", "route to hv1": "ok", "route to hv2": "ok"}, checks
    assert "Running hypervisor" in checks["hypervisor hv1"].detail

    run(["ip", "-n", lab.control, "route", "del", infos[1].subnet])
    checks = {c.name: c for c in doctor.hypervisor_checks(config.hypervisors, uses, probe)}
    assert checks["route to hv1"].status == "ok"
    assert checks["route to hv2"].status == "fail"
    assert f"ip route add {infos[1].subnet} via {infos[1].address}" in checks["route to hv2"].hint
