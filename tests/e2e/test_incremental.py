"""Incremental provisioning on real VMs: after each incremental run, `devbox provision --full` changes nothing.

Two VMs (web-1, db-1) run the fixture roles of tests/data/incremental/project/playbooks (files under /var/tmp,
nothing from the network). For each kind of change the issue names (a template edit, a defaults change, a
group_vars change, a change in a role another depends on, a new role in a play): `devbox provision` runs only
what it planned, on only the VMs concerned, then `devbox provision --full` (with --mitogen, to save time) must
report changed=0 on every host.

Then, on the same converged VMs, snapshots and reset (issue 18): save a snapshot, break web-1 (remove a package,
stop a service, delete a file a role wrote), restore: all back, and devbox knows nothing is pending; change one
template: `devbox provision` runs only that role's VM; `devbox reset` goes back to the automatic `converged`
snapshot (kept by the last `--full` run) and applies only what changed since.
"""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from helpers import INCREMENTAL as DATA, add_cache_role, append, write
from provisioner.adapters.vagrant_driver import parse_snapshot_list

pytestmark = pytest.mark.lab

VMS = ("web-1", "db-1")
ROW = re.compile(r"^\W*(web-1|db-1)\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)", re.M)  # host, ok, changed, failed, unreachable


def recap(output: str) -> dict[str, dict[str, int]]:
    """The per-host table devbox prints after a run -> {host: {ok, changed, failed, unreachable}}."""
    return {m[1]: dict(zip(("ok", "changed", "failed", "unreachable"), map(int, m.groups()[1:])))
            for m in ROW.finditer(output)}


# (what changes, the edit, the command that applies it, the VMs the incremental run may touch)
CHANGES = [
    ("template edit", lambda p: append(p / "playbooks/roles/webapp/templates/app.conf.j2", "# tuned\n"),
     "provision", {"web-1"}),
    ("defaults change", lambda p: write(p / "playbooks/roles/db/defaults/main.yml", "db_unused_default: 2\n"),
     "provision", {"db-1"}),
    # a production group_vars edit reaches the development inventory's copy when `devbox init` renders again
    ("group_vars change", lambda p: write(p / "prod/group_vars/db.yml", "db_name: other\n"), "init+provision",
     {"db-1"}),
    ("change in a dependency", lambda p: write(p / "playbooks/roles/base/files/base.txt", "base v2\n"),
     "provision", {"web-1"}),
    ("new role in a play", add_cache_role, "provision", {"db-1"}),
]


def test_full_run_after_each_incremental_run_changes_nothing(devbox_project, timings):
    p = devbox_project
    p.copy_in(DATA / "e2e" / "prod", "prod")
    p.copy_in(DATA / "e2e" / "devbox.yml", "devbox.yml")
    p.copy_in(DATA / "project" / "playbooks", "playbooks")
    p.commit(".")

    p.devbox("init")
    with timings.measure("devbox up (2 VMs, fresh, everything applied)"):
        first = p.devbox("up")
    assert set(recap(first.stdout)) == set(VMS), first.stdout

    with timings.measure("devbox provision (no change)"):
        started = time.monotonic()
        idle = p.devbox("provision")
        idle_seconds = time.monotonic() - started
    assert "nothing changed since the last successful run: no VM contacted" in idle.stdout, idle.stdout
    assert recap(idle.stdout) == {}

    for kind, edit, command, touched in CHANGES:
        edit(p.path)
        with timings.measure(f"{kind}: devbox {command}"):
            for step in command.split("+"):
                out = p.devbox(step)
        ran = recap(out.stdout)
        assert set(ran) == touched, f"{kind}: expected a run on {touched}\n{out.stdout}"
        assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in ran.values()), out.stdout
        # the check run uses Mitogen (opt-in, about twice as fast here); the incremental runs under test use
        # Ansible's default strategy, like every run the lifecycle scenario makes
        with timings.measure(f"{kind}: devbox provision --full --mitogen"):
            full = p.devbox("provision", "--full", "--mitogen")
        assert "strategy: mitogen_linear" in full.stdout, full.stdout
        counts = recap(full.stdout)
        assert set(counts) == set(VMS), full.stdout
        assert {h: c["changed"] for h, c in counts.items()} == {h: 0 for h in VMS}, \
            f"{kind}: the incremental run skipped work that the full run then did\n{out.stdout}\n{full.stdout}"
    # printed, not asserted: a wall-clock limit fails under load for reasons that are not devbox's. The target
    # (under 3 s) is measured by bench/provision_bench.py's "no change" case, over alternating samples.
    print(f"[timing] devbox provision with nothing changed: {idle_seconds:.2f} s")

    snapshots_and_reset(p, timings)


