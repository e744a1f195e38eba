"""What the benches share: timing a whole process with its output in a log, and a project snapshot in git.

Each timed command is a whole process, start-up included, as a user would run it.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path


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
