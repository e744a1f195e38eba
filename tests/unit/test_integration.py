"""`devbox integration`: smoke-check declarations, the real HTTP probe against a loopback server, the reports, and
the run's steps with a Devbox whose VM actions are replaced (the lab e2e test runs the real thing)."""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import assert_handled, git_commit
from provisioner.app import Devbox
from provisioner.config.smoke import validate_smoke
from provisioner.errors import ConfigError, DevboxError
from provisioner.lab.integration import (IntegrationReport, IntegrationRun, SmokeCheck, Step, copy_checkout, evaluate,
                                     integrate, json_mismatches, parse_probe_output, parse_smoke, probe_command,
                                     resolve_url, summary_lines, write_reports)
from provisioner.machines.lifecycle import SshCommand
from provisioner.adapters.process import run as run_process

CHECK = {"name": "health via lb", "from": "web-1", "http": "http://{lb-1}/health", "expect_status": 200,
         "expect_json": {"status": "ok", "db": True}}


# --- declarations ----------------------------------------------------------------------------------------

def test_valid_smoke_checks_parse():
    assert validate_smoke([CHECK]) == []
    (check,) = parse_smoke([CHECK])
    assert check == SmokeCheck("health via lb", "web-1", "http://{lb-1}/health", 200, {"status": "ok", "db": True}, 60.0)


def test_every_smoke_problem_is_reported():
    problems = validate_smoke([{"name": "a", "from": "web-1", "http": "ftp://x", "expect_status": 42, "colour": 1},
                               {"name": "a", "http": "http://x", "wait": -1}, "nope"])
    text = "\n".join(problems)
    for expected in ("`smoke[0].http` must be an http://", "`smoke[0].expect_status` must be an HTTP status",
                     "unknown key `smoke[0].colour`", "`smoke[1].from` is required", "used twice",
                     "`smoke[1].wait` must be a number", "`smoke[2]` must be a mapping"):
        assert expected in text
    assert validate_smoke({"a": 1}) and validate_smoke(None) == []


def test_devbox_yml_smoke_problems_come_with_the_others(tmp_path):
    from provisioner.config.schema import load_config

    (tmp_path / "devbox.yml").write_text("smoke:\n  - {name: x, from: web-1}\n")
    with pytest.raises(ConfigError, match=r"`smoke\[0\].http` is required"):
        load_config(tmp_path / "devbox.yml")


def test_machine_placeholders_become_addresses():
    assert resolve_url("http://{lb-1}:8080/x?{y}", {"lb-1": "192.168.56.11", "y": "z"}) == \
        "http://192.168.56.11:8080/x?z"
    with pytest.raises(DevboxError, match="'lb-2', which is not a machine"):
        resolve_url("http://{lb-2}/", {"lb-1": "192.168.56.11"})


def test_expected_json_is_a_subset_match():
    assert json_mismatches({"a": 1, "b": {"c": True}}, {"a": 1, "b": {"c": True, "d": 2}, "e": 3}) == []
    assert json_mismatches({"a": 1, "b": {"c": True}}, {"a": 2, "b": {}}) == ["a: expected 1, got 2", "b.c: missing"]
    assert json_mismatches({"a": 1}, [1]) == ["body: expected an object, got [1]"]


def test_evaluate_explains_each_way_of_failing():
    check = parse_smoke([CHECK])[0]
    assert evaluate(check, {"status": 200, "body": '{"status": "ok", "db": true}'}) is None
    assert "HTTP 503, expected 200" in evaluate(check, {"status": 503, "body": "degraded"})
    assert "not JSON" in evaluate(check, {"status": 200, "body": "<html>"})
    assert "db: expected true, got false" in evaluate(check, {"status": 200, "body": '{"status": "ok", "db": false}'})
    assert evaluate(check, {"error": "URLError: refused"}) == "URLError: refused"


def test_probe_output_is_found_among_other_lines():
    assert parse_probe_output("motd\nDEVBOX-SMOKE {\"status\": 200, \"body\": \"x\"}\n") == {"status": 200, "body": "x"}
    assert "no answer from the probe: bash: python3: command not found" in \
        parse_probe_output("bash: python3: command not found\n")["error"]


