#!/usr/bin/env python3
"""`devbox plan` against `ansible-inventory --list` and `ansible-inventory --graph`, on generated inventories of
100, 1,000 and 10,000 hosts, on the test data's largest real-shaped inventory and on the vendored public production
inventories (tests/data/inventories/real/, each with the group_vars/host_vars beside it).

Every command runs end to end as a user would run it (process start-up included), on the same inventory, from the
same virtualenv. `--list` is what a user runs to see an inventory (it also computes every host's variables);
`--graph` is Ansible's parser alone, the floor devbox builds on. The three alternate (devbox, --list, --graph,
devbox, ...) for --repeat rounds after one untimed warm-up each; the tables give the median and min–max of wall
and CPU time, and the ratio baseline ÷ devbox of the medians (above 1: devbox is faster). On a real inventory of
GRAPH_TARGET_MIN_HOSTS hosts or more, devbox must stay within GRAPH_TARGET times `--graph` (ratio >= 1 ÷ 1.1).
It prints the README's tables as Markdown.

    .venv/bin/python bench/plan_bench.py [--sizes 100 1000 10000] [--inventory PATH ...] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402

from benchlib import (RATIO_NOTE, Spread, alternate, devbox_argv, machine_line, markdown_table,  # noqa: E402
                      ratio, ratio_cell, target_cell)

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# the largest inventory of the test data (kolla-ansible multinode shape: 30 hosts, dozens of nested groups), and
# the vendored public inventories of tests/data/inventories/real/ (a folder each: SOURCE.yml names the inventory)
LARGEST_TEST_INVENTORY = REPO / "tests" / "data" / "inventories" / "openstack" / "multinode"
REAL_INVENTORIES = REPO / "tests" / "data" / "inventories" / "real"
# issue #15: on a large real inventory with its host_vars, devbox plan stays within 1.1x of Ansible's parser alone
GRAPH_TARGET = 1.1
GRAPH_TARGET_MIN_HOSTS = 100
TIERS = [("lb", 0.02), ("web", 0.40), ("app", 0.25), ("db", 0.08), ("cache", 0.10), ("mq", 0.10), ("search", 0.05)]


def generate_ini(hosts: int) -> str:
    """A production-like inventory: tiers, two data centres, an environment group, per-host variables."""
    lines, per_tier = [], {}
    remaining = hosts
    for i, (tier, share) in enumerate(TIERS):
        count = remaining if i == len(TIERS) - 1 else max(1, int(hosts * share))
        count = min(count, remaining - (len(TIERS) - 1 - i))
        per_tier[tier] = count
        remaining -= count
    names_by_dc: dict[str, list[str]] = {"dc1": [], "dc2": []}
    for tier, count in per_tier.items():
        lines.append(f"[{tier}]")
        for n in range(1, count + 1):
            name = f"{tier}-{n:05d}"
            extra = f" pg_role={'primary' if n == 1 else 'replica'}" if tier == "db" else ""
            lines.append(f"{name} ansible_host=10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256} "
                         f"rack=r{n % 40:02d}{extra}")
            names_by_dc["dc1" if n % 2 else "dc2"].append(name)
        lines.append("")
    for dc, names in names_by_dc.items():
        lines.append(f"[{dc}]")
        lines.extend(names)
        lines.append("")
    lines += ["[production:children]", *per_tier, "", "[production:vars]", "ansible_user=deploy",
              "ansible_ssh_common_args='-o ProxyJump=deploy@bastion.example.com'", ""]
    return "\n".join(lines)


RULES = """ignore_groups: [production, dc1, dc2]
groups:
  db: {keep_distinct: pg_role}
