"""The foundation everything else stands on: the devbox base box boots in the lab, two VMs reach each other
on a private network, and guests reach the package mirror only through the lab's proxy."""
from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.lab

ADDRESSES = {"alpha": "192.168.56.21", "beta": "192.168.56.22"}

# Fetch the Release file of the guest's first apt source (the mirror the box was built from) with Python's
# urllib, optionally through a proxy: the same request must fail direct and work through the proxy.
FETCH_MIRROR = r"""python3 - <<'EOF'
import re, sys, urllib.request
uri, suite = re.search(r"^deb\s+(\S+)\s+(\S+)", open("/etc/apt/sources.list").read(), re.M).groups()
url = f"{uri.rstrip('/')}/dists/{suite}/Release"
proxy = sys.argv[1] if len(sys.argv) > 1 else ""
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
try:
    print(url, opener.open(url, timeout=8).status)
except Exception as exc:
    print(url, "failed:", exc)
    sys.exit(3)
EOF"""


def test_two_vms_boot_talk_privately_and_use_only_the_package_proxy(vagrant_project, lab_env, timings):
    proxy = lab_env["DEVBOX_APT_PROXY"]
    vagrant_project.define_vms(ADDRESSES, memory=512)

    with timings.measure("vagrant up --parallel (2 VMs)"):
        vagrant_project.vagrant("up", "--parallel", "--no-provision")

    status = vagrant_project.vagrant("status", "--machine-readable").stdout
    for name in ADDRESSES:
        assert f",{name},state,running" in status, status

    with timings.measure("ssh + private network checks"):
        for name, ip in ADDRESSES.items():
            addresses = vagrant_project.ssh(name, "ip -4 -o addr show").stdout
            assert f"inet {ip}/" in addresses, f"{name} lacks its private address {ip}:\n{addresses}"
            hostname = vagrant_project.ssh(name, "hostname").stdout.strip()
            assert hostname == name
            # every VM made from the image has its own machine-id (DHCP leases depend on it)
        ids = {vagrant_project.ssh(n, "cat /etc/machine-id").stdout.strip() for n in ADDRESSES}
        assert len(ids) == len(ADDRESSES) and "" not in ids, ids
        for name, other in (("alpha", "beta"), ("beta", "alpha")):
            # no ping in a minimal image: open the other VM's SSH port over the private network
            banner = vagrant_project.ssh(
                name, f"timeout 10 bash -c 'exec 3<>/dev/tcp/{ADDRESSES[other]}/22; head -c 4 <&3'").stdout
            assert banner == "SSH-", f"{name} cannot reach {other} at {ADDRESSES[other]}: {banner!r}"

    with timings.measure("apt-get update through the proxy"):
        # (parsing the package indexes under software emulation takes a while: one VM is enough)
        update = vagrant_project.ssh(
            "alpha", f"sudo apt-get -o Acquire::http::Proxy={proxy} -o Acquire::Languages=none update", check=False)
        assert update.returncode == 0, update.stdout + update.stderr
        assert "Err:" not in update.stdout and "Failed to fetch" not in update.stderr, update.stdout + update.stderr
        policy = vagrant_project.ssh("alpha", "apt-cache policy openssh-server").stdout
        assert "Candidate:" in policy and "(none)" not in policy, policy

    with timings.measure("mirror reachable only through the proxy"):
        through_proxy = vagrant_project.ssh("beta", FETCH_MIRROR.replace("python3 -", f"python3 - {proxy}"),
                                            check=False)
        assert through_proxy.returncode == 0, through_proxy.stdout + through_proxy.stderr
        direct = vagrant_project.ssh("beta", FETCH_MIRROR, check=False)
        assert direct.returncode == 3, f"a direct fetch from the guest must fail:\n{direct.stdout}{direct.stderr}"

    with timings.measure("vagrant destroy -f (2 VMs)"):
        vagrant_project.vagrant("destroy", "-f")
    domains = subprocess.run(["virsh", "-q", "list", "--all", "--name"], capture_output=True, text=True,
                             env={**os.environ, "LIBVIRT_DEFAULT_URI": "qemu:///system"})
    assert domains.returncode == 0 and domains.stdout.split() == [], domains.stdout + domains.stderr
