"""`devbox parity` through the CLI, with runners that replay facts captured from a real run.

``FactsRunner`` subclasses the real PlaybookRunner interface: it accepts only the parity facts playbook and
replays, per host, the real localhost events (tests/data/parity/localhost-events.json) renamed and changed the
way a host changes when someone edits it by hand. Trust and environment rails are the real ones
(EnvironmentRuns); only the SSH host-key probe is replaced, since the hosts do not exist.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import assert_handled

from provisioner.app import Devbox
from provisioner.cli.main import main
from provisioner.environments.runs import EnvironmentRuns
from provisioner.parity.gather import FACTS_PLAYBOOK
from provisioner.adapters.playbook_runner import HostSummary, PlaybookResult, PlaybookRunner
from provisioner.environments.trust import CHANGED, TRUSTED, HostKeyCheck

DATA = Path(__file__).resolve().parents[1] / "data" / "parity"
EVENTS = json.loads((DATA / "localhost-events.json").read_text())
PLAYBOOK = DATA / "playbooks" / "site.yml"


def host_events(host: str, groups: list[str], *, packages: dict | None = None, services: dict | None = None,
                tcp: str = "LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n") -> list[dict]:
    """The real events, as ``host`` would have sent them, with its own groups and hand-made changes."""
    out = []
    for event in copy.deepcopy(EVENTS):
        data = event["event_data"]
        data["host"] = host
        res = data["res"]
        facts = res.get("ansible_facts") or {}
        if "parity_group_names" in facts:
            facts["parity_group_names"] = groups
        if "packages" in facts:
            for name, version in (packages or {}).items():
                facts["packages"][name] = [{"name": name, "version": version, "arch": "amd64", "source": "apt"}]
        if "services" in facts:
            for name, state in (services or {}).items():
                facts["services"][name] = {"name": name, "state": state, "status": "enabled", "source": "systemd"}
        if res.get("cmd") == ["ss", "-ltnH"]:
            res["stdout"] = tcp
        out.append(event)
    return out


class FactsRunner(PlaybookRunner):
    """Replays facts per host; refuses any playbook but parity's. Records every call."""

    def __init__(self, hosts: dict[str, list[dict]]):
        self.hosts = hosts
        self.calls: list[dict] = []

    def run(self, *, playbook, inventory, forks, limit=None, tags=None, check=False, extravars=None,
            on_progress=None, on_event=None, after=()):
        assert Path(playbook) == FACTS_PLAYBOOK, f"parity ran another playbook: {playbook}"
        assert not check and tags is None and not after
        self.calls.append(dict(inventory=Path(inventory), extravars=extravars, forks=forks))
        for events in self.hosts.values():
            for event in events:
                on_event(event)
        return PlaybookResult(status="successful", rc=0, hosts=tuple(HostSummary(h, ok=9) for h in self.hosts),
                              failures=(), log_path="/fake/ansible.log", seconds=1.0)


class Checker:
    def __init__(self, status=TRUSTED):
        self.status, self.calls = status, 0

    def __call__(self, hosts, known_hosts):
        self.calls += 1
        return [HostKeyCheck(h, h.address, self.status, (), detail="" if self.status == TRUSTED else "differs")
                for h in hosts]


def _inventory(env: str, hosts: dict[str, dict[str, str]]) -> dict:
    return {"all": {"children": {env: {"children": {g: {"hosts": {h: {"ansible_host": a}}} for g, (h, a) in
                                                    ((g, next(iter(hs.items()))) for g, hs in hosts.items())}}}}}


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    for env, web, db in (("production", ("web1", "10.20.0.11"), ("db1", "10.20.0.21")),
                         ("staging", ("web-s1", "10.30.0.11"), ("db-s1", "10.30.0.21"))):
        (root / "inventories" / env).mkdir(parents=True)
        (root / "inventories" / env / "hosts.yml").write_text(yaml.safe_dump(
            _inventory(env, {"web": dict([web]), "db": dict([db])})))
    (root / "devbox.yml").write_text(yaml.safe_dump({
        "inventory": "inventories/production", "playbook": str(PLAYBOOK),
        "environments": {"staging": {"inventory": "inventories/staging"}},
        "parity": {"expected": [{"host_group": "web", "fact": "port:tcp/8080",
                                 "reason": "the development web server also listens on 8080"}]}}))
    plan = {"machines": [
        {"name": "web-1", "hostname": "web-1", "groups": ["web"], "represents": ["web1"], "memory": 512, "cpus": 1,
         "address": "192.168.56.11"},
        {"name": "db-1", "hostname": "db-1", "groups": ["db"], "represents": ["db1"], "memory": 512, "cpus": 1,
         "address": "192.168.56.21"}], "excluded": [], "warnings": []}
    (root / ".devbox").mkdir()
    (root / ".devbox" / "plan.json").write_text(json.dumps(plan))
    ssh = {"host": "127.0.0.1", "user": "vagrant", "identity_file": "/nonexistent/key"}
    (root / ".devbox" / "state.json").write_text(json.dumps({"version": 1, "machines": {
        "web-1": {"ssh": {**ssh, "port": 2222}}, "db-1": {"ssh": {**ssh, "port": 2200}}},
        "ledger": {"vms": {"web-1": {"units": {"0/common": {}, "3/webapp": {}}}}}}))
    return root


