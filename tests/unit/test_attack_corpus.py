"""Hostile and broken inputs through the real CLI: each folder under tests/data/attacks/ is one case.

A case folder holds the project as the attacker (or an accident) left it and a ``case.yml``:

    args: [init, -i, inventory]      # devbox's arguments; the command runs with -C and the cwd on a copy of the folder
    exit_code: 1
    message: "host name"             # a fragment of what devbox printed (stdout and stderr), or a list of them
    absent: [Vagrantfile, PWNED]     # files that must not exist afterwards
    canary: MARKER                   # a string no file devbox wrote may contain (the case's own inputs hold it)
    canary_except: [devbox.yml]      # ... except these (where the team asked for the value)
    mode_0600: [.devbox/plan.json]   # files that must be private
    contains: {devbox.yml: "text"}   # files that must hold this text
    parses_to: {devbox.yml: {box: debian/bookworm64}}   # YAML files that must read back to these top-level values
    setup:                           # what git cannot hold, made by the test
      - {fifo: inventory/pipe}
      - {symlink: inventory/loop.yml, to: loop.yml}
    isolate: true                    # run in a subprocess with a memory limit and a timeout (resource attacks)

Every case must end with a message, never a traceback: the CLI's exception is a SystemExit (or none).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provisioner.cli.main import main

ATTACKS = Path(__file__).resolve().parents[1] / "data" / "attacks"
CASES = sorted(p.name for p in ATTACKS.iterdir() if (p / "case.yml").is_file())
VENV_BIN = str(Path(sys.executable).parent)
MEMORY_LIMIT = 1536 * 1024 * 1024   # an isolated case that needs more than this has lost
TIMEOUT = 45

# Runs one case in a child: CliRunner there too, so the exception type is known; prints the outcome as JSON.
_CHILD = r"""
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from click.testing import CliRunner
from provisioner.cli.main import main
result = CliRunner().invoke(main, sys.argv[2:])
exc = result.exception
print(json.dumps({"exit_code": result.exit_code, "output": result.output,
                  "exception": None if exc is None else type(exc).__name__}))
"""


def _setup(project: Path, steps: list[dict]) -> None:
    for step in steps or ():
        if "fifo" in step:
            os.mkfifo(project / step["fifo"])
        elif "symlink" in step:
            (project / step["symlink"]).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(step["to"], project / step["symlink"])
        elif "mkdir" in step:
            (project / step["mkdir"]).mkdir(parents=True)
        else:
            raise AssertionError(f"unknown setup step {step}")


def _run_isolated(project: Path, args: list[str]) -> dict:
    env = dict(os.environ, PATH=VENV_BIN, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[2])] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(MEMORY_LIMIT), *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:   # the child (and whatever it had open, a FIFO included) is killed
        pytest.fail(f"devbox {' '.join(args)} still ran after {TIMEOUT} s")
    assert proc.returncode == 0, f"the case's child died ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.splitlines()[-1])


def _run_in_process(project: Path, args: list[str], monkeypatch) -> dict:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, args)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback
        pytest.fail("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return {"exit_code": result.exit_code, "output": result.output,
            "exception": None if exc is None else type(exc).__name__}


def _project_files(project: Path):
    for path in sorted(project.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


@pytest.mark.parametrize("name", CASES)
def test_attack(name, tmp_path, monkeypatch):
    case = yaml.safe_load((ATTACKS / name / "case.yml").read_text())
    project = tmp_path / name
    shutil.copytree(ATTACKS / name, project, symlinks=True, ignore=shutil.ignore_patterns("case.yml"))
    _setup(project, case.get("setup"))
    monkeypatch.setenv("PATH", VENV_BIN)   # no Vagrant: nothing here may get as far as needing it to refuse
    args = ["-C", str(project), *[str(a) for a in case["args"]]]

    outcome = _run_isolated(project, args) if case.get("isolate") else _run_in_process(project, args, monkeypatch)

    output = outcome["output"]
    assert outcome["exception"] in (None, "SystemExit"), output
    assert "Traceback" not in output
    assert outcome["exit_code"] == case["exit_code"], output
    messages = case.get("message", [])
    for fragment in [messages] if isinstance(messages, str) else messages:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    for rel in case.get("absent", []):
        assert not os.path.lexists(project / rel), f"{rel} was written"
    if case.get("canary"):
        allowed = {project / rel for rel in case.get("canary_except", [])}
        marker = case["canary"].encode()
        given = ATTACKS / name   # the production inputs themselves hold the marker, unchanged
        leaks = [p.relative_to(project).as_posix() for p in _project_files(project)
                 if p not in allowed and marker in p.read_bytes()
                 and not ((given / p.relative_to(project)).is_file()
                          and (given / p.relative_to(project)).read_bytes() == p.read_bytes())]
        assert leaks == [], f"{case['canary']} leaked into {leaks}"
    for rel in case.get("mode_0600", []):
        assert stat.S_IMODE((project / rel).stat().st_mode) == 0o600, rel
    for rel, text in (case.get("contains") or {}).items():
        assert text in (project / rel).read_text(encoding="utf-8"), (rel, text)
    for rel, expected in (case.get("parses_to") or {}).items():
        data = yaml.safe_load((project / rel).read_text(encoding="utf-8"))
        for key, value in expected.items():
            assert data.get(key) == value, (rel, key, data.get(key))


def test_every_case_is_complete():
    """A case folder without case.yml would be skipped silently; a case with unknown keys checks less than meant."""
    known = {"description", "args", "exit_code", "message", "absent", "canary", "canary_except", "mode_0600",
             "parses_to", "setup", "isolate", "contains"}
    for folder in ATTACKS.iterdir():
        assert (folder / "case.yml").is_file(), f"{folder.name} has no case.yml"
        case = yaml.safe_load((folder / "case.yml").read_text())
        assert set(case) <= known and {"args", "exit_code", "description"} <= set(case), folder.name
