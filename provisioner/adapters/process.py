"""The one place devbox runs external commands.

It logs the argv, captures output (optionally teeing it to a log file), and never raises on a non-zero
exit: the caller decides what failure means, and ``ProcessResult.check()`` turns it into ``CommandFailed``
with the evidence (command, exit code, output tail, log path).
"""
from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import CommandFailed, DevboxError

log = logging.getLogger(__name__)

TAIL_LINES = 15


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    log_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).rstrip()
        return "\n".join(text.splitlines()[-lines:])

    def check(self, what: str | None = None, hint: str | None = None) -> "ProcessResult":
        if not self.ok:
            raise CommandFailed(list(self.argv), self.returncode, self.tail(), log_path=self.log_path,
                                what=what, hint=hint)
        return self


def run(argv: list[str], *, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
        log_path: str | os.PathLike | None = None, timeout: float | None = None,
        input: str | None = None) -> ProcessResult:
    """Run ``argv`` to completion. ``env`` is added to the current environment, not a replacement."""
    log.debug("run: %s (cwd=%s)", " ".join(argv), cwd)
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, input=input, capture_output=True, text=True,
                              timeout=timeout, errors="replace")
    except FileNotFoundError as exc:
        raise DevboxError(f"`{argv[0]}` is not installed or not on PATH", "run `devbox doctor` to see what is missing") from exc
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise CommandFailed(list(argv), -1, out[-2000:], log_path=str(log_path) if log_path else None,
                            what=f"command timed out after {timeout:.0f}s") from exc
    if log_path:
        p = Path(log_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}[exit {proc.returncode}]\n")
    return ProcessResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr,
                         str(log_path) if log_path else None)


def run_to_log(argv: list[str], *, log_path: str | os.PathLike, cwd: str | os.PathLike | None = None,
               env: dict[str, str] | None = None) -> int:
    """Run ``argv`` with its output appended to ``log_path`` (not kept in memory: `vagrant up` prints thousands
    of progress lines); the exit code. ``env`` is added to the current environment, not a replacement."""
    log.debug("run: %s (cwd=%s, output to %s)", " ".join(argv), cwd, log_path)
    full_env = {**os.environ, **env} if env else None
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "a", encoding="utf-8") as fh:
            return subprocess.run(argv, cwd=cwd, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
    except FileNotFoundError as exc:
        raise DevboxError(f"`{argv[0]}` is not installed or not on PATH", "run `devbox doctor` to see what is missing") from exc
