#!/usr/bin/env python3
"""`devbox provision` after a one-file change in one role, against a full run of the same playbook.

Runs in the lab (VMs are real): `devbox lab run -- .venv/bin/python bench/provision_bench.py [--source .]`.
The project (devbox.yml and the folders its `inventory` and `playbook` are in) is copied to a work folder, so
the bench's edits never touch the source tree; there it runs `devbox init` and `devbox up` (timed: boot and the
first full provisioning), then the three cases alternate (full, one file, no change, full, ...) for --repeat
rounds:

* full:        `ansible-playbook -i .devbox/inventory <playbook>`, what `vagrant provision` or a plain run does,
               with the same SSH settings devbox uses (ControlPersist, pipelining), so only the work differs;
* one file:    a comment line added to one file of one role (a Jinja comment in a template: the rendered file
               stays the same), then `devbox provision`, which runs that role on the VMs that have it;
* no change:   `devbox provision` again, which must find nothing to do and contact no VM.

Every timed command is a whole process, start-up included, as a user would run it. It prints the README's table
as Markdown: median (min–max) per case, the ratio full run ÷ case (baseline ÷ devbox: above 1 means devbox is
faster), and the targets (one file at least 5 times faster than the full run, no change under 3 s), a missed one
as MISSED. The VMs are destroyed at the end unless --keep.

    .venv/bin/python bench/provision_bench.py [--source DIR] [--workdir DIR] [--keep] [--role webapp]
        [--file templates/x.j2] [--repeat 3] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (Spread, alternate, commit_snapshot, devbox_argv, machine_line, markdown_table,  # noqa: E402
                      ratio, ratio_cell, run_logged, tail, target_cell)
from provisioner.adapters import process  # noqa: E402
from provisioner.project.paths import ProjectPaths  # noqa: E402
from provisioner.project.context import load_rules  # noqa: E402
from provisioner.adapters.playbook_runner import ansible_env  # noqa: E402

BIN = Path(sys.executable).parent
ONE_FILE_TARGET = 5.0      # at least this many times faster than the full run (issue 5)
NO_CHANGE_TARGET = 3.0     # seconds


def table(times: dict[str, list[float]], edited: str) -> str:
    """The README's table: median (min–max) per case, full run ÷ case, the targets."""
    full = Spread.of(times["full"])
    rows = []
    for case, label in (("full", "full run: `ansible-playbook -i .devbox/inventory` the playbook (every VM, every "
                                 "task)"),
                        ("one file", f"one file: `{edited}` edited, then `devbox provision`"),
                        ("no change", "no change: `devbox provision` (contacts no VM)")):
        sp = Spread.of(times[case])
        r = ratio(full, sp)
        met = None if case == "full" else (r >= ONE_FILE_TARGET if case == "one file"
                                           else sp.median < NO_CHANGE_TARGET)
        rows.append([label, sp.cell(2 if sp.median < 10 else 1), ratio_cell(r, 1), target_cell(met)])
    return markdown_table(
        ["case", "time", "full run ÷ case", "target"], rows,
        title=f"provision: one-file change and no change against a full run (targets: one file >= "
              f"{ONE_FILE_TARGET:.0f}x, no change < {NO_CHANGE_TARGET:.0f} s)",
        notes=[f"Median (min–max) of {len(times['full'])} alternating rounds (full, one file, no change); ratio = "
               "baseline (the full run) ÷ devbox's case, on medians: above 1 means devbox is faster."])


def timed(argv: list[str], *, cwd: Path, env: dict | None = None, log: Path, expect: str | None = None) -> float:
    seconds, rc = run_logged(argv, cwd=cwd, env=env, log=log)
    if rc != 0:
        raise SystemExit(f"`{' '.join(argv)}` exited with {rc}:\n{tail(log)}\n(full log: {log})")
    if expect is not None and expect not in log.read_text(errors="replace"):
        raise SystemExit(f"`{' '.join(argv)}` did not say {expect!r}; see {log}")
    return seconds


