from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from provisioner.errors import LockHeld
from provisioner.project.lock import ProjectLock


def test_second_holder_fails_fast_naming_the_first(tmp_path):
    path = tmp_path / ".devbox" / "lock"
    with ProjectLock(path, "devbox up"):
        started = time.monotonic()
        with pytest.raises(LockHeld) as err:
            ProjectLock(path, "devbox halt").acquire()
        assert time.monotonic() - started < 1
        assert f"pid {os.getpid()}" in err.value.holder and "devbox up" in err.value.holder
    # released: the next command gets it, and the holder text is its own
    with ProjectLock(path, "devbox halt"):
        assert "devbox halt" in path.read_text()
    assert path.read_text() == ""


def test_lock_held_by_another_process_and_freed_when_it_dies(tmp_path):
    path = tmp_path / "lock"
    code = ("import sys, time; from provisioner.project.lock import ProjectLock; "
            f"l = ProjectLock({str(path)!r}, 'devbox provision').acquire(); print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {child.pid}, `devbox provision`"):
            ProjectLock(path, "devbox up").acquire()
    finally:
        child.kill()
        child.wait()
    # the kernel dropped the dead process's lock: no stale lock to clean up by hand
    with ProjectLock(path, "devbox up"):
        pass
