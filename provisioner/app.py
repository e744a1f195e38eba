"""The app object: one method per user-facing action, returning result objects.

It wires the pure core (inventory, topology, render, state) to the adapters (vagrant, ansible, ssh).
Progress is reported through a callback, never printed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

Progress = Callable[[str, str], None]  # (subject, message), e.g. ("web-1", "SSH ready")


def _no_progress(subject: str, message: str) -> None:
    pass


@dataclass
class Devbox:
    project_dir: Path
    progress: Progress = field(default=_no_progress)

    @classmethod
    def create(cls, project_dir: Path) -> "Devbox":
        """The real wiring, used by the CLI; tests build ``Devbox`` with fakes instead."""
        return cls(project_dir=Path(project_dir).resolve())
