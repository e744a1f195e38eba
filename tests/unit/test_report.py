"""`devbox report`: the model (group disagreement, runs), gathering through the real environment rails with a fake
playbook runner and host-key checker (subclasses/callables of the real interfaces), real git for "commits behind",
the topology picture at 5 and at 150 hosts, the page and its JSON, and the real CLI."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner

from fakes import FetchedStamps, trusted_keys
from helpers import REPO, assert_handled, copy_reference_project, git, git_commit
from provisioner.environments.runs import EnvironmentRuns
from provisioner.environments.stamp import HostRevision, Revision, make_stamp
from provisioner.environments.trust import HostKeyCheck
from provisioner.errors import UsageError
from provisioner.plan.topology import Excluded, MachineSpec, Topology
from provisioner.report import svg
from provisioner.report.gather import GitHistory, RunsStampReader, gather, read_outcome
from provisioner.report.model import HostState, disagreements, environment_state, topology_view
from provisioner.report.render import report_html, report_json

ENVS = REPO / "tests" / "data" / "envs"
VAULT_FILE = ENVS / "staging" / "group_vars" / "all" / "vault.yml"


def stamp(commit: str | None, *, limit=None, tags=None, user="ana@ci", when="2026-11-30T10:00:00+00:00"):
    from datetime import datetime
    return make_stamp(environment="staging", playbook="playbooks/site.yml", revision=Revision(commit, False),
                      limit=limit, tags=tags, user=user, now=datetime.fromisoformat(when))


# --- the model -----------------------------------------------------------------------------------------------

def test_a_host_off_its_groups_majority_is_named_and_unreachable_hosts_do_not_vote():
    a, b = "a" * 40, "b" * 40
    revisions = [HostRevision("web-1", stamp(a)), HostRevision("web-2", stamp(a)), HostRevision("web-3", stamp(b)),
                 HostRevision("web-4", None, "unreachable"),
                 HostRevision("db-1", stamp(a)), HostRevision("db-2", None),            # never stamped
                 HostRevision("cache-1", stamp(b))]                                     # alone in its group
    groups = {"web-1": ["web"], "web-2": ["web"], "web-3": ["web"], "web-4": ["web"], "db-1": ["db"],
              "db-2": ["db"], "cache-1": ["cache"]}
    env = environment_state("staging", revisions, groups, {a: 0, b: 3})
    notes = {h.host: h.disagrees_with for h in env.hosts}
    assert notes["web-3"] == f"web: 2 on {a[:12]}"
    assert notes["web-1"] == notes["web-2"] == notes["web-4"] == notes["cache-1"] == ""
    # two hosts, two revisions: no majority, both named
    assert notes["db-1"] == "db: 1 on never provisioned by devbox" and notes["db-2"] == f"db: 1 on {a[:12]}"
    by_host = {h.host: h for h in env.hosts}
    assert by_host["web-3"].behind == 3 and by_host["web-1"].behind == 0 and by_host["db-2"].behind is None
    assert not env.ok and "1 not reached" in env.summary() and "3 disagree with their group" in env.summary()


def test_partial_runs_say_what_limited_them():
    assert HostState("h", (), stamp("c" * 40)).run == "full"
    assert HostState("h", (), stamp("c" * 40, limit="web", tags="nginx")).run == "partial --limit web --tags nginx"
    assert HostState("h", (), None).run is None and HostState("h", (), None).revision == "never provisioned by devbox"
    assert disagreements([HostState("x", ("g",), stamp("c" * 40)), HostState("y", ("g",), stamp("c" * 40))]) == {}


# --- real git: commits behind the main branch ------------------------------------------------------------------

def test_commits_behind_main_are_counted_by_git(tmp_path):
    repo = tmp_path / "repo"
    (repo / "f").parent.mkdir()
    for i in range(4):
        (repo / "f").write_text(str(i))
        git_commit(repo, ".", message=f"c{i}")
        if i == 1:
            applied = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "-M", "main")
    history = GitHistory(repo, "main")
    assert history.head() == git(repo, "rev-parse", "HEAD").strip()
    assert history.behind(applied) == 2 and history.behind(history.head()) == 0
    assert history.behind("0" * 40) is None and history.behind("--all") is None   # unknown here; not an option
    assert GitHistory(repo, "trunk").head() is None and GitHistory(tmp_path / "nogit", "main").behind(applied) is None


# --- gathering through the environment rails -------------------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ENVS / "production", root / "inventories" / "production")
    staging = root / "inventories" / "staging"
    (staging / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(VAULT_FILE, staging / "group_vars" / "all" / "vault.yml")   # never decrypted, never copied
    hosts = {"web": {f"web-s{i}": {"ansible_host": f"192.168.57.{10 + i}"} for i in (1, 2, 3)},
             "db": {"db-s1": {"ansible_host": "192.168.57.21"}}}
    (staging / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"staging": {"children": {
        g: {"hosts": h} for g, h in hosts.items()}}}}}))
    (root / "environments").mkdir()
    (root / "environments" / "staging.known_hosts").write_text("# pinned by devbox trust\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    (root / "devbox.yml").write_text(yaml.safe_dump({
        "inventory": "inventories/production", "playbook": "playbooks/site.yml",
        "environments": {"staging": {"inventory": "inventories/staging", "vault_id": "staging"},
                         "leaky": {"inventory": "inventories/leaky"}}}))
    # "leaky" names a production host: the guard refuses it before any connection
    leaky = root / "inventories" / "leaky"
    leaky.mkdir()
    (leaky / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"web1-again": {"ansible_host": "10.20.0.11"}}}}))
    (root / "environments" / "leaky.known_hosts").write_text("")
    git_commit(root, ".", message="the project")
    git(root, "branch", "-M", "main")
    return root


def env_runs(project, hosts: FetchedStamps, checker=trusted_keys):
    return EnvironmentRuns(project, runner_factory=hosts.factory, host_key_checker=checker)


def test_stamps_are_read_through_the_rails_without_vault_and_with_the_branch_distance(project):
    applied = git(project, "rev-parse", "HEAD").strip()
    (project / "README").write_text("later\n")
    git_commit(project, "README", message="a later commit")
    hosts = FetchedStamps({"web-s1": stamp(applied), "web-s2": stamp(applied), "db-s1": stamp(applied, tags="db"),
                           "web-s3": stamp("f" * 40)}, unreachable=())
    runs = env_runs(project, hosts)
    report = gather(project="p", reader=RunsStampReader(runs), history=GitHistory(project), env_names=["staging"],
                    topology=lambda: (_topology(5), "test"), integration_json=project / "none.json",
                    parity_json=project / "none.json")
    (env,) = report.environments
    assert env.ok and env.error == ""
    by_host = {h.host: h for h in env.hosts}
    assert {h: s.behind for h, s in by_host.items()} == {"web-s1": 1, "web-s2": 1, "web-s3": None, "db-s1": 1}
    assert by_host["web-s3"].disagrees_with == f"web: 2 on {applied[:12]}" and by_host["web-s1"].groups == ("web",)
    assert by_host["db-s1"].run == "partial --tags db" and by_host["db-s1"].applied_by == "ana@ci"
    # read-only: devbox's fetch playbook, over a copy of the inventory without the vault file, no vault argument
    (call,) = hosts.runner.calls
    assert Path(call["playbook"]).name == "read.yml" and call["check"] is False
    copy = Path(call["inventory"])
    assert copy != project / "inventories" / "staging" and (copy / "hosts.yml").exists()
    assert not list(copy.rglob("vault.yml"))
    (settings,) = hosts.settings
    assert settings.extra_args == () and settings.extra_env == {}


def key_checks(**status):
    """A host-key checker: every host trusted but those given (``web_s3=("unreachable", "why")``)."""
    def check(hosts, known_hosts):
        found = []
        for h in hosts:
            state, detail = status.get(h.name.replace("-", "_"), ("trusted", ""))
            found.append(HostKeyCheck(h, h.address, state, (), detail=detail))
        return found
    return check


def test_an_environment_that_cannot_be_read_is_on_the_page_with_why(project):
    # web-s3 does not answer the key check: not run at all; web-s2 and db-s1 time out in the read itself
    hosts = FetchedStamps({"web-s1": stamp("a" * 40)}, unreachable=("web-s2", "db-s1"))
    runs = env_runs(project, hosts, checker=key_checks(web_s3=("unreachable", "no SSH handshake: timed out")))
    report = gather(project="p", reader=RunsStampReader(runs), history=GitHistory(project),
                    env_names=["staging", "leaky"], topology=lambda: (_topology(5), "test"),
                    integration_json=project / "none.json", parity_json=project / "none.json")
    staging, leaky = report.environments
    assert {h.host: h.problem for h in staging.hosts if h.problem} == {
        "web-s2": "unreachable: ssh: connect timed out", "db-s1": "unreachable: ssh: connect timed out",
        "web-s3": "unreachable: no SSH handshake: timed out"} and not staging.ok
    assert hosts.runner.calls[0]["limit"] == "db-s1,web-s1,web-s2"       # the host that did not answer: left out
    assert "reaches hosts of the production inventory" in leaky.error and "web1" in leaky.error
    assert len(hosts.settings) == 1          # the leaky one never got a runner
    assert [e.name for e in report.unread] == ["staging", "leaky"]
    html = report_html(report)
    assert "reaches hosts of the production inventory" in html and "unreachable" in html

    # keys not pinned: nothing contacted at all
    (project / "environments" / "staging.known_hosts").unlink()
    calls = []
    runs = env_runs(project, FetchedStamps({}), checker=lambda h, k: calls.append(h) or trusted_keys(h, k))
    state = gather(project="p", reader=RunsStampReader(runs), history=GitHistory(project), env_names=None,
                   topology=lambda: (_topology(5), "test"), integration_json=project / "x",
                   parity_json=project / "x").environments
    assert [e.name for e in state] == ["leaky", "staging"]   # every declared one but dev (and production)
    assert "no host key of environment 'staging' is pinned" in state[1].error and calls == []


def test_a_changed_host_key_stops_the_whole_read(project):
    hosts = FetchedStamps({"web-s1": stamp("a" * 40)})
    runs = env_runs(project, hosts, checker=key_checks(web_s2=("changed", "the key differs from the pinned one"),
                                                       web_s3=("unreachable", "timed out")))
    (env,) = gather(project="p", reader=RunsStampReader(runs), history=GitHistory(project), env_names=["staging"],
                    topology=lambda: (_topology(5), "test"), integration_json=project / "x",
                    parity_json=project / "x").environments
    assert "host keys of environment 'staging' are not trusted; nothing was run" in env.error
    assert "web-s2" in env.error and env.hosts == () and hosts.settings == []


def test_unknown_and_dev_environments_are_usage_errors_before_anything_is_read(project):
    hosts = FetchedStamps({})
    for names in (["staging", "nosuch"], ["dev"]):
        with pytest.raises(UsageError):
            gather(project="p", reader=RunsStampReader(env_runs(project, hosts)), history=GitHistory(project),
                   env_names=names, topology=lambda: (_topology(5), "test"), integration_json=project / "x",
                   parity_json=project / "x")
    assert hosts.settings == []


def test_result_files_missing_or_damaged_are_explained(tmp_path):
    assert "does not exist" in read_outcome(tmp_path / "integration.json", "integration result", "run it").problem
    (tmp_path / "bad.json").write_text("{not json")
    assert "cannot be read as JSON" in read_outcome(tmp_path / "bad.json", "x", "y").problem
    (tmp_path / "list.json").write_text("[]")
    assert "not a JSON object" in read_outcome(tmp_path / "list.json", "x", "y").problem


# --- the topology picture --------------------------------------------------------------------------------------

def _topology(hosts: int) -> Topology:
    """``hosts`` production hosts in five groups, collapsed to a VM or two per group (as a plan does)."""
    groups = ("web", "app", "db", "cache", "queue")
    names = {g: [f"{g}-{i:03d}" for i in range(hosts * (k + 1) // len(groups) - hosts * k // len(groups))]
             for k, g in enumerate(groups)}
    machines, n = [], 11
    for g in groups:
        members = names[g]
        halves = [members] if len(members) < 20 else [members[: len(members) // 2], members[len(members) // 2:]]
        for i, part in enumerate(halves, 1):
            machines.append(MachineSpec(f"{g}-{i}", f"{g}-{i}", (g, "linux") if g == "db" else (g,), tuple(part),
                                        512, 1, f"192.168.56.{n}"))
            n += 1
    return Topology(tuple(machines), (Excluded("bastion-01", "group bastion is excluded in devbox.yml"),))


def _boxes_do_not_overlap(layout):
    for column in ({b for b in layout.boxes if b.x < layout.width / 2}, {b for b in layout.boxes if b.x > layout.width / 2}):
        spans = sorted((b.y, b.bottom) for b in column)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), spans
        assert all(0 < top and bottom <= layout.height for top, bottom in spans)


def test_svg_of_the_reference_service_plan_five_vms(tmp_path):
    from provisioner.app import Devbox

    root = copy_reference_project(tmp_path / "ref")
    topology = Devbox(project_dir=root).plan().topology        # the real plan, from the real inventory
    view = topology_view(topology)
    lay = svg.layout(view)
    assert [b.key for b in lay.boxes if b.kind == "machine"] == ["cache-1", "db-primary", "db-replica", "lb-1", "web-1"]
    assert {(link.group, link.machine, link.hosts) for link in lay.links} == {
        ("cache", "cache-1", 1), ("db", "db-primary", 1), ("db", "db-replica", 1), ("lb", "lb-1", 2),
        ("web", "web-1", 6)}
    _boxes_do_not_overlap(lay)
    text = svg.render_svg(view)
    root_el = ET.fromstring(text)                              # well-formed
    assert root_el.get("viewBox") == f"0 0 {lay.width} {lay.height}"
    assert "web-01, web-02, web-03 +3 more" in text and "bastion-01" in text


def test_svg_at_150_hosts_is_grouped_not_one_line_per_host():
    view = topology_view(_topology(150))
    assert view.production_hosts == 151
    lay = svg.layout(view)
    groups = [b for b in lay.boxes if b.kind == "group"]
    machines = [b for b in lay.boxes if b.kind == "machine"]
    # five role groups and one the db VMs also join; the excluded bastion has a box of its own
    assert len(groups) == 6 and len(machines) == 10 and len(lay.links) == 12
    assert [b.key for b in lay.boxes if b.kind == "excluded"] == ["(no VM)"]
    _boxes_do_not_overlap(lay)
    assert lay.height < 12 * (svg.BOX_H + svg.GAP) + svg.TOP + svg.GAP      # grows with VMs, not hosts
    text = svg.render_svg(view)
    ET.fromstring(text)
    assert "30 production hosts" in text and "web-000, web-001, web-002 +27 more" in text
    assert "web-017" not in text                                               # host 18 of 30 is counted, not drawn
    assert text.count("<text") == 2 + 3 * (6 + 1 + 10)                        # 3 lines per box, no per-host line


# --- the page and its JSON -------------------------------------------------------------------------------------

def _report_with(tmp_path, revisions, *, integration=None, parity=None):
    from provisioner.report.model import Checkout, Outcome, Report

    env = environment_state("staging", revisions, {r.host: ["web"] for r in revisions}, {})
    out = lambda data, name: Outcome(data, str(tmp_path / name), "" if data else "no result")  # noqa: E731
    return Report("ref", "2026-12-01T00:00:00+00:00", Checkout("main", "a" * 40), (env,),
                  out(integration, "integration.json"), out(parity, "parity.json"), topology_view(_topology(5)))


INTEGRATION = {"schema": 1, "ok": False, "revision": "abc123def456", "started": "2026-11-30T23:00:00+00:00",
               "seconds": 812.4, "steps": [
                   {"name": "up and provision", "kind": "setup", "ok": True, "seconds": 700.0, "message": "", "detail": ""},
                   {"name": "health", "kind": "smoke", "ok": False, "seconds": 3.1, "message": "status 502\nmore"}]}
PARITY = {"schema": 1, "against": "staging", "ok": False, "verdict": "1 difference(s) are drift",
          "finished_at": "2026-11-30T22:00:00+00:00",
          "drift": [{"machine": "web-1", "reference_host": "stg-web-01", "fact": "package:nginx",
                     "development": "1.22", "reference": "1.24"}], "expected": [{}], "unreachable": []}


def test_page_is_self_contained_escaped_and_phone_ready(tmp_path):
    evil = stamp("a" * 40, user="<script>alert(1)</script>")
    report = _report_with(tmp_path, [HostRevision("web-<b>1</b>", evil), HostRevision("web-2", stamp("b" * 40))],
                          integration=INTEGRATION, parity=PARITY)
    html = report_html(report)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "web-&lt;b&gt;1&lt;/b&gt;" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    # nothing fetched: no script, no stylesheet link, no image or font URL (the SVG namespace is not a fetch)
    assert not re.search(r"""(src=|url\(|@import|<link(?![^>]*href="data:))""", html)
    assert [u for u in re.findall(r"https?://[^\s\"'<]+", html) if u != "http://www.w3.org/2000/svg"] == []
    assert '<svg id="topology"' in html and html.count('data-host=') == 2
    assert "status 502" in html and "more" not in html.split("status 502")[1][:20]   # the message's first line
    assert "package:nginx" in html and "stg-web-01" in html and "1 drift" in html


def test_json_carries_the_same_facts_with_a_schema(tmp_path):
    report = _report_with(tmp_path, [HostRevision("web-1", stamp("a" * 40)), HostRevision("web-2", None, "unreachable")],
                          integration=INTEGRATION, parity=PARITY)
    doc = json.loads(report_json(report))
    assert doc["schema"] == 1 and doc["checkout"] == {"branch": "main", "head": "a" * 40, "problem": None}
    (env,) = doc["environments"]
    assert env["ok"] is False and [h["host"] for h in env["hosts"]] == ["web-1", "web-2"]
    assert env["hosts"][0]["commit"] == "a" * 40 and env["hosts"][0]["applied_by"] == "ana@ci"
    assert env["hosts"][1]["problem"] == "unreachable"
    assert doc["integration"]["ok"] is False and doc["integration"]["steps"][1]["message"] == "status 502"
    assert doc["parity"]["drift"][0]["fact"] == "package:nginx" and doc["parity"]["expected"] == 1
    assert [m["name"] for m in doc["topology"]["machines"]][:2] == ["web-1", "app-1"]
    assert doc["topology"]["excluded"] == [{"host": "bastion-01", "reason": "group bastion is excluded in devbox.yml"}]


# --- the real CLI -----------------------------------------------------------------------------------------------

def cli(project, args, runs=None):
    from provisioner.app import Devbox
    from provisioner.cli import main

    app = Devbox(project_dir=project)
    if runs is not None:
        app.environment_runs = lambda: runs
    return CliRunner().invoke(main, ["-C", str(project), *args], obj=app)


def test_cli_writes_page_and_json_and_exits_1_when_an_environment_was_not_read(project, tmp_path):
    (project / "integration-report").mkdir()
    (project / "integration-report" / "integration.json").write_text(json.dumps(INTEGRATION))
    (project / ".devbox").mkdir()
    (project / ".devbox" / "parity-last.json").write_text(json.dumps(PARITY))
    applied = git(project, "rev-parse", "HEAD").strip()
    hosts = FetchedStamps({h: stamp(applied) for h in ("web-s1", "web-s2", "web-s3", "db-s1")})
    html, js = tmp_path / "out" / "report.html", tmp_path / "out" / "report.json"
    html.parent.mkdir()
    ok = cli(project, ["report", "--env", "staging", "--html", str(html), "--json", str(js)], env_runs(project, hosts))
    assert ok.exit_code == 0, ok.output
    assert "staging: 4 hosts; 4 on " + applied[:12] in ok.output and "integration: failed" in ok.output
    doc = json.loads(js.read_text())
    assert {h["host"]: h["commit"] for h in doc["environments"][0]["hosts"]} == dict.fromkeys(
        ("web-s1", "web-s2", "web-s3", "db-s1"), applied)
    assert doc["parity"]["against"] == "staging" and doc["integration"]["revision"] == "abc123def456"
    page = html.read_text()
    assert 'data-host="db-s1"' in page and '<svg id="topology"' in page   # no plan.json: planned from devbox.yml

    both = cli(project, ["report", "--html", str(html)], env_runs(project, FetchedStamps({})))
    assert_handled(both, 1)                          # "leaky" is refused by the guard: on the page, exit code 1
    assert "not read: leaky" in both.output and "error: leaky: environment" in both.output and "reaches hosts of the production inventory" in html.read_text()

    none = cli(project, ["report", "--no-env", "--json", str(js)], env_runs(project, FetchedStamps({})))
    assert none.exit_code == 0 and json.loads(js.read_text())["environments"] == []


@pytest.mark.parametrize("args, says", [
    ([], "say where to write the report"),
    (["--html", "r.html", "--env", "staging", "--no-env"], "--env and --no-env together"),
    (["--html", "r.html", "--env", "nosuch"], "unknown environment 'nosuch'"),
    (["--html", "r.html", "--env", "dev"], "the report reads named environments"),
])
def test_cli_usage_errors_write_nothing(project, args, says):
    result = cli(project, ["report", *args], env_runs(project, FetchedStamps({})))
    assert_handled(result, 2)
    assert says in result.output and not (project / "r.html").exists()


def test_cli_after_integration_as_ci_runs_it(tmp_path):
    """The call the reference e2e makes after `devbox integration`: no environment, the run's report folder, a
    project with no plan.json (the integration ran in a copy): the result and the 5 VMs are on the page."""
    from provisioner.lab.integration import IntegrationReport, Step, write_reports

    root = copy_reference_project(tmp_path / "ref")
    steps = [Step("up and provision", "setup", True, 600.0), Step("health", "smoke", True, 1.0),
             Step("destroy", "teardown", True, 20.0)]
    write_reports(IntegrationReport(str(root), None, "2026-11-30T23:00:00+00:00", steps, 621.0), root / "report")
    page, data = root / "report" / "report.html", root / "report" / "report.json"
    result = cli(root, ["report", "--no-env", "--integration-report", str(root / "report"), "--html", str(page),
                        "--json", str(data)])
    assert result.exit_code == 0, result.output
    doc = json.loads(data.read_text())
    assert doc["integration"]["ok"] is True and [s["name"] for s in doc["integration"]["steps"]] == [
        "up and provision", "health", "destroy"]
    vms = ("cache-1", "db-primary", "db-replica", "lb-1", "web-1")
    assert sorted(m["name"] for m in doc["topology"]["machines"]) == list(vms)
    html = page.read_text()
    assert all(f'<g class="machine" data-name="{vm}">' in html for vm in vms) and "passed" in html
    assert not (root / ".devbox" / "plan.json").exists()        # read-only: the plan was derived, not written