def make_app(project, dev: dict, staging: dict, checker=None):
    dev_runner, staging_runner = FactsRunner(dev), FactsRunner(staging)
    settings = []

    def factory(s):
        settings.append(s)
        return staging_runner

    app = Devbox(project_dir=project, playbooks=dev_runner)
    app.environment_runs = lambda: EnvironmentRuns(project, runner_factory=factory,
                                                   host_key_checker=checker or Checker())
    return app, dev_runner, staging_runner, settings


def same_everywhere():
    dev = {"web-1": host_events("web-1", ["production", "web"]), "db-1": host_events("db-1", ["production", "db"])}
    staging = {"web-s1": host_events("web-s1", ["staging", "web"]), "db-s1": host_events("db-s1", ["staging", "db"])}
    return dev, staging


def invoke(app, *args, input=None):
    return CliRunner().invoke(main, ["-C", str(app.project_dir), "parity", *args], obj=app, input=input)


def test_same_facts_no_drift_and_what_ran(project):
    app, dev_runner, staging_runner, settings = make_app(project, *same_everywhere())
    result = invoke(app, "--against", "staging", "--yes")
    assert result.exit_code == 0, result.output
    assert "no drift: development matches staging" in result.output
    [dev_call] = dev_runner.calls
    assert dev_call["inventory"] == project / ".devbox" / "inventory"
    assert (project / ".devbox" / "inventory" / "zz-connection.yml").exists()
    assert dev_call["extravars"] == {"parity_users": ["app"], "parity_groups": ["app", "ops"]}
    [staging_call] = staging_runner.calls
    assert staging_call["inventory"] == project / ".devbox" / "envs" / "staging" / "parity-inventory"
    # read-only and secret-free: no vault arguments, no vault environment
    assert settings[0].extra_args == () and settings[0].extra_env == {}


def test_drift_names_host_package_service_and_both_values(project):
    dev, staging = same_everywhere()
    staging["web-s1"] = host_events("web-s1", ["staging", "web"], packages={"htop": "3.2.2-2"},
                                    services={"nginx": "stopped"})
    dev["web-1"] = host_events("web-1", ["production", "web"], services={"nginx": "running"})
    app, *_ = make_app(project, dev, staging)
    result = invoke(app, "--against", "staging", "--yes", "--json")
    assert_handled(result, 1)
    doc = json.loads(result.output)
    drift = {(d["machine"], d["reference_host"], d["fact"]): (d["development"], d["reference"]) for d in doc["drift"]}
    assert drift == {("web-1", "web-s1", "package:htop"): ("absent", "3.2.2-2"),
                     ("web-1", "web-s1", "service:nginx"): ("running, enabled", "stopped, enabled")}
    assert {p["machine"]: p["references"] for p in doc["pairs"]} == {"web-1": ["web-s1"], "db-1": ["db-s1"]}

    text = invoke(app, "--against", "staging", "--yes")
    assert_handled(text, 1)
    for word in ("web-s1", "package:htop", "3.2.2-2", "service:nginx", "stopped, enabled", "2 difference(s) are drift"):
        assert word in text.output

    # the last comparison is kept for `devbox report`, drift named, with when it finished
    kept = json.loads((project / ".devbox" / "parity-last.json").read_text())
    assert kept["drift"] == doc["drift"] and kept["against"] == "staging" and kept["finished_at"].endswith("+00:00")
    report = CliRunner().invoke(main, ["-C", str(project), "report", "--no-env", "--json", str(project / "r.json")],
                                obj=app)
    assert report.exit_code == 0, report.output
    assert "parity against staging: 2 difference(s) are drift" in report.output
    assert json.loads((project / "r.json").read_text())["parity"]["drift"][0]["fact"] == "package:htop"


