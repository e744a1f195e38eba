#!/usr/bin/env python3
"""`devbox plan` against `ansible-inventory --list` on generated inventories of 100, 1,000 and 10,000 hosts.

Both commands run end to end as a user would run them (process start-up included), on the same INI file,
from the same virtualenv. The two are run alternately several times and each keeps its best time (the least
disturbed run), so both see the same machine load.

    .venv/bin/python bench/plan_bench.py [--sizes 100 1000 10000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
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


def best_times(commands: list[list[str]], repeat: int) -> list[tuple[float, float]]:
    """Best wall and best CPU time of ``repeat`` runs per command, interleaved so both see the same load."""
    best = [(float("inf"), float("inf"))] * len(commands)
    for argv in commands:   # warm-up: bytecode cache and file system cache, not timed
        run_once(argv)
    for _ in range(repeat):
        for i, argv in enumerate(commands):
            wall, cpu = run_once(argv)
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    devbox, ansible_inventory = BIN / "devbox", BIN / "ansible-inventory"
    for tool in (devbox, ansible_inventory):
        if not tool.exists():
            raise SystemExit(f"{tool} not found: run this with the project's virtualenv python")
    work = Path(tempfile.mkdtemp(prefix="devbox-plan-bench-"))
    try:
        rules = work / "devbox.yml"
        rules.write_text(RULES)
        rows = []
        for size in args.sizes:
            inventory = work / f"hosts-{size}.ini"
            inventory.write_text(generate_ini(size))
            t_devbox, t_ansible = best_times(
                [[str(devbox), "-C", str(work), "plan", "--json", "-i", str(inventory), "--config", str(rules)],
                 [str(ansible_inventory), "--list", "-i", str(inventory)]], args.repeat)
            rows.append((size, t_devbox, t_ansible))
            print(f"  {size} hosts done", file=sys.stderr)
        print("| hosts | devbox plan --json: wall / CPU (s) | ansible-inventory --list: wall / CPU (s) "
              "| ratio wall | ratio CPU |")
        print("|---:|---:|---:|---:|---:|")
        for size, (d_wall, d_cpu), (a_wall, a_cpu) in rows:
            print(f"| {size:,} | {d_wall:.2f} / {d_cpu:.2f} | {a_wall:.2f} / {a_cpu:.2f} "
                  f"| {d_wall / a_wall:.2f} | {d_cpu / a_cpu:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
