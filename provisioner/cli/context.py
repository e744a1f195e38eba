"""What every command shares: the app object from click's context, and the one console factory."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from provisioner.app import Devbox

if TYPE_CHECKING:
    from rich.console import Console

# The root group puts the app into ctx.obj (tests pass their own ``Devbox`` with fakes as ``obj``).
pass_app = click.make_pass_decorator(Devbox)

PIPED_WIDTH = 160  # columns when output goes to a log or a pipe: wide enough that paths and tables do not wrap


def console(stderr: bool = False) -> Console:
    """The console every command prints tables and messages with (rich).

    On a terminal: the terminal's width. Piped (CI logs, files, CliRunner): at least ``PIPED_WIDTH`` columns, or
    COLUMNS when it asks for more, never rich's 80-column default. Lines printed as text are never hard-wrapped.
    """
    from rich.console import Console   # here: `plan --json` and other plain-text output never load rich

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, soft_wrap=True, width=max(out.width, PIPED_WIDTH))
    return out
