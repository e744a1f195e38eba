"""The root group: -C, -v, --version, the app object in ``ctx.obj``, and ``DevboxError`` → message + exit code.

Commands live in one module per family and are registered on this group in ``commands.py``. ``DevboxError`` is
turned into a message and an exit code in exactly one place (``DevboxGroup.invoke``), so library code never prints
or exits.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from provisioner.app import Devbox
from provisioner.errors import DevboxError


class DevboxGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DevboxError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=DevboxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "project_dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="Project directory (where devbox.yml, the Vagrantfile and .devbox/ live).")
@click.option("-v", "--verbose", is_flag=True, help="Log every external command devbox runs.")
@click.version_option(package_name="devbox")
@click.pass_context
def main(ctx: click.Context, project_dir: Path, verbose: bool) -> None:
    """devbox: a local copy of the live architecture, from the production Ansible inventory."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    if ctx.obj is None:  # tests pass their own app (with fakes) as obj
        ctx.obj = Devbox.create(project_dir)
