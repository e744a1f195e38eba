"""Parity core and reports, on facts captured from a real run of provisioner/data/parity_facts.yml.

tests/data/parity/localhost-events.json comes from tests/data/parity/capture.py (ansible-runner, localhost);
the ss outputs from `ss -ltnH` / `ss -lunH` with listeners opened on loopback. Drift is made by mutating
copies of the real profile, the way a host changes when someone edits it by hand.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path

import pytest

from provisioner.config.parity import config_problems
from provisioner.errors import DevboxError
from provisioner.parity.compare import (Expectation, Machine, build_profile, build_report, baseline_json,
                                collect_facts, compare, expectations_from_config, load_baseline,
                                pair_hosts, parse_getent, parse_ss, roles_from_ledger)
from provisioner.parity.report import report_dict, report_html, report_json
from provisioner.parity.scan import Managed

DATA = Path(__file__).resolve().parents[1] / "data" / "parity"

# what a playbook tree could manage, in terms of what the captured host really has
MANAGED = Managed(packages=frozenset({"openssh-client", "rsync", "postgresql", "no-such-package"}),
                  services=frozenset({"ssh.service"}), users=frozenset({"root", "no-such-user"}),
                  groups=frozenset({"adm", "no-such-group"}))


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return json.loads((DATA / "localhost-events.json").read_text())


@pytest.fixture(scope="module")
def real(events):
    """The real localhost profile."""
    return build_profile(collect_facts(events)["localhost"])


def as_host(profile, name, **changes):
    return dataclasses.replace(profile, host=name, **changes)


# ------------------------------------------------------------------------------------------------ profiles

def test_profile_from_real_facts(real):
    assert real.os == "Debian 12"
    assert re.fullmatch(r"3\.\d+\.\d+", real.python)
    assert real.kernel and real.kernel != "unknown"
    assert len(real.packages) > 100
    assert re.match(r"1:\d", real.packages["openssh-client"])  # Debian epoch kept: it is part of the version
    assert real.users["root"].startswith("uid=0 gid=0 home=/root")
    assert "no-such-user" not in real.users
    assert real.groups["adm"].startswith("gid=4 ")
    assert "ssh" in real.services  # sysv names and systemd's "x.service" end up the same
    assert real.group_names == ("ungrouped",)
    assert real.roles is None


def test_failed_and_unreachable_hosts_are_recorded(events):
    failed = {"event": "runner_on_unreachable",
              "event_data": {"host": "db-1", "task": "Gathering Facts", "res": {"msg": "ssh: connect timed out"}}}
    hosts = collect_facts([*events, failed])
    assert hosts["db-1"].error == "unreachable: ssh: connect timed out"
    assert hosts["localhost"].error is None


def test_ss_output_gives_protocol_and_port_not_address():
    tcp = parse_ss((DATA / "ss-ltnH.txt").read_text(), "tcp")
    udp = parse_ss((DATA / "ss-lunH.txt").read_text(), "udp")
    assert {"tcp/80", "tcp/8080", "tcp/5432"} <= tcp  # 0.0.0.0, 127.0.0.1 and [::1] alike
    assert {"udp/5353", "udp/123"} <= udp
    # listeners in the kernel's ephemeral range change every boot
    assert not {"tcp/45123", "udp/41234", "udp/33783"} & (tcp | udp)


def test_getent_lines():
    assert parse_getent("deploy:x:1001:1001:Deploy:/home/deploy:/bin/bash\n", "passwd") == {
        "deploy": "uid=1001 gid=1001 home=/home/deploy shell=/bin/bash"}
    assert parse_getent("ops:x:1002:bob,alice\nempty:x:1003:\n", "group") == {
        "ops": "gid=1002 members=alice,bob", "empty": "gid=1003 members=-"}


def test_roles_from_the_record_on_the_host(events):
    record = base64.b64encode(json.dumps({"revision": "abc", "roles": ["common", "webapp"]}).encode()).decode()
    slurped = {"event": "runner_on_ok", "event_data": {"host": "localhost", "task_action": "ansible.builtin.slurp",
               "res": {"content": record, "encoding": "base64", "source": "/etc/devbox/applied.json"}}}
    raw = collect_facts([*events, slurped])["localhost"]
    assert build_profile(raw).roles == ("common", "webapp")
    assert build_profile(raw, roles=["common"]).roles == ("common",)  # devbox's own ledger wins for VMs
    assert roles_from_ledger({"0": {}, "0/common": {}, "3/webapp": {}}) == ["common", "webapp"]


# ---------------------------------------------------------------------------------------------- comparison

def test_the_same_host_has_no_drift(real):
    assert compare(as_host(real, "web-1"), as_host(real, "web-s1"), MANAGED) == []


def test_package_version_changed_is_drift_naming_both_values(real):
    ref = as_host(real, "web-s1", packages={**real.packages, "openssh-client": "1:9.9p1-1"})
    [d] = compare(as_host(real, "web-1"), ref, MANAGED)
    assert (d.machine, d.reference, d.fact) == ("web-1", "web-s1", "package:openssh-client")
    assert (d.development, d.reference_value) == (real.packages["openssh-client"], "1:9.9p1-1")
    assert not d.expected


def test_package_installed_by_hand_on_the_reference(real):
    ref = as_host(real, "web-s1", packages={**real.packages, "no-such-package": "2.0-1"})
    [d] = compare(as_host(real, "web-1"), ref, MANAGED)
    assert (d.fact, d.development, d.reference_value) == ("package:no-such-package", "absent", "2.0-1")


def test_packages_the_playbooks_do_not_manage_are_not_compared(real):
    ref = as_host(real, "web-s1", packages={**real.packages, "cowsay": "3.03"})
    assert compare(as_host(real, "web-1"), ref, MANAGED) == []


def test_service_stopped_is_drift(real):
    dev = as_host(real, "web-1", services={**real.services, "ssh": "running, enabled"})
    ref = as_host(real, "web-s1", services={**real.services, "ssh": "stopped, enabled"})
    [d] = compare(dev, ref, MANAGED)
    assert (d.fact, d.development, d.reference_value) == ("service:ssh", "running, enabled", "stopped, enabled")


def test_services_of_managed_packages_are_compared(real):
    # postgresql is a managed package; its service is compared though no task names the service
    ref = as_host(real, "db-s1", services={**real.services, "postgresql": "running"})
    [d] = compare(as_host(real, "db-1"), ref, MANAGED)
    assert d.fact == "service:postgresql"


def test_closed_port_is_drift(real):
    dev = as_host(real, "lb-1", ports=frozenset({"tcp/22", "tcp/80"}))
    ref = as_host(real, "lb-s1", ports=frozenset({"tcp/22"}))
    [d] = compare(dev, ref, MANAGED)
    assert (d.fact, d.development, d.reference_value) == ("port:tcp/80", "listening", "not listening")


def test_platform_users_and_groups(real):
    ref = as_host(real, "web-s1", kernel="6.1.0-99-amd64", os="Debian 11",
                  users={**real.users, "root": "uid=0 gid=0 home=/root shell=/bin/sh"},
                  groups={k: v for k, v in real.groups.items() if k != "adm"})
    facts = {d.fact: d for d in compare(as_host(real, "web-1"), ref, MANAGED)}
    assert set(facts) == {"kernel", "os", "user:root", "group:adm"}
    assert facts["group:adm"].reference_value == "absent"


def test_declared_override_is_expected_not_drift(real):
    dev = as_host(real, "web-1", ports=frozenset({"tcp/80"}), kernel="6.1.0-dev")
    ref = as_host(real, "web-s1", ports=frozenset({"tcp/443"}))
    declared = expectations_from_config([
        {"host_group": "web", "fact": "port:tcp/*", "reason": "no TLS in development"},
        {"machine": "db-1", "fact": "kernel", "reason": "another machine"},
    ])
    diffs = compare(dev, ref, MANAGED, declared, machine_groups=["web"])
    assert {d.fact: d.expected for d in diffs} == {"port:tcp/80": True, "port:tcp/443": True, "kernel": False}
    assert all(d.reason == "no TLS in development" for d in diffs if d.expected)
    # the same declaration does not cover a machine outside the group
    assert not any(d.expected for d in compare(dev, ref, MANAGED, declared, machine_groups=["db"]))


def test_roles_compared_only_when_both_sides_know(real):
    a, b = as_host(real, "web-1", roles=("common", "webapp")), as_host(real, "web-s1", roles=("common",))
    [d] = compare(a, b, MANAGED)
    assert (d.fact, d.development, d.reference_value) == ("roles", "common, webapp", "common")
    assert compare(a, as_host(real, "web-s1", roles=None), MANAGED) == []


def test_unresolved_package_names_fall_back_to_mentioned_packages(real):
    managed = dataclasses.replace(MANAGED, unresolved=("{{ lookup('env', 'X') }}",),
                                  mentioned=frozenset({"rsync", "curl", "task", "name"}))
    ref = as_host(real, "web-s1", packages={**real.packages, "curl": "7.88.1-10"})
    dev = as_host(real, "web-1", packages={k: v for k, v in real.packages.items() if k != "curl"})
    [d] = compare(dev, ref, managed)
    assert (d.fact, d.development, d.reference_value) == ("package:curl", "absent", "7.88.1-10")


# -------------------------------------------------------------------------------------------------- pairing

def test_pairing_by_represents_for_production(real):
    machines = [Machine("web-1", ("web",), ("web1", "web2")), Machine("db-1", ("db",), ("db1",))]
    dev = {"web-1": as_host(real, "web-1"), "db-1": as_host(real, "db-1")}
    ref = {h: as_host(real, h) for h in ("web1", "web2", "db1", "bastion1")}
    pairs, unpaired = pair_hosts(machines, dev, ref, MANAGED)
    assert [(p.machine, p.references, p.how) for p in pairs] == [
        ("web-1", ("web1", "web2"), "represents"), ("db-1", ("db1",), "represents")]
    assert unpaired == ["bastion1"]


def test_pairing_by_groups_for_staging_prefers_the_closest_twin(real):
    # two VMs in the same groups (primary and replica): each staging db host goes to the VM it matches
    machines = [Machine("db-primary", ("db",), ("pg1",)), Machine("db-replica", ("db",), ("pg2",)),
                Machine("web-1", ("web",), ("web1",))]
    primary = as_host(real, "db-primary", group_names=("db", "production"), services={"pg": "running"})
    replica = as_host(real, "db-replica", group_names=("db", "production"), services={"pg": "stopped"})
    dev = {"db-primary": primary, "db-replica": replica, "web-1": as_host(real, "web-1", group_names=("web",))}
    managed = dataclasses.replace(MANAGED, services=frozenset({"pg"}))
    ref = {"pg-s2": as_host(real, "pg-s2", group_names=("db", "staging"), services={"pg": "stopped"}),
           "pg-s1": as_host(real, "pg-s1", group_names=("db", "staging"), services={"pg": "running"}),
           "web-s1": as_host(real, "web-s1", group_names=("web", "staging")),
           "mail-s1": as_host(real, "mail-s1", group_names=("mail", "staging"))}
    pairs, unpaired = pair_hosts(machines, dev, ref, managed, ignore_groups=["production", "staging"])
    assert {p.machine: p.references for p in pairs} == {"db-primary": ("pg-s1",), "db-replica": ("pg-s2",),
                                                        "web-1": ("web-s1",)}
    assert all(p.how == "groups" for p in pairs)
    assert unpaired == ["mail-s1"]


# --------------------------------------------------------------------------------------- reports, baselines

def _report(real, *, drift: bool, expected: bool = False):
    machines = [Machine("web-1", ("web",), ("web1",))]
    dev = {"web-1": as_host(real, "web-1", group_names=("web",), roles=("common", "webapp"))}
    ref_profile = as_host(real, "web-s1", group_names=("web",), roles=("common", "webapp"))
    if drift:
        ref_profile = dataclasses.replace(ref_profile, packages={**real.packages, "rsync": "<script>alert(1)</script>"})
    declared = [Expectation("kernel", "dev VMs run the box's kernel & that is fine")] if expected else []
    if expected:
        ref_profile = dataclasses.replace(ref_profile, kernel="6.1.0-<b>prod</b>")
    return build_report(against="staging", machines=machines, dev=dev, ref={"web-s1": ref_profile},
                        managed=MANAGED, expectations=declared)


def test_json_report_separates_drift_and_expected(real):
    report = _report(real, drift=True, expected=True)
    doc = json.loads(report_json(report))
    assert doc["ok"] is False and doc["verdict"] == "1 difference(s) are drift"
    assert doc["summary"] == {"machines": 1, "drift": 1, "expected": 1, "unreachable": 0}
    assert doc["drift"] == [{"machine": "web-1", "reference_host": "web-s1", "fact": "package:rsync",
                             "kind": "package", "item": "rsync", "development": real.packages["rsync"],
                             "reference": "<script>alert(1)</script>", "status": "drift", "reason": None}]
    assert doc["expected"][0]["fact"] == "kernel" and doc["expected"][0]["status"] == "expected"
    assert doc["pairs"] == [{"machine": "web-1", "references": ["web-s1"], "paired_by": "groups"}]


def test_only_expected_differences_is_ok(real):
    report = _report(real, drift=False, expected=True)
    assert report.ok and len(report.expected) == 1 and report_dict(report)["ok"] is True


def test_html_report_is_self_contained_and_escaped(real):
    page = report_html(_report(real, drift=True, expected=True))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "6.1.0-&lt;b&gt;prod&lt;/b&gt;" in page and "box&#39;s kernel &amp; that" in page
    assert not re.search(r"(src|href)=|https?://|@import|<link|<script", page)
    assert "package:rsync" in page and "web-s1" in page


def test_unmeasured_host_or_unpaired_machine_is_not_ok(real):
    machines = [Machine("web-1", ("web",), ()), Machine("cache-1", ("cache",), ())]
    dev = {"web-1": as_host(real, "web-1", group_names=("web",)),
           "cache-1": as_host(real, "cache-1", group_names=("cache",))}
    report = build_report(against="staging", machines=machines, dev=dev,
                          ref={"web-s1": as_host(real, "web-s1", group_names=("web",))}, managed=MANAGED)
    assert not report.drift and not report.ok
    assert any("cache-1: no host in staging" in n for n in report.notes)
    assert report.verdict() == "no counterpart in staging for cache-1"
    assert "no counterpart in staging for cache-1" in report_html(report)


def test_baseline_round_trip_compares_without_the_environment(real):
    ref = {"web1": as_host(real, "web1", group_names=("web", "production"))}
    text = baseline_json("production", ref, captured_at="2026-11-26T05:00:00+00:00")
    env, loaded = load_baseline(text, path="baseline.json")
    assert env == "production" and loaded == ref
    report = build_report(against="baseline.json", machines=[Machine("web-1", ("web",), ("web1",))],
                          dev={"web-1": as_host(real, "web-1")}, ref=loaded, managed=MANAGED)
    assert report.ok and report.pairs[0].references == ("web1",)


@pytest.mark.parametrize("text, message", [
    ("{", "is not JSON"),
    ('{"hosts": {}}', "is not a devbox parity baseline"),
    ('{"format": "devbox-parity-baseline", "version": 99, "hosts": {}}', "version 99"),
    ('{"format": "devbox-parity-baseline", "version": 1, "hosts": {"a": {"host": "a"}}}', "incomplete"),
])
def test_bad_baselines_are_refused_with_the_file_name(text, message):
    with pytest.raises(DevboxError) as exc:
        load_baseline(text, path="old.json")
    assert "old.json" in str(exc.value) and message in str(exc.value)


def test_config_section_problems_are_all_reported():
    assert config_problems(None) == []
    assert config_problems({"expected": [{"fact": "kernel", "reason": "box kernel", "host_group": "web"}]}) == []
    problems = config_problems({"expected": [{"fact": "", "machine": "a", "host_group": "b", "why": "x"}, "x"],
                                "baseline": "b.json"})
    assert len(problems) == 6
    assert any("parity.baseline: unknown key" in p for p in problems)
    assert any("parity.expected[0].reason: required" in p for p in problems)
    assert any("parity.expected[1]: must be a mapping" in p for p in problems)
