"""`devbox plan` and `devbox init`: which VMs the production inventory maps to, and writing the project files."""
from __future__ import annotations

import json
from pathlib import Path

import click

from provisioner.cli.context import console, pass_app
from provisioner.cli.options import force_option, inventory_option, inventory_scripts_option, json_option
from provisioner.cli.views import hypervisor_table, topology_table


@click.command()
@inventory_option
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Rules file (default: devbox.yml in the project directory, if any).")
@json_option("Print the plan as one JSON object.")
@inventory_scripts_option
@pass_app
def plan(app, inventory, config, as_json, allow_inventory_scripts):
    """Show which development VMs the production inventory maps to. Writes nothing."""
    result = app.plan(inventory=inventory, config=config, allow_inventory_scripts=allow_inventory_scripts)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_topology(result.topology, f"from {result.inventory}")
    if result.proposed:
        console().print("rules: no devbox.yml, so the ones `devbox init` would write for this inventory "
                        "(`devbox init` writes them, commented, into devbox.yml)", markup=False)


@click.command()
@inventory_option
@force_option("Rewrite devbox.yml from the inventory even if it exists.")
@inventory_scripts_option
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
        click.echo("development values for vault-encrypted and secret-like variables in .devbox/secrets.yml: "
                   + ", ".join(render.secret_names))
    if render.unresolved:
        click.echo("read by the playbooks, defined in no file devbox can read, no development value given (set them "
                   "under `vars:` in devbox.yml if the plays need them): " + ", ".join(render.unresolved[:30])
                   + (f" (+{len(render.unresolved) - 30} more)" if len(render.unresolved) > 30 else ""))
    if not render.validated:
        click.echo("note: `vagrant` is not installed, so the Vagrantfile was not validated", err=True)


def _print_topology(topology, source: str) -> None:
    out = console()
    out.print(topology_table(topology, source))
    if topology.hypervisors:
        out.print(hypervisor_table(topology))
    for e in topology.excluded:
        out.print(f"excluded: {e.host}: {e.reason}", markup=False)
    for w in topology.warnings:
        out.print(f"warning: {w}", markup=False, style="yellow")
