"""`devbox hosts`: the block of hosts-file lines that gives each VM its name (`lb-1.devbox.test`)."""
from __future__ import annotations

from pathlib import Path

import click

from provisioner.cli.context import pass_app


@click.command()
@click.option("--write", "write", is_flag=True, help="Put the block into the hosts file (replacing only this "
              "project's previous block).")
@click.option("--remove", is_flag=True, help="Take this project's block out of the hosts file.")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The hosts file to change with --write/--remove (default: /etc/hosts).")
@pass_app
def hosts(app, write, remove, path):
    """Print the hosts-file block naming each VM `<vm>.<domain>` at its development address; --write puts it
    into /etc/hosts (needs root), --remove takes it out. Nothing outside the block changes."""
    if write and remove:
        raise click.UsageError("--write and --remove do not go together")
    if path is not None and not (write or remove):
        raise click.UsageError("--file is for --write or --remove (without them the block is printed)")
    if not (write or remove):
        click.echo(app.hosts_block().text, nl=False)
        return
    result = app.hosts_write(path) if write else app.hosts_remove(path)
    where = result.write.path
    if remove:
        click.echo(f"removed this project's block from {where}" if result.write.changed
                   else f"{where} has no block of this project: nothing to remove")
    else:
        click.echo(f"wrote {len(result.block.entries)} name(s) to {where}" if result.write.changed
                   else f"{where} already has this block: nothing to change")
        for entry in result.block.entries:
            click.echo(f"  {entry.address}  {' '.join(entry.names)}")
    if result.write.in_place:
        click.echo(f"note: {where} could not be replaced by a rename (a bind mount?): it was rewritten in place")
    for other in result.others:
        click.echo(f"note: {where} also holds the block of another devbox project ({other})")
    if result.given_elsewhere:
        click.secho(f"warning: {where} also gives {', '.join(result.given_elsewhere)} outside this block (the "
                    f"first line that names a host wins); another domain for this project's VMs: `names: {{domain: "
                    f"...}}` in devbox.yml", fg="yellow", err=True)
