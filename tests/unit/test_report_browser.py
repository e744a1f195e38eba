"""The reference service's `devbox report` page in a real headless browser (Debian's Chromium, installed by
scripts/setup): it renders (the DOM has the topology picture and a row per staging host), logs nothing to the
console, and a screenshot is taken, at a desktop and at a phone's width.

The page is written by the real CLI from a copy of this repository's reference service: its real plan (the
production inventory read by Ansible's loader), its staging inventory read through the real environment rails
(production guard, pinned keys) with the stamps fetched by a fake runner, an integration report written by
`devbox integration`'s own writer, and a parity result from the real comparison. Chromium opens it from a file://
URL with a new empty profile and every background connection off (this machine's network is closed anyway).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import FetchedStamps, trusted_keys
from helpers import copy_reference_project, git, git_commit
from provisioner.environments.runs import EnvironmentRuns
from provisioner.environments.stamp import Revision, make_stamp

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--hide-scrollbars")
STAGING = ("stg-bastion-01", "stg-lb-01", "stg-web-01", "stg-web-02", "stg-db-01", "stg-db-02", "stg-cache-01")
VMS = ("lb-1", "web-1", "db-primary", "db-replica", "cache-1")


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless Chromium run on ``url`` with a new empty profile; fails the test if Chromium is missing."""
    exe = shutil.which("chromium")
    assert exe, "Chromium is not installed: scripts/setup installs Debian's `chromium` package"
    profile.mkdir(parents=True)
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True,
                          text=True, timeout=180)


def console_lines(stderr: str) -> list[str]:
    """What the page logged to the console (Chromium logs it as ``INFO:CONSOLE``)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def reference_report(root: Path) -> tuple[Path, Path]:
    """The reference service's page and JSON, as `devbox report --env staging` writes them."""
    from provisioner.app import Devbox
    from provisioner.cli import main
    from provisioner.lab.integration import IntegrationReport, Step, write_reports
    from provisioner.parity.compare import HostProfile, Machine, build_report
    from provisioner.parity.report import last_report_json, last_report_path
    from provisioner.parity.scan import Managed

    copy_reference_project(root)
    git_commit(root, ".", message="the reference service")
    applied_old = git(root, "rev-parse", "HEAD").strip()
    for i in range(3):
        (root / "playbooks" / "CHANGES").write_text(f"change {i}\n")
        git_commit(root, "playbooks/CHANGES", message=f"change {i}")
    git(root, "branch", "-M", "main")
    head = git(root, "rev-parse", "HEAD").strip()
    (root / "environments").mkdir()
    (root / "environments" / "staging.known_hosts").write_text("# pinned with devbox trust --env staging\n")

    when = datetime(2026, 11, 30, 16, 20, tzinfo=timezone.utc)
    stamp = lambda commit, **kw: make_stamp(environment="staging", playbook="playbooks/site.yml",  # noqa: E731
                                            revision=Revision(commit, False), user="ana@ci-runner-3", now=when, **kw)
    stamps = {h: stamp(head) for h in STAGING[1:]}
    stamps["stg-web-02"] = stamp(applied_old, limit="stg-web-02")       # behind, and off its group
    fetched = FetchedStamps(stamps)                                       # the bastion: never provisioned by devbox

    steps = [Step("up and provision", "setup", True, 642.3, detail="5 VMs: " + ", ".join(f"{v} (ok 41)" for v in VMS)),
             Step("the service answers through the load balancer with database and cache up", "smoke", True, 2.4),
             Step("destroy", "teardown", True, 21.7)]
    write_reports(IntegrationReport(str(root), head[:12], "2026-11-30T23:02:11+00:00", steps, 666.4),
                  root / "integration-report")
    profile = lambda host, nginx: HostProfile(host, "Debian 12", "6.1.0-27-amd64", "3.11.2",  # noqa: E731
                                              {"nginx": nginx}, {"nginx": "running, enabled"},
                                              frozenset({"tcp/80"}), {}, {}, ("web",), ("common", "web"))
    parity = build_report(against="staging", machines=[Machine("web-1", ("web",))],
                          dev={"web-1": profile("web-1", "1.22.1-9")},
                          ref={"stg-web-01": profile("stg-web-01", "1.22.1-9+deb12u1")},
                          managed=Managed(packages=frozenset({"nginx"}), services=frozenset({"nginx"})))
    last_report_path(root).parent.mkdir(parents=True, exist_ok=True)
    last_report_path(root).write_text(last_report_json(parity, finished_at="2026-11-30T17:05:40+00:00"))

    app = Devbox(project_dir=root)
    app.environment_runs = lambda: EnvironmentRuns(root, runner_factory=fetched.factory,
                                                   host_key_checker=trusted_keys)
    html, data = root / "report.html", root / "report.json"
    result = CliRunner().invoke(main, ["-C", str(root), "report", "--env", "staging", "--html", str(html),
                                       "--json", str(data)], obj=app)
    assert result.exit_code == 0, result.output
    return html, data


def test_the_reference_service_report_renders_in_chromium_without_console_errors(tmp_path):
    html, data = reference_report(tmp_path / "reference")
    doc = json.loads(data.read_text())
    assert {h["host"]: h["behind"] for h in doc["environments"][0]["hosts"]}["stg-web-02"] == 3

    dom = chromium(html.as_uri(), tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert '<svg id="topology"' in dom.stdout
    for vm in VMS:
        assert f'<g class="machine" data-name="{vm}">' in dom.stdout
    rows = re.findall(r'<tr class="host[^"]*" data-host="([^"]+)"', dom.stdout)
    assert sorted(rows) == sorted(STAGING)
    assert re.search(r'<tr class="host warn" data-host="stg-web-02">', dom.stdout)   # off its group, highlighted
    assert "passed" in dom.stdout and "package:nginx" in dom.stdout
    assert console_lines(dom.stderr) == []

    shots = {}
    for name, size in (("desktop", "1100,1500"), ("phone", "390,844")):
        shot = tmp_path / f"report-{name}.png"
        run = chromium(html.as_uri(), tmp_path / f"profile-{name}", f"--window-size={size}", f"--screenshot={shot}")
        assert run.returncode == 0 and shot.is_file(), run.stderr[-3000:]
        assert console_lines(run.stderr) == []
        shots[name] = png_size(shot)
    assert shots == {"desktop": (1100, 1500), "phone": (390, 844)}


def test_the_console_check_sees_a_page_error(tmp_path):
    """The check above can fail: a page that logs an error is caught by the same reading of Chromium's log."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<script>console.error("report broke")</script></body></html>')
    run = chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert run.returncode == 0
    assert any('"report broke"' in line for line in console_lines(run.stderr)), run.stderr[-2000:]
