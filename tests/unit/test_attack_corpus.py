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


# --- the escaping itself, on values the corpus cannot reach through a valid inventory ----------------------------

HOSTILE = ["primary\nbox: evil/box\nlibvirt:\n  uri: qemu+ssh://attacker.example/system", "a: b", "x # y", "#",
           "- item",
           "'single'", '"double"', "{{ lookup('pipe', 'id') }}", "{% raw %}", "é ü 😀", "line\u2028sep", "nul\x00",
           "\ttab", "*alias", "&anchor", "!!python/object", "yes", "~", "", "   ", "1e3", "0x1F", "@at", "`tick`"]


@pytest.mark.parametrize("value", HOSTILE)
def test_yaml_scalar_reads_back_as_the_same_value_on_one_line(value):
    from provisioner.plan.planning import yaml_scalar

    text = yaml_scalar(value)
    assert "\n" not in text
    assert yaml.safe_load(f"key: {text}  # a comment after it\nnext: 1\n") == {"key": value, "next": 1}


def test_proposed_devbox_yml_parses_back_to_the_intended_data(tmp_path):
    """config_file_text with hostile group names and role values: exactly the proposed rules, nothing added."""
    from provisioner.config.schema import Config
    from provisioner.plan.inventory import Group, Host, Inventory
    from provisioner.plan.planning import config_file_text

    values = ["primary\nbox: evil/box\n#", "replica: yes # {{ x }}", "standby'\"é"]
    hosts = {f"db{i}": Host(f"db{i}", ("db",), frozenset({"db"}), {"pg_role": v}) for i, v in enumerate(values)}
    groups = {"all": Group("all", ("db",), (), {}), "db": Group("db", (), tuple(hosts), {})}
    inv = Inventory(source=tmp_path / "inventory: x\nbox: y", hosts=hosts, groups=groups)
    data = yaml.safe_load(config_file_text(inv, tmp_path, Config()))
    assert data["groups"] == {"db": {"keep_distinct": "pg_role"}}
    assert data["inventory"] == "inventory: x\nbox: y"
    assert data["box"] == Config().box and "libvirt" not in data


def test_vagrantfile_comment_holds_no_code():
    """The `# stands for:` comment of a VM whose production names carry a newline stays one comment line."""
    from provisioner.config.schema import Config
    from provisioner.plan.render import DEFAULT_TEMPLATE, render_vagrantfile
    from provisioner.plan.topology import MachineSpec, Topology

    machine = MachineSpec(name="web-1", hostname="web-1", groups=("web",), memory=512, cpus=1, address="192.168.56.11",
                          represents=("web-01\nsystem('touch PWNED')\n#", "x\r\u2028y"))
    text = render_vagrantfile(Topology(machines=(machine,)), Config(), DEFAULT_TEMPLATE)
    stands_for = [line for line in text.splitlines() if "stands for" in line]
    assert len(stands_for) == 1 and "system(" in stands_for[0]
    assert not any(line.lstrip().startswith("system(") for line in text.splitlines())
    assert "\r" not in text and "\u2028" not in text


def _deny_reading(path: Path, monkeypatch) -> None:
    """chmod 000 stops everyone but root, and the tests run as root: then opening ``path`` for reading fails
    the way it does for a user without permission (every open in this process goes through ``io.open``)."""
    import builtins
    import io

    real_open, denied = io.open, os.path.realpath(path)

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) == denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(builtins, "open", guarded_open)


@pytest.mark.parametrize("unreadable", ["inventory/hosts.ini", "inventory/group_vars/all.yml", "devbox.yml"])
def test_unreadable_file_is_named(tmp_path, monkeypatch, unreadable):
    project = tmp_path / "p"
    for rel, text in {"inventory/hosts.ini": "[web]\nweb1\n", "inventory/group_vars/all.yml": "a: 1\n",
                      "devbox.yml": "inventory: inventory\n"}.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    (project / unreadable).chmod(0)
    if os.geteuid() == 0:
        _deny_reading(project / unreadable, monkeypatch)
    monkeypatch.setenv("PATH", VENV_BIN)
    outcome = _run_in_process(project, ["-C", str(project), "init"], monkeypatch)
    assert outcome["exit_code"] == 1 and Path(unreadable).name in outcome["output"], outcome["output"]
    assert "Permission denied" in outcome["output"] or "cannot be read" in outcome["output"]


@pytest.mark.vagrant
def test_vagrant_validate_runs_no_code_from_a_host_name(tmp_path):
    """The exploit itself: Vagrant loads the Vagrantfile rendered for a hostile name, and nothing runs."""
    from provisioner.adapters.vagrant_driver import validate_vagrantfile
    from provisioner.config.schema import Config
    from provisioner.plan.render import DEFAULT_TEMPLATE, install_vagrantfile, render_vagrantfile
    from provisioner.plan.topology import MachineSpec, Topology

    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    pwned = tmp_path / "PWNED"
    machine = MachineSpec(name="web-1", hostname="web-1", groups=("web",), memory=512, cpus=1, address="192.168.56.11",
                          represents=(f"web-01\nsystem('touch {pwned}')\n#'",))
    install_vagrantfile(tmp_path, render_vagrantfile(Topology(machines=(machine,)), Config(), DEFAULT_TEMPLATE),
                        validate_vagrantfile)
    assert not pwned.exists()
