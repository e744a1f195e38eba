"""`devbox integration`: the development topology built from the current checkout in an isolated lab, provisioned,
checked by the smoke checks declared in devbox.yml, reported (JUnit XML + JSON) and torn down. CI runs this.

    smoke:
      - name: site answers through the load balancer
        from: web-1                          # the machine the request is made from
        http: http://{lb-1}/health           # {MACHINE} is that machine's private address
        expect_status: 200
        expect_json: {status: ok, db: true}  # every key given must match (nested mappings too)
        wait: 60                             # seconds to keep trying (services may still be starting)

The checkout is copied (tracked and untracked-but-not-ignored files, without .devbox/ and the Vagrantfile) into a
fresh folder, so the developer's own VMs and state are never touched. Everything that talks to the VMs runs inside
the lab's network namespace: outside a lab, this command starts one, runs itself inside it, and tears it down.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from provisioner import JSON_SCHEMA
from provisioner.adapters import process
from provisioner.config.smoke import PLACEHOLDER
from provisioner.environments.stamp import playbook_revision
from provisioner.errors import DevboxError
from provisioner.fsutil import atomic_write

MARKER = "DEVBOX-SMOKE "

# Runs on the machine with its own python3 (every box has it): no curl needed, proxies ignored.
PROBE_SCRIPT = r"""
import json, sys, urllib.error, urllib.request
url, timeout = sys.argv[1], float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url, timeout=timeout) as r:
        status, body = r.status, r.read(65536).decode("utf-8", "replace")
except urllib.error.HTTPError as e:
    status, body = e.code, e.read(65536).decode("utf-8", "replace")
except Exception as e:
    print("DEVBOX-SMOKE " + json.dumps({"error": type(e).__name__ + ": " + str(e)}))
    sys.exit(0)
print("DEVBOX-SMOKE " + json.dumps({"status": status, "body": body}))
"""


# --- the checks, as declared --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SmokeCheck:
    name: str
    machine: str
    http: str
    expect_status: int = 200
    expect_json: Any = None
    wait: float = 60.0


def parse_smoke(raw: object) -> tuple[SmokeCheck, ...]:
    return tuple(SmokeCheck(name=c["name"], machine=c["from"], http=c["http"],
                            expect_status=c.get("expect_status", 200), expect_json=c.get("expect_json"),
                            wait=float(c.get("wait", 60))) for c in (raw or []))


def resolve_url(url: str, addresses: Mapping[str, str]) -> str:
    """``{MACHINE}`` -> the machine's private address; an unknown name is an error naming the known ones."""
    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name not in addresses:
            raise DevboxError(f"smoke check URL {url} names {name!r}, which is not a machine of the plan",
                              f"machines: {', '.join(sorted(addresses))}")
        return addresses[name]
    return PLACEHOLDER.sub(sub, url)


def probe_command(url: str, timeout: float) -> str:
    """The remote command line (one string: ssh hands it to the remote shell)."""
    return shlex.join(["python3", "-c", PROBE_SCRIPT, url, str(timeout)])


def parse_probe_output(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                return json.loads(line[len(MARKER):])
            except ValueError:
                break
    return {"error": "no answer from the probe: " + (stdout.strip().splitlines() or ["(no output)"])[-1][:200]}


def json_mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every place ``actual`` does not hold what ``expected`` says; mappings match as subsets."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path or 'body'}: expected an object, got {json.dumps(actual)[:80]}"]
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{path}{key}: missing")
            else:
                out += json_mismatches(value, actual[key], f"{path}{key}.")
        return out
    if expected != actual:
        return [f"{path.rstrip('.') or 'body'}: expected {json.dumps(expected)}, got {json.dumps(actual)[:80]}"]
    return []


def evaluate(check: SmokeCheck, answer: Mapping) -> str | None:
    """None when ``answer`` (what the probe printed) satisfies ``check``; else why not."""
    if answer.get("error"):
        return str(answer["error"])
    if answer.get("status") != check.expect_status:
        return f"HTTP {answer.get('status')}, expected {check.expect_status}: {str(answer.get('body', ''))[:200]}"
    if check.expect_json is not None:
        try:
            body = json.loads(answer.get("body") or "")
        except ValueError:
            return f"the body is not JSON: {str(answer.get('body', ''))[:200]}"
        problems = json_mismatches(check.expect_json, body)
        if problems:
            return "; ".join(problems)
    return None


# --- the report ------------------------------------------------------------------------------------------------

@dataclass
class Step:
    name: str
    kind: str                 # lab | setup | smoke | teardown
    ok: bool
    seconds: float
    message: str = ""
    detail: str = ""          # output tail, the last answer...


