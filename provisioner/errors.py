"""The one error family devbox raises.

Library code raises these with structured fields; only the CLI turns them into a message and an exit code,
so no module below the CLI prints or exits.
"""
from __future__ import annotations


class DevboxError(Exception):
    """A failure the user can act on: what failed, and the next step (``hint``)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DevboxError):
    """The command line itself is wrong (exit code 2, like click's own usage errors)."""

    exit_code = 2


class InventoryError(DevboxError):
    """An inventory source that devbox will not read: unparseable, unsafe, or structurally broken."""

    def __init__(self, path: str, problem: str, *, line: int | None = None, hint: str | None = None):
        where = f"{path}:{line}" if line else path
        super().__init__(f"inventory {where}: {problem}", hint)
        self.path = path
        self.problem = problem
        self.line = line


class ConfigError(DevboxError):
    """devbox.yml is invalid; every problem is reported at once."""

    def __init__(self, path: str, problems: list[str], hint: str | None = None):
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path} is invalid:\n{lines}", hint or f"fix {path} and run the command again")
        self.path = path
        self.problems = list(problems)


class RenderError(DevboxError):
    """The Vagrantfile template could not be rendered, or Vagrant rejected the result."""


class CommandFailed(DevboxError):
    """An external command (vagrant, ansible, qemu-img...) exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, output_tail: str = "", *, log_path: str | None = None,
                 what: str | None = None, hint: str | None = None):
        cmd = " ".join(argv)
        parts = [f"{what or 'command failed'}: `{cmd}` exited with {returncode}"]
        if output_tail.strip():
            parts.append("last lines of its output:\n" + "\n".join("  " + l for l in output_tail.rstrip().splitlines()))
        if log_path:
            parts.append(f"full log: {log_path}")
        super().__init__("\n".join(parts), hint)
        self.argv = list(argv)
        self.returncode = returncode
        self.output_tail = output_tail
        self.log_path = log_path


class LockHeld(DevboxError):
    """Another devbox command is acting on the same project."""

    def __init__(self, lock_path: str, holder: str):
        super().__init__(f"another devbox command holds {lock_path}: {holder}",
                         "wait for it to finish, or remove the lock file if that process is gone")
        self.lock_path = lock_path
        self.holder = holder


class SafetyError(DevboxError):
    """devbox refuses to act on a target that could be production or otherwise unsafe."""
