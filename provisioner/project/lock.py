"""One devbox command at a time per project: an exclusive ``flock`` on ``.devbox/lock``.

The holder writes its pid, command and start time into the lock file so a second command can say who holds
it. The file is rewritten in place, not replaced atomically: a rename would give the next command a different
inode to lock, and two commands would both "hold" the lock. The kernel drops a ``flock`` when its process
dies, so a crashed command never leaves the project locked; the stale text is simply overwritten.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from provisioner.errors import LockHeld


class ProjectLock:
    def __init__(self, path: str | os.PathLike, command: str):
        self.path = Path(path)
        self.command = command
        self._fh = None

    def acquire(self) -> "ProjectLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "a process that is still starting"
            fh.close()
            raise LockHeld(str(self.path), holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, `{self.command}`, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ProjectLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