@dataclass
class IntegrationReport:
    project: str
    revision: str | None
    started: str
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def to_json(self) -> dict:
        return {"schema": JSON_SCHEMA, "ok": self.ok, "project": self.project, "revision": self.revision, "started": self.started,
                "seconds": round(self.seconds, 1), "steps": [asdict(s) for s in self.steps]}

    def to_junit(self) -> str:
        suites = ET.Element("testsuites", name="devbox integration", tests=str(len(self.steps)),
                            failures=str(sum(not s.ok for s in self.steps)), time=f"{self.seconds:.1f}")
        suite = ET.SubElement(suites, "testsuite", name="devbox integration", tests=str(len(self.steps)),
                              failures=str(sum(1 for s in self.steps if not s.ok and s.kind == "smoke")),
                              errors=str(sum(1 for s in self.steps if not s.ok and s.kind != "smoke")),
                              time=f"{self.seconds:.1f}", timestamp=self.started)
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="revision", value=self.revision or "unversioned")
        for s in self.steps:
            case = ET.SubElement(suite, "testcase", classname=f"devbox.integration.{s.kind}", name=s.name,
                                 time=f"{s.seconds:.1f}")
            if not s.ok:
                # a smoke check that answered wrongly is a failure; anything that kept the run from getting
                # there (lab, boot, provisioning, teardown) is an error
                tag = "failure" if s.kind == "smoke" else "error"
                element = ET.SubElement(case, tag, message=s.message.splitlines()[0][:500] if s.message else tag)
                element.text = "\n".join(filter(None, (s.message, s.detail)))
            elif s.detail:
                ET.SubElement(case, "system-out").text = s.detail
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_reports(report: IntegrationReport, report_dir: Path) -> tuple[Path, Path]:
    report_dir = Path(report_dir)
    junit, data = report_dir / "integration.xml", report_dir / "integration.json"
    atomic_write(junit, report.to_junit())
    atomic_write(data, json.dumps(report.to_json(), indent=2) + "\n")
    return junit, data


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# --- the run ---------------------------------------------------------------------------------------------------

def copy_checkout(source: Path, target: Path) -> list[str]:
    """The checkout as it is now (tracked + untracked-not-ignored files), without devbox's generated files."""
    listed = process.run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    if listed.ok:
        files = [f for f in listed.stdout.split("\0") if f]
    else:  # not a git checkout: everything but generated files
        files = [str(p.relative_to(source)) for p in Path(source).rglob("*") if p.is_file()]
    skip = (".devbox/", ".vagrant/", ".git/")
    copied = []
    for rel in files:
        if rel.startswith(skip) or rel == "Vagrantfile" or not (source / rel).is_file():
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target / rel)
        copied.append(rel)
    return copied


class Machines(Protocol):
    """What the run needs of the development VMs of one project (the app object has these methods)."""

    def config(self) -> Any: ...
    def load_topology(self) -> Any: ...
    def up(self, names: Sequence[str] = ()) -> Any: ...
    def ssh(self, name: str, command: Sequence[str] = ()) -> Any: ...
    def destroy(self, names: Sequence[str] = ()) -> Any: ...


@dataclass
class IntegrationRun:
    """The steps inside the lab. ``app_factory(project_dir)`` gives the VMs of the copy (real adapters, or fakes)."""

    checkout: Path
    workdir: Path
    app_factory: Callable[[Path], Machines]
    progress: Callable[[str, str], None] = lambda subject, message: None
    run_command: Callable[..., process.ProcessResult] = process.run
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 3.0

    def run(self) -> IntegrationReport:
        started = time.monotonic()
        checkout = Path(self.checkout).resolve()
        rev = playbook_revision(checkout / "devbox.yml")
        report = IntegrationReport(project=str(checkout), revision=rev.describe() if rev.commit else None,
                                   started=now_iso())
        copy_checkout(checkout, self.workdir)
        app = self.app_factory(self.workdir)
        try:
            checks = parse_smoke(app.config().extensions.get("smoke"))
            if self._step(report, "up and provision", "setup", lambda: self._up(app)):
                addresses = {m.name: m.address for m in app.load_topology().machines}
                for check in checks:
                    self._smoke(report, app, check, addresses)
        finally:
            self._step(report, "destroy", "teardown", lambda: app.destroy(()) and "")
            report.seconds = time.monotonic() - started
        return report

    def _up(self, app) -> str:
        result = app.up(())
        prov = result.provision
        hosts = prov.playbook.hosts if prov and prov.playbook else ()
        how = f"; {prov.playbook.strategy.describe()}" if prov and prov.playbook and prov.playbook.strategy.requested else ""
        return f"booted {', '.join(result.booted) or 'nothing'}; provisioned " + \
               ", ".join(f"{h.host} (ok {h.ok}, changed {h.changed})" for h in hosts) + how

    def _step(self, report: IntegrationReport, name: str, kind: str, action: Callable[[], str | None]) -> bool:
        self.progress("integration", name)
        began = time.monotonic()
        try:
            detail = action() or ""
            report.steps.append(Step(name, kind, True, time.monotonic() - began, detail=detail))
            return True
        except DevboxError as exc:
            message = str(exc) + (f"\nhint: {exc.hint}" if exc.hint else "")
            report.steps.append(Step(name, kind, False, time.monotonic() - began, message=message))
            return False
        except Exception as exc:  # a crash must still end up in the report CI reads
            report.steps.append(Step(name, kind, False, time.monotonic() - began,
                                     message=f"{type(exc).__name__}: {exc}"))
            return False

    def _smoke(self, report: IntegrationReport, app, check: SmokeCheck, addresses: Mapping[str, str]) -> None:
        self.progress(check.machine, f"smoke: {check.name}")
        began = time.monotonic()
        try:
            url = resolve_url(check.http, addresses)
            argv = list(app.ssh(check.machine, [probe_command(url, timeout=10)]).argv)
        except DevboxError as exc:
            report.steps.append(Step(check.name, "smoke", False, time.monotonic() - began, message=str(exc)))
            return
        deadline = began + check.wait
        while True:
            result = self.run_command(argv, timeout=60)
            answer = parse_probe_output(result.stdout) if result.ok else {
                "error": f"ssh to {check.machine} exited with {result.returncode}: {result.tail(3)}"}
            problem = evaluate(check, answer)
            if problem is None or time.monotonic() + self.poll_seconds > deadline:
                break
            self.sleep(self.poll_seconds)
        detail = json.dumps({k: v for k, v in answer.items()}, indent=None)[:2000]
        report.steps.append(Step(check.name, "smoke", problem is None, time.monotonic() - began,
                                 message=f"GET {url} from {check.machine}: {problem}" if problem else "",
                                 detail=detail))


