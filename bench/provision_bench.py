#!/usr/bin/env python3
"""`devbox provision` after a one-file change in one role, against a full run of the same playbook.

Runs in the lab (VMs are real): `devbox lab run -- .venv/bin/python bench/provision_bench.py [--source .]`.
The project (devbox.yml and the folders its `inventory` and `playbook` are in) is copied to a work folder, so
the bench's edits never touch the source tree; there it runs `devbox init` and `devbox up` (timed: boot and the
first full provisioning), then each case --repeat times (best and median kept):

* full:        `ansible-playbook -i .devbox/inventory <playbook>`, what `vagrant provision` or a plain run does,
               with the same SSH settings devbox uses (ControlPersist, pipelining), so only the work differs;
* one file:    a comment line added to one file of one role (a Jinja comment in a template: the rendered file
               stays the same), then `devbox provision`, which runs that role on the VMs that have it;
* no change:   `devbox provision` again, which must find nothing to do and contact no VM.

Every timed command is a whole process, start-up included, as a user would run it. The VMs are destroyed at
the end unless --keep.

    .venv/bin/python bench/provision_bench.py [--source DIR] [--workdir DIR] [--keep] [--role webapp]
        [--file templates/x.j2] [--repeat 3] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import commit_snapshot, run_logged, tail  # noqa: E402
from provisioner.adapters import process  # noqa: E402
from provisioner.project.paths import ProjectPaths  # noqa: E402
from provisioner.project.context import load_rules  # noqa: E402
from provisioner.adapters.playbook_runner import ansible_env  # noqa: E402

BIN = Path(sys.executable).parent


def timed(argv: list[str], *, cwd: Path, env: dict | None = None, log: Path, expect: str | None = None) -> float:
    seconds, rc = run_logged(argv, cwd=cwd, env=env, log=log)
    if rc != 0:
        raise SystemExit(f"`{' '.join(argv)}` exited with {rc}:\n{tail(log)}\n(full log: {log})")
    if expect is not None and expect not in log.read_text(errors="replace"):
        raise SystemExit(f"`{' '.join(argv)}` did not say {expect!r}; see {log}")
    return seconds


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
    cli = [str(BIN / "devbox"), "-C", str(project)]
    devbox = cli + ["provision"]
    full_ansible = [str(BIN / "ansible-playbook"), "-i", str(paths.inventory), str(playbook)]
    env = ansible_env(known_hosts=paths.known_hosts, log_path=logs / "ansible.log")
    target = role_file(playbook, args.role, args.file)
    original = target.read_text()
    print(f"bench project: {project}", file=sys.stderr)
    times: dict[str, list[float]] = {"full": [], "one file": [], "no change": []}
    try:
        timed(cli + ["init"], cwd=project, log=logs / "init.log")
        first_up = timed(cli + ["up"], cwd=project, log=logs / "up.log")
        print(f"devbox up (boot + first full provisioning): {first_up:.0f}s", file=sys.stderr)
        for n in range(args.repeat):
            times["full"].append(timed(full_ansible, cwd=playbook.parent, env=env, log=logs / "full.log"))
            touch_comment(target, original, n)
            times["one file"].append(timed(devbox, cwd=project, log=logs / "one-file.log", expect="what ran"))
            times["no change"].append(timed(devbox, cwd=project, log=logs / "no-change.log",
                                            expect="nothing changed"))
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), file=sys.stderr)
    finally:
        target.write_text(original)
        if not args.keep:
            process.run(cli + ["destroy", "--yes"], cwd=project, log_path=logs / "destroy.log")

    full = min(times["full"])
    print(f"\n{'case':<12} {'best':>8} {'median':>8} {'full / case':>12}   ({args.repeat} runs each; "
          f"edited {target.relative_to(playbook.parent)})")
    for case, values in times.items():
        best = min(values)
        print(f"{case:<12} {best:>7.1f}s {statistics.median(values):>7.1f}s {full / best:>11.1f}x")
    print(f"(first `devbox up`, boot + full provisioning: {first_up:.0f}s; logs in {logs})")
    if args.json:
        args.json.write_text(json.dumps({"edited": str(target), "first_up": first_up, "seconds": times},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
