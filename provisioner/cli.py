"""The command line: parse options, call one method of the app object, print its result.

No logic and no subprocess calls live here. ``DevboxError`` is turned into a message and an exit code in
exactly one place (``DevboxGroup.invoke``), so library code never prints or exits.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import DevboxError


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
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    if ctx.obj is None:
        from .app import Devbox
        ctx.obj = Devbox.create(project_dir)


pass_app = click.make_pass_decorator(object)


# --- plan / init (issue 2) -----------------------------------------------------------------------------
_inventory_option = click.option(
    "--inventory", "-i", "inventory", type=click.Path(path_type=Path),
    help="Production inventory (INI or YAML file, or a directory); default: `inventory` in devbox.yml.")
_scripts_option = click.option(
    "--allow-inventory-scripts", is_flag=True,
    help="Let Ansible run executable inventory scripts and inventory plugins (off: devbox refuses them).")


@main.command()
@_inventory_option
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Rules file (default: devbox.yml in the project directory, if any).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@_scripts_option
@pass_app
def plan(app, inventory, config, as_json, allow_inventory_scripts):
    """Show which development VMs the production inventory maps to. Writes nothing."""
    result = app.plan(inventory=inventory, config=config, allow_inventory_scripts=allow_inventory_scripts)
    if as_json:
        import json
        click.echo(json.dumps(result.topology.to_json(), indent=2))
        return
    _print_topology(result.topology, f"from {result.inventory}")


@main.command()
@_inventory_option
@click.option("--force", is_flag=True, help="Rewrite devbox.yml from the inventory even if it exists.")
@_scripts_option
@pass_app
def init(app, inventory, force, allow_inventory_scripts):
    """Write devbox.yml (if absent), the Vagrantfile and the development inventory under .devbox/."""
    result = app.init(inventory=inventory, force=force, allow_inventory_scripts=allow_inventory_scripts)
    _print_topology(result.topology, f"from {result.inventory}")
    render = result.render
    for path in render.written:
        note = " (the rules, commented: edit it and commit it)" if path == result.config_path.name else ""
        click.echo(f"wrote {path}{note}")
    if not render.written:
        click.echo("nothing changed")
    if render.skipped:
        click.echo(f"not copied (vault-encrypted): {', '.join(render.skipped)}")
    if render.secret_names:
        click.echo(f"development values for vault variables in .devbox/secrets.yml: {', '.join(render.secret_names)}")
    if not render.validated:
        click.echo("note: `vagrant` is not installed, so the Vagrantfile was not validated", err=True)


def _print_topology(topology, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    table = Table(title=f"{len(topology.machines)} development VMs {source}", title_justify="left")
    for column in ("VM", "address", "memory", "cpus", "groups", "stands for"):
        table.add_column(column, overflow="fold")
    for m in topology.machines:
        shown = ", ".join(m.represents[:4]) + (f" (+{len(m.represents) - 4} more)" if len(m.represents) > 4 else "")
        table.add_row(m.name, m.address, f"{m.memory} MiB", str(m.cpus), ", ".join(m.groups), shown)
    console.print(table)
    for e in topology.excluded:
        console.print(f"excluded: {e.host}: {e.reason}", markup=False)
    for w in topology.warnings:
        console.print(f"warning: {w}", markup=False, style="yellow")