def inside_lab(environ: Mapping[str, str]) -> bool:
    """Already in a lab (`devbox lab run`/`exec` set DEVBOX_LAB): VMs are reachable from this process."""
    return bool(environ.get("DEVBOX_LAB"))


def lab_failure_report(project: Path, message: str, seconds: float) -> IntegrationReport:
    report = IntegrationReport(project=str(project), revision=None, started=now_iso(), seconds=seconds)
    report.steps.append(Step("lab", "lab", False, seconds, message=message))
    return report


def devbox_argv(project: Path, report_dir: Path, keep_workdir: bool = False, mitogen: bool = False) -> list[str]:
    """The command the lab runs: this same devbox, inside the lab."""
    import sys

    exe = Path(sys.executable).parent / "devbox"
    argv = [str(exe) if exe.exists() else "devbox", "-C", str(project), "integration", "--report-dir",
            str(report_dir)]
    return argv + (["--keep-workdir"] if keep_workdir else []) + (["--mitogen"] if mitogen else [])


def summary_lines(report: IntegrationReport) -> list[str]:
    lines = []
    for s in report.steps:
        lines.append(f"{'PASS' if s.ok else 'FAIL'} {s.kind:8} {s.name} ({s.seconds:.0f}s)"
                     + (f": {s.message.splitlines()[0]}" if s.message else ""))
    return lines


@dataclass(frozen=True)
class IntegrationOutcome:
    report: IntegrationReport
    junit: Path
    json: Path
    workdir: Path | None = None  # kept with --keep-workdir (inside the lab only)

    @property
    def exit_code(self) -> int:
        return 0 if self.report.ok else 1


def integrate(checkout: Path, report_dir: Path, *, machines_factory: Callable[[Path], Machines],
              start_lab: Callable[[Sequence[str]], Any], progress: Callable[[str, str], None],
              keep_workdir: bool = False, mitogen: bool = False,
              environ: Mapping[str, str] | None = None) -> IntegrationOutcome:
    """Inside a lab: run the steps here, on a copy of ``checkout`` whose VMs ``machines_factory(copy)`` gives.
    Outside: ``start_lab(argv)`` runs this command in a lab (and tears it down)."""
    import os
    import tempfile

    environ = os.environ if environ is None else environ
    report_dir = Path(report_dir).resolve()
    if inside_lab(environ):
        workdir = Path(tempfile.mkdtemp(prefix="devbox-integration-"))
        try:
            run = IntegrationRun(checkout=checkout, workdir=workdir, progress=progress, app_factory=machines_factory)
            report = run.run()
        finally:
            if not keep_workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        junit, data = write_reports(report, report_dir)
        return IntegrationOutcome(report, junit, data, workdir if keep_workdir else None)

    began = time.monotonic()
    json_path = report_dir / "integration.json"
    if json_path.exists():
        json_path.unlink()  # never read last run's verdict as this run's
    try:
        start_lab(devbox_argv(checkout, report_dir, keep_workdir, mitogen=mitogen))
    except DevboxError as exc:
        report = lab_failure_report(checkout, f"the lab did not start: {exc}", time.monotonic() - began)
        junit, data = write_reports(report, report_dir)
        return IntegrationOutcome(report, junit, data)
    if not json_path.exists():
        report = lab_failure_report(checkout, "the run inside the lab ended without writing its report",
                                    time.monotonic() - began)
        junit, data = write_reports(report, report_dir)
        return IntegrationOutcome(report, junit, data)
    raw = json.loads(json_path.read_text())
    report = IntegrationReport(project=raw["project"], revision=raw["revision"], started=raw["started"],
                               steps=[Step(**s) for s in raw["steps"]], seconds=raw["seconds"])
    return IntegrationOutcome(report, report_dir / "integration.xml", json_path)
