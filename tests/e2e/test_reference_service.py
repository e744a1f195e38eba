"""The shipped reference service through `devbox integration`, as CI runs it on every change.

This repository's own devbox.yml and playbooks/ (a copy, so the checkout's .devbox/ stays untouched): five VMs
derived from the production inventory (lb-1, web-1, db-primary, db-replica, cache-1), booted in parallel,
site.yml converged in one Ansible run, then devbox.yml's smoke check: GET /health through the load balancer,
from web-1, answers {"status": "ok", "db": true, "cache": true}, i.e. nginx -> gunicorn -> PostgreSQL (with its
streaming replica) and Redis all work. JUnit and JSON reports are written and every VM is destroyed.

It runs with --mitogen: with Ansible's default strategy this converge takes about 20 minutes on a 2-core machine
without KVM (one Python start-up per task per VM under emulation), with Mitogen about 11. The other scenarios of
this tier run Ansible's default strategy.
"""
from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

from helpers import copy_reference_project

pytestmark = pytest.mark.lab

SMOKE = "the service answers through the load balancer with database and cache up"
VMS = ("cache-1", "db-primary", "db-replica", "lb-1", "web-1")


def test_reference_service_converges_and_answers_through_the_load_balancer(devbox_project, timings):
    p = devbox_project
    copy_reference_project(p.path)
    smoke = yaml.safe_load((p.path / "devbox.yml").read_text())["smoke"]
    assert [c["name"] for c in smoke] == [SMOKE]  # the check below is the shipped one, unchanged

    with timings.measure("devbox integration --mitogen (reference service, 5 VMs)"):
        run = p.devbox("integration", "--mitogen", "--report-dir", str(p.path / "report"), check=False,
                       timeout=2400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert f"PASS smoke    {SMOKE}" in run.stdout and "integration: passed" in run.stdout

    suite = ET.parse(p.path / "report" / "integration.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert [c.get("name") for c in suite.findall("testcase")] == ["up and provision", SMOKE, "destroy"]
    report = json.loads((p.path / "report" / "integration.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    up = steps["up and provision"]["detail"]
    assert all(f"{vm} (ok " in up for vm in VMS), up
    assert "strategy: mitogen_linear" in up, up  # Mitogen ran: no silent fallback
    answer = json.loads(steps[SMOKE]["detail"])
    body = json.loads(answer["body"])
    assert answer["status"] == 200 and (body["status"], body["db"], body["cache"]) == ("ok", True, True), answer

    # CI writes the team's page after the run: the integration result and the 5 VMs in the picture (no
    # environment is read: nothing here can reach staging)
    with timings.measure("devbox report after integration"):
        p.devbox("report", "--no-env", "--integration-report", str(p.path / "report"),
                 "--html", str(p.path / "report" / "report.html"), "--json", str(p.path / "report" / "report.json"))
    page = json.loads((p.path / "report" / "report.json").read_text())
    assert page["integration"]["ok"] is True and [s["name"] for s in page["integration"]["steps"]] == [
        "up and provision", SMOKE, "destroy"]
    assert sorted(m["name"] for m in page["topology"]["machines"]) == list(VMS)
    html = (p.path / "report" / "report.html").read_text()
    assert all(f'<g class="machine" data-name="{vm}">' in html for vm in VMS) and "passed" in html

    # torn down: no VM of the run's copy of the project is left in libvirt
    domains = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                             text=True, timeout=60)
    assert domains.returncode == 0 and "devbox-integration-" not in domains.stdout, domains.stdout
