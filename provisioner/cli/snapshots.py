"""Snapshots and reset: `devbox snapshot save|restore|list|delete`, `devbox reset`."""
from __future__ import annotations

import json

import click

from provisioner import JSON_SCHEMA
from provisioner.cli.context import pass_app
from provisioner.cli.machines import print_provision, show_provision_failed, with_progress
from provisioner.cli.options import (ansible_verbosity_option, force_option, json_option, mitogen_option,
                                     names_argument)

snapshot_name_argument = click.argument("snapshot", metavar="SNAPSHOT")


def _print_run(verb: str, run) -> None:
    took = ", ".join(f"{n} {s:.0f}s" for n, s in run.seconds.items())
    click.echo(f"snapshot {run.snapshot} {verb}: {', '.join(run.names)}" + (f" ({took})" if took else ""))
    for note in run.notes:
        click.echo(f"note: {note}")


@click.group()
def snapshot():
    """Snapshots of the VMs (the provider's own), with what devbox had applied to each."""


@snapshot.command("save")
@snapshot_name_argument
@names_argument
@force_option("Replace a snapshot of the same name.")
@pass_app
def snapshot_save(app, snapshot, names, force):
    """Take snapshot SNAPSHOT of the VMs (all, or NAMES): disk, and memory of a running VM; devbox keeps its
    provisioning ledger and each VM's definition with it."""
    with with_progress(app, f"devbox snapshot save {snapshot}"):
        run = app.snapshot_save(snapshot, names, replace=force)
    _print_run("saved", run)


@snapshot.command("restore")
@snapshot_name_argument
@names_argument
@pass_app
def snapshot_restore(app, snapshot, names):
    """Put the VMs (all, or NAMES) back to SNAPSHOT; `devbox status` and `devbox provision` then know what it
    held, and re-run what changed in the playbooks since."""
    with with_progress(app, f"devbox snapshot restore {snapshot}"):
        run = app.snapshot_restore(snapshot, names)
    _print_run("restored", run)


@snapshot.command("delete")
@snapshot_name_argument
@names_argument
@pass_app
def snapshot_delete(app, snapshot, names):
    """Delete SNAPSHOT of the VMs (all that have it, or NAMES)."""
    with with_progress(app, f"devbox snapshot delete {snapshot}"):
        run = app.snapshot_delete(snapshot, names)
    _print_run("deleted", run)


@snapshot.command("list")
@json_option("Print {\"schema\": 1, \"snapshots\": [...]} as JSON.")
@pass_app
def snapshot_list(app, as_json):
    """The snapshots devbox took, per VM: when, whether the VM ran, from which playbook revision."""
    rows = app.snapshot_list()
    if as_json:
        click.echo(json.dumps({"schema": JSON_SCHEMA, "snapshots": [r.to_json() for r in rows]}, indent=2))
        return
    if not rows:
        click.echo("no snapshots yet: `devbox snapshot save NAME` takes one; devbox keeps `converged` after each "
                   "successful full provisioning")
        return
    width = max(len(r.snapshot) for r in rows)
    for r in rows:
        click.echo(f"{r.snapshot:<{width}}  {r.vm:<12} {r.taken}  {r.state:<8} revision {r.revision or '-'}"
                   + ("  (automatic)" if r.automatic else ""))


@click.command()
@names_argument
@mitogen_option
@ansible_verbosity_option
@pass_app
def reset(app, names, mitogen, ansible_verbosity):
    """Back to the `converged` snapshot (all VMs, or NAMES), then apply only what changed since."""
    from provisioner.machines.lifecycle import ProvisionFailed

    try:
        with with_progress(app, "devbox reset"):
            result = app.reset(names, mitogen=mitogen, verbosity=ansible_verbosity)
    except ProvisionFailed as exc:
        show_provision_failed(exc)
        raise
    _print_run("restored", result.restore)
    print_provision(result.provision)
