"""Parity on real VMs: a development VM against a "staging" VM at a fixed lab address, both provisioned from
the same playbooks (tests/data/parity/e2e). No drift; then a package installed and a service stopped by hand on
the staging VM are named with the host and both values; the HTML report says the same."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from provisioner.environments.model import TargetHost
from provisioner.adapters.playbook_runner import ansible_env
from provisioner.environments.trust import record, scan_host

pytestmark = pytest.mark.lab

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "parity" / "e2e"
STAGING_IP = "192.168.56.200"  # outside the addresses devbox gives VMs (.11 upwards), on the same lab network


def _staging_inventory(key_file: str, proxy: str) -> dict:
    return {"all": {"children": {"staging": {"children": {"web": {"hosts": {"web-s1": {
        "ansible_host": STAGING_IP, "ansible_user": "vagrant", "ansible_ssh_private_key_file": key_file}}}}}},
        "vars": {"apt_proxy": proxy}}}


def test_parity_against_a_staging_vm_names_hand_made_changes(devbox_project, vagrant_project, lab_env, timings):
    project = devbox_project
    for name in ("devbox.yml", "inventories", "playbooks"):
        project.copy_in(FIXTURE / name)

    # one VM boots at a time: under software emulation two booting guests on a busy machine can exceed
    # Vagrant's boot timeout
    with timings.measure("devbox init + up (1 VM)"):
        project.devbox("init")
        project.devbox("up")
    vagrant_project.define_reference_vm("web-s1", STAGING_IP)
    with timings.measure("vagrant up (staging VM)"):
        vagrant_project.vagrant("up", "--no-provision")

    ssh_config = vagrant_project.vagrant("ssh-config").stdout
    key_file = re.search(r"IdentityFile\s+(\S+)", ssh_config).group(1).strip('"')
    staging_dir = project.path / "inventories" / "staging"
    staging_dir.mkdir()
    (staging_dir / "hosts.yml").write_text(yaml.safe_dump(_staging_inventory(key_file, lab_env["DEVBOX_APT_PROXY"])))

    # pin the staging host key the way `devbox trust --env staging` does, then provision staging from the
    # same playbooks with strict host-key checking against that file only
    known_hosts = project.path / "environments" / "staging.known_hosts"
    check = scan_host(TargetHost("web-s1", STAGING_IP), known_hosts)
    assert check.offered, check.detail
    record(known_hosts, check)
    with timings.measure("provision staging with ansible-playbook"):
        run = subprocess.run(["ansible-playbook", "-i", str(staging_dir), str(project.path / "playbooks" / "site.yml")],
                             cwd=project.path, capture_output=True, text=True, timeout=900,
                             env={**os.environ, **ansible_env(known_hosts=known_hosts, log_path=project.path / "staging-ansible.log",
                                                        strict_host_keys=True)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]

    with timings.measure("parity: no drift"):
        same = project.devbox("parity", "--against", "staging", "--yes", "--json", check=False)
    assert same.returncode == 0, same.stdout[-4000:] + same.stderr[-3000:]
    doc = json.loads(same.stdout)
    assert doc["ok"], json.dumps(doc, indent=1)[:4000]
    assert doc["pairs"] == [{"machine": "web-1", "references": ["web-s1"], "paired_by": "groups"}]
    assert doc["drift"] == []

    # by hand on staging: stop the service, install a package the playbooks install only on cache hosts
    vagrant_project.ssh("web-s1", "sudo systemctl stop cron && sudo DEBIAN_FRONTEND=noninteractive "
                                  "apt-get install -y --no-install-recommends tree")
    tree_version = vagrant_project.ssh("web-s1", "dpkg-query -W -f='${Version}' tree").stdout.strip()

    report_file = project.path / "parity.html"
    with timings.measure("parity: drift"):
        drifted = project.devbox("parity", "--against", "staging", "--yes", "--json", "--html", str(report_file),
                                 check=False)
    assert drifted.returncode == 1 and drifted.stdout.startswith("{"), drifted.stdout[-3000:] + drifted.stderr[-3000:]
    drift = {d["fact"]: d for d in json.loads(drifted.stdout)["drift"]}
    assert set(drift) == {"package:tree", "service:cron"}, drift
    assert all(d["machine"] == "web-1" and d["reference_host"] == "web-s1" for d in drift.values())
    assert (drift["package:tree"]["development"], drift["package:tree"]["reference"]) == ("absent", tree_version)
    assert drift["service:cron"]["development"] == "running, enabled"
    assert "running" not in drift["service:cron"]["reference"]
    page = report_file.read_text()
    assert "web-s1" in page and "package:tree" in page and tree_version in page and "service:cron" in page

    table = project.devbox("parity", "--against", "staging", "--yes", check=False)
    assert table.returncode == 1 and "package:tree" in table.stdout and "web-s1" in table.stdout