def baseline_env(*, known_hosts: Path, log_path: Path) -> dict[str, str]:
    """The full run's environment: the caller's (the lab's `DEVBOX_APT_PROXY`, which the playbook's `apt_proxy`
    reads with an env lookup, HOME, ...), with the Ansible settings devbox uses on top. Ansible's settings alone
    left `apt_proxy` empty: the baseline then took the package proxy off the VMs and hung on `apt update`."""
    return {**os.environ, **ansible_env(known_hosts=known_hosts, log_path=log_path)}


def role_file(playbook: Path, role: str, name: str | None) -> Path:
    root = playbook.parent / "roles" / role
    if name:
        return root / name
    for pattern in ("templates/*.j2", "tasks/main.yml"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    raise SystemExit(f"role {role} has no template and no tasks/main.yml under {root}")


def touch_comment(path: Path, original: str, n: int) -> None:
    comment = f"{{# devbox bench {n} #}}\n" if path.suffix == ".j2" else f"# devbox bench {n}\n"
    path.write_text(original + comment)


def copy_project(source: Path, workdir: Path) -> Path:
    """devbox.yml and the top-level folders holding its inventory and playbook, in a fresh git repository."""
    rules = load_rules(source, None)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rules.path, workdir / "devbox.yml")
    for ref in {str(r) for r in (rules.inventory, rules.playbook) if r}:
        top = Path(ref).parts[0]
        if not (workdir / top).exists():
            shutil.copytree(source / top, workdir / top, symlinks=True)
    commit_snapshot(workdir, "bench copy")
    return workdir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path("."), help="project to copy (has devbox.yml)")
    parser.add_argument("--workdir", type=Path, help="where to copy it (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end")
    parser.add_argument("--role", default="webapp")
    parser.add_argument("--file", help="file of the role to edit, relative to the role (default: first template)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    project = copy_project(args.source.resolve(),
                           (args.workdir or Path(tempfile.mkdtemp(prefix="devbox-bench-"))).resolve())
    paths = ProjectPaths(project)
    rules = load_rules(project, None)
    playbook = (rules.path.parent if rules.path else project) / rules.playbook
    logs = project / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    cli = devbox_argv(BIN) + ["-C", str(project)]
    devbox = cli + ["provision"]
    full_ansible = [str(BIN / "ansible-playbook"), "-i", str(paths.inventory), str(playbook)]
    env = baseline_env(known_hosts=paths.known_hosts, log_path=logs / "ansible.log")
    target = role_file(playbook, args.role, args.file)
    original = target.read_text()
    print(f"bench project: {project}", file=sys.stderr)
    times: dict[str, list[float]] = {"full": [], "one file": [], "no change": []}
    rounds = 0

    def full() -> float:
        nonlocal rounds
        rounds += 1
        return timed(full_ansible, cwd=playbook.parent, env=env, log=logs / "full.log")

    def one_file() -> float:
        touch_comment(target, original, rounds)
        return timed(devbox, cwd=project, log=logs / "one-file.log", expect="what ran")

    def no_change() -> float:
        seconds = timed(devbox, cwd=project, log=logs / "no-change.log", expect="nothing changed")
        print(f"round {rounds}: done", file=sys.stderr)
        return seconds

    try:
        timed(cli + ["init"], cwd=project, log=logs / "init.log")
        first_up = timed(cli + ["up"], cwd=project, log=logs / "up.log")
        print(f"devbox up (boot + first full provisioning): {first_up:.0f}s", file=sys.stderr)
        times["full"], times["one file"], times["no change"] = alternate([full, one_file, no_change], args.repeat)
    finally:
        target.write_text(original)
        if not args.keep:
            process.run(cli + ["destroy", "--yes"], cwd=project, log_path=logs / "destroy.log")

    edited = str(target.relative_to(playbook.parent))
    print(f"Machine: {machine_line()}.\n")
    print(table(times, edited))
    print(f"\n(first `devbox up`, boot + full provisioning: {first_up:.0f} s; logs in {logs})")
    if args.json:
        args.json.write_text(json.dumps({"edited": str(target), "first_up": first_up, "seconds": times},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
