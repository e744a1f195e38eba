"""Writing the generated files: under the project lock, and as one set (plan.json last, with the digests of the
others), so neither a concurrent command nor a crash half-way leaves a Vagrantfile of one topology beside the
plan and inventory of another that `up` or `provision` would then use."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.app import Devbox
from provisioner.errors import DevboxError
from provisioner.machines import lifecycle
from provisioner.plan import planning
from provisioner.plan.planning import generated_set_problem
from provisioner.project.context import Project
from provisioner.project.lock import ProjectLock

ROOT = Path(__file__).resolve().parents[2]
SMALL = "[web]\nweb1 ansible_host=10.0.0.1\n[db]\ndb1 ansible_host=10.0.0.9\n"
LARGE = ("[web]\nweb1 ansible_host=10.0.0.1\n[cache]\ncache1 ansible_host=10.0.0.5\n[queue]\nq1 ansible_host=10.0.0.6\n"
         "[db]\ndb1 ansible_host=10.0.0.9\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no vagrant: validation skipped (a real code path)
    (tmp_path / "empty-bin").mkdir()
    root = tmp_path / "project"
    (root / "prod").mkdir(parents=True)
    (root / "prod" / "small.ini").write_text(SMALL)
    (root / "prod" / "large.ini").write_text(LARGE)
    return root


def vagrantfile_machines(root: Path) -> list[str]:
    return sorted(re.findall(r"vm\.define '([^']+)'", (root / "Vagrantfile").read_text()))


def plan_machines(root: Path) -> list[str]:
    return sorted(m["name"] for m in json.loads((root / ".devbox" / "plan.json").read_text())["machines"])


def inventory_machines(root: Path) -> list[str]:
    text = (root / ".devbox" / "inventory" / "hosts.yml").read_text()
    return sorted(set(re.findall(r"^\s+((?:web|db|cache|queue)-[\w-]+):", text, re.M)))


def consistent(root: Path) -> bool:
    return vagrantfile_machines(root) == plan_machines(root) == inventory_machines(root)


def bare_project(root: Path) -> Project:
    # nothing here reaches Vagrant, Ansible or SSH: the checks come before any of them
    return Project(root=root, vagrant=None, playbooks=None, ssh_probe=None)


def test_a_render_records_its_set_and_any_change_to_it_is_seen(project):
    Devbox(project_dir=project).init(inventory=project / "prod" / "small.ini")
    assert generated_set_problem(project) is None and consistent(project)
    generation = json.loads((project / ".devbox" / "plan.json").read_text())["generation"]
    assert set(generation["files"]) >= {"Vagrantfile", ".devbox/inventory/hosts.yml", ".devbox/secrets.yml"}
    assert "devbox.yml" not in generation["files"]   # the team's file: theirs to edit
    (project / ".devbox" / "inventory" / "group_vars").mkdir(exist_ok=True)
    (project / ".devbox" / "inventory" / "group_vars" / "extra.yml").write_text("a: 1\n")
    assert "extra.yml is not part of the set" in generated_set_problem(project)
    os.unlink(project / ".devbox" / "inventory" / "group_vars" / "extra.yml")
    (project / "Vagrantfile").write_text("# edited\n")
    assert "Vagrantfile is not the one written with plan.json" in generated_set_problem(project)


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3, 4])
def test_a_crash_between_the_writes_is_never_used_as_a_set(project, monkeypatch, crash_after):
    app = Devbox(project_dir=project)
    app.init(inventory=project / "prod" / "small.ini")
    real_write = planning.write_if_changed
    calls = []

    def crashing(path, content, **kwargs):
        if len(calls) == crash_after:
            raise KeyboardInterrupt("killed while writing")   # what a kill leaves: some files new, the rest old
        calls.append(path)
        return real_write(path, content, **kwargs)

    monkeypatch.setattr(planning, "write_if_changed", crashing)
    with pytest.raises(KeyboardInterrupt):
        app.init(inventory=project / "prod" / "large.ini", force=True)
    monkeypatch.setattr(planning, "write_if_changed", real_write)
    # the new Vagrantfile beside the old plan.json (and some inventory files of either)
    assert vagrantfile_machines(project) != plan_machines(project)
    assert generated_set_problem(project) is not None
    # provision refuses the mixed set before doing anything
    with pytest.raises(DevboxError, match="not one set"):
        lifecycle.provision(bare_project(project))
    # up's first step renders it again, from devbox.yml as it is now
    topology, rendered = lifecycle.ensure_rendered(bare_project(project))
    assert rendered and generated_set_problem(project) is None and consistent(project)
    assert sorted(m.name for m in topology.machines) == plan_machines(project)
    assert lifecycle.ensure_rendered(bare_project(project))[1] is False   # and then leaves it alone


LOOP = """
import sys
from pathlib import Path
from provisioner.app import Devbox
root = Path(sys.argv[1])
app = Devbox(project_dir=root)
print("ready", flush=True)
i = 0
while True:
    app.init(inventory=root / "prod" / ("large.ini" if i % 2 else "small.ini"), force=True)
    i += 1
