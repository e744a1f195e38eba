"""Incremental provisioning on real VMs: after each incremental run, `devbox provision --full` changes nothing.

Two VMs (web-1, db-1) run the fixture roles of tests/data/incremental/project/playbooks (files under /var/tmp,
nothing from the network). For each kind of change the issue names (a template edit, a defaults change, a
group_vars change, a change in a role another depends on, a new role in a play): `devbox provision` runs only
what it planned, on only the VMs concerned, then `devbox provision --full` (with --mitogen, to save time) must
report changed=0 on every host.
"""
from __future__ import annotations

import re
import time

import pytest

from helpers import INCREMENTAL as DATA, add_cache_role, append, write

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
