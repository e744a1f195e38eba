"""What the benches share: timing a whole process with its output in a log, a project snapshot in git, the
alternating sampler, the median and spread of samples, and the Markdown tables the README shows.

Each timed command is a whole process, start-up included, as a user would run it. Baselines and devbox alternate
(A B A B ...) over several samples and are reported as median and min–max, with one ratio direction everywhere:
baseline ÷ devbox, above 1 meaning devbox is faster.
"""
from __future__ import annotations

import shlex
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")


def run_logged(argv: list[str], *, cwd: Path, env: dict | None, log: Path, timeout: float = 3600
               ) -> tuple[float, int]:
    """Run ``argv`` with stdout and stderr in ``log`` (command line first, exit code last); (seconds, exit code).

    A timeout kills it (exit code -1). Ctrl-C (or the lab's SIGTERM turned into KeyboardInterrupt) is passed on
    as SIGINT first, so devbox and Vagrant stop cleanly, then re-raised.
    """
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(argv)}\n(cwd {cwd})\n")
        fh.flush()
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -1
        except KeyboardInterrupt:
            stop_child(proc)
            fh.write(f"\n[interrupted after {time.monotonic() - started:.1f} s]\n")
            raise
        seconds = time.monotonic() - started
        fh.write(f"\n[exit {rc} after {seconds:.1f} s]\n")
    return seconds, rc


def stop_child(proc: subprocess.Popen, grace: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


def commit_snapshot(folder: Path, message: str) -> None:
    """Make ``folder`` a git repository with everything in one commit: devbox records the playbooks' revision,
    and incremental provisioning compares against it."""
    git = ["git", "-C", str(folder), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", message]):
        subprocess.run(git + cmd, check=True, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------------------
# samples, their median and spread, and the Markdown tables every bench prints (pure, unit-tested)

RATIO_NOTE = "ratio = baseline ÷ devbox (medians): above 1 means devbox is faster"


def alternate(runs: Sequence[Callable[[], T]], rounds: int) -> list[list[T]]:
    """Run each callable once per round, in the same order every round (A B A B ...), so each sees the same
    machine load as the other; the samples per callable, in run order."""
    if rounds < 1:
        raise ValueError("at least one round")
    samples: list[list[T]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            samples[i].append(run())
    return samples


@dataclass(frozen=True)
class Spread:
    """Samples of one measured command: median, min–max and interquartile range."""
    samples: tuple[float, ...]

    def __post_init__(self):
        if not self.samples:
            raise ValueError("no samples")

    @classmethod
    def of(cls, samples: Iterable[float]) -> "Spread":
        return cls(tuple(float(s) for s in samples))

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def iqr(self) -> tuple[float, float]:
        """First and third quartiles (inclusive method: within min–max; one sample gives it twice)."""
        if self.n == 1:
            return self.samples[0], self.samples[0]
        q1, _q2, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3

    def cell(self, digits: int = 2, unit: str = " s") -> str:
        """``1.23 s (1.10–1.40)``: median, then min–max; one sample says so."""
        med = f"{self.median:.{digits}f}{unit}"
        if self.n == 1:
            return f"{med} (1 run)"
        return f"{med} ({self.min:.{digits}f}–{self.max:.{digits}f})"


def ratio(baseline: "Spread | float | None", devbox: "Spread | float | None") -> float | None:
    """baseline ÷ devbox on medians: above 1 means devbox is faster. None when either is missing or zero."""
    b = baseline.median if isinstance(baseline, Spread) else baseline
    d = devbox.median if isinstance(devbox, Spread) else devbox
    if not b or not d:
        return None
    return b / d


def ratio_cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def target_cell(met: bool | None) -> str:
    """The target column: ``met``, ``**MISSED**`` (bold, so a miss cannot be overlooked), or ``-`` (not measured)."""
    if met is None:
        return "-"
    return "met" if met else "**MISSED**"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None,
                   notes: Sequence[str] = ()) -> str:
    """A GitHub Markdown table, as the bench README shows it: first column left-aligned, the others right-aligned;
    an optional bold title line before it and note lines after it. ``None`` cells print as ``-``; ``|`` in a cell
    is escaped."""
    def cell(value: object) -> str:
        return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    rows = [[cell(c) for c in row] for row in rows]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"{len(row)} cells for {len(headers)} columns: {row}")
    out = [f"**{title}**", ""] if title else []
    out.append("| " + " | ".join(cell(h) for h in headers) + " |")
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    out += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        out += [""] + list(notes)
    return "\n".join(out)


def machine_line() -> str:
    """CPUs, memory and load average now: every report says how loaded the machine was."""
    import os

    memory = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs{memory}, load average {load} (1 / 5 / 15 min)"


DEVBOX_WITHOUT_SCRIPT = "import sys; from provisioner.cli import main; sys.exit(main(prog_name='devbox'))"


def devbox_argv(bin_dir: Path) -> list[str]:
    """How to start devbox: its console script next to the interpreter or, where devbox is importable but has no
    script there (a checkout on PYTHONPATH), the interpreter running what that script runs (the same imports)."""
    script = bin_dir / "devbox"
    if script.exists():
        return [str(script)]
    import sys
    return [sys.executable, "-c", DEVBOX_WITHOUT_SCRIPT]