"""


def test_kill_9_during_init_force_never_leaves_a_set_that_is_used_mixed(project):
    Devbox(project_dir=project).init(inventory=project / "prod" / "small.ini")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(16)
    deadline = time.monotonic() + 60
    mixed = 0
    for _ in range(6):
        if time.monotonic() > deadline:
            break
        child = subprocess.Popen([sys.executable, "-c", LOOP, str(project)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.05, 0.8))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        problem = generated_set_problem(project)
        if problem is None:
            assert consistent(project), "a set that passes the check must be one topology"
        else:
            mixed += 1
            with pytest.raises(DevboxError, match="not one set"):
                lifecycle.provision(bare_project(project))
            lifecycle.ensure_rendered(bare_project(project))
            assert generated_set_problem(project) is None and consistent(project)
        # the kernel dropped the killed process's lock
        ProjectLock(project / ".devbox" / "lock", "test").acquire().release()


DEVBOX = [sys.executable, "-c", "from provisioner.cli import main; main(prog_name='devbox')"]


def test_init_force_does_not_replace_the_files_while_another_command_holds_the_lock(project):
    Devbox(project_dir=project).init(inventory=project / "prod" / "small.ini")
    before = {p: p.read_bytes() for p in [project / "Vagrantfile", project / ".devbox" / "plan.json"]}
    code = ("import sys, time; from provisioner.project.lock import ProjectLock; "
            f"l = ProjectLock({str(project / '.devbox' / 'lock')!r}, 'devbox provision').acquire(); "
            "print('held', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = subprocess.run([*DEVBOX, "-C", str(project), "init", "--force", "--inventory",
                               str(project / "prod" / "large.ini")], env=env, capture_output=True, text=True,
                              timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, proc.stderr
    assert f"pid {holder.pid}, `devbox provision`" in proc.stderr and "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_concurrent_fresh_inits_do_not_crash_and_leave_one_set(project):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([*DEVBOX, "-C", str(project), "init", "--inventory",
                               str(project / "prod" / ("large.ini" if i % 2 else "small.ini"))],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    for rc, err in results:
        assert "Traceback" not in err and "FileNotFoundError" not in err, err
        assert rc == 0 or (rc == 1 and "another devbox command holds" in err), err
    assert any(rc == 0 for rc, _ in results)
    assert generated_set_problem(project) is None and consistent(project)
    assert not list(project.rglob(".*.tmp"))


def test_workstation_memory_from_meminfo(tmp_path):
    from provisioner.plan.planning import workstation_memory
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683652 kB\nMemFree:         1183028 kB\n")
    assert workstation_memory(meminfo) == (24105, 24105 - 24105 // 4)   # a quarter kept for the host
    meminfo.write_text("MemTotal:        4027144 kB\n")
    assert workstation_memory(meminfo) == (3932, 3932 - 2048)           # at least 2 GiB kept for the host
    meminfo.write_text("nothing here\n")
    assert workstation_memory(meminfo) is None
    assert workstation_memory(tmp_path / "missing") is None
    assert workstation_memory()[0] > 0   # this machine's own


def test_too_big_for_this_machine_warned_unless_a_remote_hypervisor(tmp_path):
    from provisioner.config.schema import parse_config
    from provisioner.plan.inventory import load_inventory
    from provisioner.plan.planning import with_budget
    from provisioner.plan.topology import derive_topology
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("".join(f"[g{i}]\nh{i}\n" for i in range(12)))
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        8388608 kB\n")   # 8 GiB: 6 GiB for VMs
    inv = load_inventory(inventory)
    rules = parse_config({"defaults": {"memory": 1024}}, None)
    topology = with_budget(inv, rules, derive_topology(inv, rules), meminfo)
    assert topology.warnings[0].startswith("too big for this machine (8192 MiB of memory, less room for the host): "
                                           "the plan needs 12 VMs and 12288 MiB of memory, more than 6144 MiB")
    remote = parse_config({"defaults": {"memory": 1024}, "libvirt": {"uri": "qemu+ssh://hv/system"}}, None)
    assert not with_budget(inv, remote, derive_topology(inv, remote), meminfo).warnings