network: 10.200.0.0/16
"""


# Both commands run as an installed CLI normally runs: with Python's bytecode cache. (pip precompiles
# ansible-core at install; an editable devbox is compiled on its first run, which the warm-up run does.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run; CPU time is what a busy machine disturbs least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


COMMANDS = ("devbox plan --json", "ansible-inventory --list", "ansible-inventory --graph")


def measure(commands: list[list[str]], repeat: int, run=run_once) -> list[tuple[Spread, Spread]]:
    """(wall, CPU) spreads per command: one untimed warm-up each (bytecode and file caches), then ``repeat``
    alternating rounds."""
    for argv in commands:
        run(argv)
    samples = alternate([lambda argv=argv: run(argv) for argv in commands], repeat)
    return [(Spread.of(w for w, _ in s), Spread.of(c for _, c in s)) for s in samples]


def within(target: float, *ratios: float | None) -> bool | None:
    """Whether devbox stays within ``target`` times the baseline on every ratio (baseline ÷ devbox >= 1 ÷ target);
    None when a ratio is missing."""
    if any(r is None for r in ratios):
        return None
    return all(r >= 1 / target - 1e-9 for r in ratios)


def tables(rows: list[tuple], repeat: int) -> str:
    """The two README tables: against --list (target: no slower) and against --graph (the floor: a target only on
    rows that carry one, ``(name, measured, graph_target)``, devbox within that many times the parser)."""
    out = []
    graph_targets = sorted({row[2] for row in rows if len(row) > 2 and row[2]})
    graph_what = "Ansible's parser alone, the floor devbox builds on: no target"
    if graph_targets:
        graph_what = ("Ansible's parser alone, the floor devbox builds on; target on the large real inventories: "
                      + ", ".join(f"devbox within {t:g}x of it, ratio >= {1 / t:.3f}"
                                  for t in graph_targets))
    for k, (label, what) in enumerate([(COMMANDS[1], "target: devbox no slower, ratio >= 1"),
                                       (COMMANDS[2], graph_what)], start=1):
        body = []
        for name, ((d_wall, d_cpu), *baselines), *rest in rows:
            b_wall, b_cpu = baselines[k - 1]
            r_wall, r_cpu = ratio(b_wall, d_wall), ratio(b_cpu, d_cpu)
            cells = [name, d_wall.cell(), d_cpu.cell(), b_wall.cell(), b_cpu.cell(), ratio_cell(r_wall),
                     ratio_cell(r_cpu)]
            if k == 1:
                cells.append(target_cell(r_wall is not None and r_wall >= 1 and r_cpu >= 1))
            elif graph_targets:
                target = rest[0] if rest else None
                cells.append(target_cell(within(target, r_wall, r_cpu)) if target else "-")
            body.append(cells)
        headers = ["inventory (hosts)", "devbox plan --json wall", "devbox CPU", f"{label} wall", f"{label} CPU",
                   "ratio wall", "ratio CPU"] + (["target"] if k == 1 or graph_targets else [])
        out.append(markdown_table(headers, body, title=f"devbox plan against {label} ({what})",
                                  notes=[f"Median (min–max) of {repeat} alternating runs each, seconds; "
                                         f"{RATIO_NOTE}."]))
    return "\n\n".join(out)


def default_inventories() -> list[Path]:
    found = [LARGEST_TEST_INVENTORY]
    if REAL_INVENTORIES.is_dir():
        found += sorted(p for p in REAL_INVENTORIES.iterdir() if not p.name.startswith(".") and p.is_dir())
    return found


def inventory_file(path: Path) -> Path:
    """The inventory to pass to -i: a vendored folder (with SOURCE.yml) names its own; anything else is itself."""
    record = path / "SOURCE.yml"
    if path.is_dir() and record.is_file():
        return path / yaml.safe_load(record.read_text())["inventory"]
    return path


def host_count(inventory: Path) -> int:
    """Distinct hosts Ansible sees in ``inventory`` (over all groups, with or without variables)."""
    proc = subprocess.run([str(BIN / "ansible-inventory"), "--list", "-i", str(inventory)], capture_output=True,
                          text=True, env=ENV)
    if proc.returncode != 0:
        raise SystemExit(f"ansible-inventory --list -i {inventory} failed:\n{proc.stderr[-2000:]}")
    listing = json.loads(proc.stdout)
    hosts = set(listing.get("_meta", {}).get("hostvars", {}))
    for name, group in listing.items():
        if name != "_meta" and isinstance(group, dict):
            hosts.update(group.get("hosts", []))
    return len(hosts)


def graph_target(inventory: Path, hosts: int) -> float | None:
    """The --graph target of an existing inventory: a real (vendored) one of GRAPH_TARGET_MIN_HOSTS or more."""
    real = inventory.is_relative_to(REAL_INVENTORIES)
    return GRAPH_TARGET if real and hosts >= GRAPH_TARGET_MIN_HOSTS else None


def plans(argv: list[str]) -> str | None:
    """None when devbox plans it (exit 0); otherwise why not (a vendored inventory Ansible rejects is skipped)."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    if proc.returncode == 0:
        return None
    return f"devbox plan exits {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000],
                        help="generated inventories (hosts); none: only --inventory")
    parser.add_argument("--inventory", type=Path, action="append",
                        help="an existing inventory, or a folder of tests/data/inventories/real/ (repeatable; "
                             "default: the test data's largest and every vendored one devbox plans), planned with "
                             "devbox's default rules")
    parser.add_argument("--repeat", type=int, default=5, help="alternating rounds (default 5)")
    args = parser.parse_args()
    devbox, ansible_inventory = devbox_argv(BIN), BIN / "ansible-inventory"
    if not ansible_inventory.exists():
        raise SystemExit(f"{ansible_inventory} not found: run this with the project's virtualenv python")
    if len(devbox) > 1:
        print("(no devbox script next to this python: devbox runs as `python -c` with what the script runs)",
              file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="devbox-plan-bench-"))
    try:
        rules = work / "devbox.yml"
        rules.write_text(RULES)
        bare = work / "no-rules"   # a project folder without devbox.yml: devbox's default rules
        bare.mkdir()
        cases = []
        for size in args.sizes:
            inventory = work / f"hosts-{size}.ini"
            inventory.write_text(generate_ini(size))
            cases.append((f"generated ({size:,})", inventory, [*devbox, "-C", str(work), "plan", "--json", "-i",
                                                             str(inventory), "--config", str(rules)], None))
        for given in args.inventory or default_inventories():
            inventory = inventory_file(given.resolve())
            label = inventory.relative_to(REPO) if inventory.is_relative_to(REPO) else inventory
            plan = [*devbox, "-C", str(bare), "plan", "--json", "-i", str(inventory)]
            if not args.inventory and (why := plans(plan)):
                print(f"  skipped {label}: {why}", file=sys.stderr, flush=True)
                continue
            hosts = host_count(inventory)
            cases.append((f"`{label}` ({hosts:,})", inventory, plan, graph_target(inventory, hosts)))
        at_start = machine_line()
        rows = []
        for label, inventory, plan, target in cases:
            rows.append((label, measure([plan, [str(ansible_inventory), "--list", "-i", str(inventory)],
                                         [str(ansible_inventory), "--graph", "-i", str(inventory)]], args.repeat),
                         target))
            print(f"  {label} done", file=sys.stderr, flush=True)
        print(tables(rows, args.repeat))
        print(f"\nMachine at the start: {at_start}; at the end: {machine_line().split(', load average ')[1]}.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
