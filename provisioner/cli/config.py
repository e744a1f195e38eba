"""`devbox config ...`: devbox.yml itself (its JSON Schema for editors)."""
from __future__ import annotations

import click

from provisioner.cli.context import pass_app


@click.group()
def config():
    """devbox.yml itself."""


@config.command("schema")
@pass_app
def config_schema(app):
    """Print devbox.yml's JSON Schema, for editors (`# yaml-language-server: $schema=FILE` in devbox.yml)."""
    click.echo(app.config_schema(), nl=False)