BREAK = ("sudo apt-get remove -y -q python3-apt >/dev/null && "
         "sudo systemctl stop systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket && "
         "rm /var/tmp/devbox-incremental/web-1/app.conf")
CHECK = ("dpkg-query -W -f='${Status}' python3-apt; echo; systemctl is-active systemd-udevd; "
         "test -f /var/tmp/devbox-incremental/web-1/app.conf && echo app.conf")


def snapshots_and_reset(p, timings):
    listed = json.loads(p.devbox("snapshot", "list", "--json").stdout)["snapshots"]
    assert {(r["snapshot"], r["vm"], r["state"]) for r in listed} == {("converged", n, "running") for n in VMS}, listed
    with timings.measure("devbox snapshot save (2 running VMs)"):
        p.devbox("snapshot", "save", "before-break")
    held = subprocess.run(["vagrant", "snapshot", "list", "--machine-readable"], cwd=p.path, capture_output=True,
                          text=True, timeout=300)
    assert {n: set(s) for n, s in parse_snapshot_list(held.stdout).items()} == {
        n: {"converged", "before-break"} for n in VMS}, held.stdout

    p.devbox("ssh", "web-1", "-c", BREAK)
    broken = p.devbox("ssh", "web-1", "-c", CHECK, check=False).stdout
    assert "install ok installed" not in broken and "inactive" in broken and "app.conf" not in broken, broken

    with timings.measure("devbox snapshot restore (2 VMs)"):
        restored = p.devbox("snapshot", "restore", "before-break")
    assert "snapshot before-break restored: web-1, db-1" in restored.stdout, restored.stdout
    healthy = p.devbox("ssh", "web-1", "-c", CHECK).stdout.split()
    assert healthy == ["install", "ok", "installed", "active", "app.conf"], healthy
    machines = {m["name"]: m for m in json.loads(p.devbox("status", "--json").stdout)["machines"]}
    assert {n: (m["state"], m["ssh"], m["pending"]["runs"]) for n, m in machines.items()} == {
        n: ("running", True, "nothing") for n in VMS}, machines
    idle = p.devbox("provision")
    assert "nothing changed since the last successful run: no VM contacted" in idle.stdout, idle.stdout

    # one template changed after the restore: only that role's VM runs
    append(p.path / "playbooks/roles/webapp/templates/app.conf.j2", "# after the restore\n")
    with timings.measure("devbox provision after a restore (one template)"):
        out = p.devbox("provision")
    assert set(recap(out.stdout)) == {"web-1"} and "webapp" in out.stdout, out.stdout

    # reset: back to `converged` (the last --full run, before this template edit), then only the edit again
    with timings.measure("devbox reset (2 VMs: restore converged, then what changed since)"):
        reset = p.devbox("reset")
    assert "snapshot converged restored: web-1, db-1" in reset.stdout, reset.stdout
    ran = recap(reset.stdout)
    assert set(ran) == {"web-1"} and ran["web-1"]["failed"] == 0, reset.stdout
    with timings.measure("devbox destroy --yes (2 VMs)"):
        p.devbox("destroy", "--yes")
    assert json.loads(p.devbox("snapshot", "list", "--json").stdout)["snapshots"] == []