# --- the real probe ---------------------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    answers = {"/health": (200, {"status": "ok", "db": True}), "/down": (503, {"status": "degraded"})}

    def do_GET(self):
        status, body = self.answers.get(self.path, (404, {"error": "no such page"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_probe_survives_a_remote_shell_and_reports_status_and_body(web):
    # ssh hands the command line to the remote user's shell: run it through one here
    out = subprocess.run(["sh", "-c", probe_command(f"http://{web}/health", 5)], capture_output=True, text=True)
    answer = parse_probe_output(out.stdout)
    assert answer["status"] == 200 and json.loads(answer["body"]) == {"status": "ok", "db": True}
    down = parse_probe_output(subprocess.run(["sh", "-c", probe_command(f"http://{web}/down", 5)],
                                             capture_output=True, text=True).stdout)
    assert down["status"] == 503
    closed = parse_probe_output(subprocess.run(["sh", "-c", probe_command("http://127.0.0.1:1/", 2)],
                                               capture_output=True, text=True).stdout)
    assert "Connection refused" in closed["error"] or "URLError" in closed["error"]


# --- the run's steps ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Machine:
    name: str
    address: str


class LocalDevbox(Devbox):
    """The real Devbox; only the VM actions are replaced: `ssh` runs the command here, on the test's loopback."""

    log: list = None
    fail_up: bool = False

    def up(self, names=(), *, provision=True):
        self.log.append("up")
        if self.fail_up:
            raise DevboxError("vagrant up failed for web-1", "see .devbox/logs/vagrant-up.log")

        class Result:
            booted = ("web-1", "lb-1")
            provision = None
        return Result()

    def load_topology(self):
        class Plan:
            machines = (Machine("web-1", "127.0.0.1"), Machine("lb-1", self.lb))
        return Plan()

    def ssh(self, name, command=()):
        self.log.append(f"ssh {name}")
        return SshCommand(("sh", "-c", *command))

    def destroy(self, names=()):
        self.log.append("destroy")
        return True


def make_project(tmp_path: Path, smoke: list) -> Path:
    import yaml

    project = tmp_path / "checkout"
    project.mkdir()
    (project / "devbox.yml").write_text(yaml.safe_dump({"smoke": smoke}))
    (project / "Vagrantfile").write_text("# generated\n")
    (project / ".devbox").mkdir()
    (project / ".devbox" / "state.json").write_text("{}")
    return project


def local_run(tmp_path, project, web, *, fail_up=False):
    log = []

    def factory(workdir):
        app = LocalDevbox(project_dir=workdir)
        app.log, app.fail_up, app.lb = log, fail_up, web
        return app

    run = IntegrationRun(checkout=project, workdir=tmp_path / "work", app_factory=factory, sleep=lambda s: None,
                         poll_seconds=0.01)
    (tmp_path / "work").mkdir()
    return run, log


def test_run_copies_the_checkout_runs_the_checks_and_always_tears_down(tmp_path, web):
    project = make_project(tmp_path, [
        {"name": "health", "from": "web-1", "http": "http://{lb-1}/health", "expect_json": {"status": "ok"}},
        {"name": "down page", "from": "web-1", "http": "http://{lb-1}/down", "wait": 0.05}])
    run, log = local_run(tmp_path, project, web)
    report = run.run()
    assert log == ["up", "ssh web-1", "ssh web-1", "destroy"]
    assert [(s.name, s.ok) for s in report.steps] == [("up and provision", True), ("health", True),
                                                       ("down page", False), ("destroy", True)]
    assert "HTTP 503, expected 200" in report.steps[2].message and not report.ok
    # the copy has the checkout's own files, never its generated ones
    assert (tmp_path / "work" / "devbox.yml").exists()
    assert not (tmp_path / "work" / "Vagrantfile").exists() and not (tmp_path / "work" / ".devbox").exists()


def test_a_failed_up_skips_the_checks_but_not_the_teardown(tmp_path, web):
    project = make_project(tmp_path, [{"name": "health", "from": "web-1", "http": "http://{lb-1}/health"}])
    run, log = local_run(tmp_path, project, web, fail_up=True)
    report = run.run()
    assert log == ["up", "destroy"]
    assert [(s.name, s.ok) for s in report.steps] == [("up and provision", False), ("destroy", True)]
    assert "vagrant up failed for web-1" in report.steps[0].message and "hint: see" in report.steps[0].message


def test_reports_are_junit_and_json(tmp_path):
    report = IntegrationReport(project="/p", revision="abc123", started="2026-11-26T05:00:00+00:00", seconds=12.5,
                               steps=[Step("up and provision", "setup", True, 10.0, detail="booted web-1"),
                                      Step("health", "smoke", False, 2.0, message="HTTP 503, expected 200",
                                           detail='{"status": 503}'),
                                      Step("destroy", "teardown", False, 0.5, message="vagrant destroy failed")])
    junit, data = write_reports(report, tmp_path / "out")
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["health"].find("failure").get("message") == "HTTP 503, expected 200"
    assert cases["destroy"].find("error") is not None and cases["up and provision"].find("failure") is None
    assert suite.find("properties/property").get("value") == "abc123"
    saved = json.loads(data.read_text())
    assert saved["schema"] == 1 and saved["ok"] is False
    assert [s["name"] for s in saved["steps"]] == ["up and provision", "health", "destroy"]
    assert summary_lines(report)[1] == "FAIL smoke    health (2s): HTTP 503, expected 200"


def test_copy_checkout_takes_tracked_and_untracked_files_but_not_ignored_or_generated(tmp_path):
    src = tmp_path / "src"
    (src / "playbooks").mkdir(parents=True)
    (src / ".gitignore").write_text("*.log\n.devbox/\n")
    (src / "devbox.yml").write_text("{}\n")
    git_commit(src, ".", message="x", author=("t", "t@example.invalid"))
    (src / "playbooks" / "new.yml").write_text("[]\n")     # untracked, not ignored: part of "the checkout now"
    (src / "debug.log").write_text("x\n")                   # ignored
    (src / ".devbox").mkdir()
    (src / ".devbox" / "secrets.yml").write_text("x: y\n")
    copied = copy_checkout(src, tmp_path / "dst")
    assert sorted(copied) == [".gitignore", "devbox.yml", "playbooks/new.yml"]


# --- outside a lab: the lab runs this command ---------------------------------------------------------------

class FakeLab:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.argv = None

    def run(self, argv):
        self.argv = argv
        return self.behaviour(argv)


class LabDevbox(Devbox):
    the_lab: FakeLab = None

    def lab(self, name=None):
        return self.the_lab


def integrate_outside(app: LabDevbox, report_dir: Path, **options):
    """``integrate`` wired as the app wires it, outside a lab (``environ`` without DEVBOX_LAB)."""
    return integrate(Path(app.project_dir), report_dir, machines_factory=type(app).create,
                     start_lab=lambda argv: app.lab().run(argv), progress=app.progress, environ={}, **options)


def test_outside_a_lab_the_lab_runs_the_inner_command_and_its_report_is_read(tmp_path):
    def inner(argv):  # what `devbox integration` inside the lab does: write the reports, exit with the verdict
        report = IntegrationReport("/p", None, "t", [Step("health", "smoke", True, 1.0)], 1.0)
        write_reports(report, Path(argv[argv.index("--report-dir") + 1]))
        return 0

    app = LabDevbox(project_dir=tmp_path)
    app.the_lab = FakeLab(inner)
    outcome = integrate_outside(app, tmp_path / "reports")
    assert outcome.exit_code == 0 and outcome.report.steps[0].name == "health"
    assert app.the_lab.argv[1:5] == ["-C", str(tmp_path), "integration", "--report-dir"]
    assert "--mitogen" not in app.the_lab.argv
    integrate_outside(app, tmp_path / "reports", mitogen=True)  # the opt-in reaches the run inside the lab
    assert app.the_lab.argv[-1] == "--mitogen"


def test_a_lab_that_fails_to_start_still_leaves_a_failing_report(tmp_path):
    def broken(argv):
        raise DevboxError("libvirtd did not answer")

    app = LabDevbox(project_dir=tmp_path)
    app.the_lab = FakeLab(broken)
    outcome = integrate_outside(app, tmp_path / "reports")
    assert outcome.exit_code == 1 and "libvirtd did not answer" in outcome.report.steps[0].message
    assert ET.parse(outcome.junit).getroot().find("testsuite/testcase/error") is not None

    app.the_lab = FakeLab(lambda argv: 1)  # the inner run crashed before writing anything
    outcome = integrate_outside(app, tmp_path / "reports")
    assert outcome.exit_code == 1 and "without writing its report" in outcome.report.steps[0].message


def test_cli_prints_the_verdict_and_exits_with_it(tmp_path):
    from click.testing import CliRunner

    from provisioner.cli.main import main

    def broken(argv):
        raise DevboxError("the lab needs root")

    app = LabDevbox(project_dir=tmp_path)
    app.the_lab = FakeLab(broken)
    result = CliRunner().invoke(main, ["-C", str(tmp_path), "integration", "--report-dir", str(tmp_path / "r")],
                                obj=app, env={"DEVBOX_LAB": ""})
    assert_handled(result, 1)
    assert "FAIL lab      lab (0s): the lab did not start: the lab needs root" in result.output
    assert "integration: FAILED" in result.output and (tmp_path / "r" / "integration.xml").exists()