def test_declared_override_is_expected_and_html_written(project, tmp_path):
    dev, staging = same_everywhere()
    dev["web-1"] = host_events("web-1", ["production", "web"],
                               tcp="LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\nLISTEN 0 128 0.0.0.0:8080 0.0.0.0:*\n")
    app, *_ = make_app(project, dev, staging)
    page = tmp_path / "parity.html"
    result = invoke(app, "--against", "staging", "--yes", "--html", str(page))
    assert result.exit_code == 0, result.output
    assert "port:tcp/8080" in result.output and "listens on 8080" in result.output
    assert re.search(r"fact\s.*development\s.*reference\s.*reason", result.output)  # the reason has its column
    html = page.read_text()
    assert "port:tcp/8080" in html and "<script" not in html and "http" not in html


def test_confirmation_typed_or_nothing_runs(project):
    app, dev_runner, staging_runner, _ = make_app(project, *same_everywhere())
    refused = invoke(app, "--against", "staging", input="prod\n")
    assert_handled(refused, 1)
    assert "confirmation did not match" in refused.output
    assert "web-s1 (10.30.0.11)" in refused.output  # the hosts are listed before the question
    assert staging_runner.calls == [] and dev_runner.calls == []
    accepted = invoke(app, "--against", "staging", input="staging\n")
    assert accepted.exit_code == 0, accepted.output


def test_untrusted_host_key_stops_before_any_run(project):
    app, dev_runner, staging_runner, _ = make_app(project, *same_everywhere(), checker=Checker(CHANGED))
    result = invoke(app, "--against", "staging", "--yes")
    assert_handled(result, 1)
    assert "not trusted" in result.output
    assert staging_runner.calls == [] and dev_runner.calls == []


def test_production_is_not_a_target_unless_allowed(project):
    app, _, staging_runner, _ = make_app(project, *same_everywhere())
    result = invoke(app, "--export", "--env", "production")
    assert result.exit_code != 0 and "production" in result.output
    assert staging_runner.calls == []


def test_export_then_compare_offline(project, tmp_path):
    dev, staging = same_everywhere()
    app, dev_runner, staging_runner, _ = make_app(project, dev, staging)
    exported = invoke(app, "--export", "--env", "staging", "--yes")
    assert exported.exit_code == 0, exported.output
    baseline = json.loads(exported.output)
    assert baseline["environment"] == "staging" and set(baseline["hosts"]) == {"web-s1", "db-s1"}
    path = tmp_path / "baseline.json"
    path.write_text(exported.output)
    calls = len(staging_runner.calls)
    result = invoke(app, "--against", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert len(staging_runner.calls) == calls  # the baseline is read, staging is not contacted
    assert json.loads(result.output)["ok"] is True


def test_export_refuses_when_a_host_gave_no_facts(project):
    dev, staging = same_everywhere()
    staging["db-s1"] = [{"event": "runner_on_unreachable", "event_data": {
        "host": "db-s1", "task": "Gathering Facts", "res": {"msg": "Failed to connect to the host via ssh"}}}]
    app, *_ = make_app(project, dev, staging)
    result = invoke(app, "--export", "--env", "staging", "--yes")
    assert_handled(result, 1)
    assert "no baseline written" in result.output and "db-s1" in result.output
    assert "format" not in result.output


@pytest.mark.parametrize("args", [[], ["--export"], ["--env", "staging", "--against", "production"],
                                  ["--export", "--env", "x", "--json"]])
def test_usage_errors(project, args):
    app, *_ = make_app(project, *same_everywhere())
    result = invoke(app, *args)
    assert result.exit_code == 2, result.output


def test_env_names_the_environment_to_compare_with_as_everywhere(project):
    """`parity --env staging` is `parity --against staging`; both naming different references is a usage error."""
    app, dev_runner, staging_runner, _ = make_app(project, *same_everywhere())
    result = invoke(app, "--env", "staging", "--yes", "--json")
    assert_handled(result, 0)
    doc = json.loads(result.output)
    assert doc["schema"] == 1 and doc["against"] == "staging" and doc["ok"] is True
    assert len(staging_runner.calls) == 1 and len(dev_runner.calls) == 1
    same = invoke(app, "--env", "staging", "--against", "staging", "--yes")
    assert_handled(same, 0)
    clash = invoke(app, "--env", "staging", "--against", "production", "--yes")
    assert_handled(clash, 2)
    assert "--env staging and --against production name different references" in clash.output
    assert len(staging_runner.calls) == 2  # the clash contacted nothing
