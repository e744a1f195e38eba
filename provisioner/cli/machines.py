"""The development VMs' lifecycle: `devbox up`, `provision`, `idempotence`, `status`, `ssh`, `halt`, `destroy`,
`doctor`.

`provision --env` and `status --env` hand over to environments.py.
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click

from provisioner.cli.context import console, pass_app
from provisioner.cli.environments import provision_env, status_env
from provisioner.cli.incremental_view import plan_table, plan_title
from provisioner.cli.options import (ansible_verbosity_option, env_option, json_option, mitogen_option,
                                     names_argument, vm_name_argument, yes_option)
from provisioner.cli.views import LiveProgress, doctor_table, host_summary_table, status_table, url_lines

if TYPE_CHECKING:
    from provisioner.machines.lifecycle import ProvisionFailed

# The VM lifecycle's own module (and what it brings) is imported by the commands that run it, not by every
# command: `devbox plan` is timed against Ansible's own parser.


def with_progress(app, title: str) -> LiveProgress:
    """Show the app's progress live while a command runs."""
    display = LiveProgress(title)
    app.progress = display
    return display


def print_provision(result) -> None:
    if result.plan is not None:  # incremental provisioning: what ran (or would run) per VM, and why
        console().print(plan_table(result.plan, plan_title(result.plan, ran=result.playbook is not None,
                                                            dry_run=result.playbook is None and not result.plan.nothing_to_do)))
    pb = result.playbook
    if pb is None:
        return
    mode = " (check mode: nothing changed)" if result.check else ""
    if pb.strategy.requested:
        click.echo(pb.strategy.describe())
    console().print(host_summary_table(pb.hosts, f"provisioned in {pb.seconds:.0f}s from revision "
                                                 f"{result.revision or 'outside git'}{mode}"))
    if result.note:
        click.echo(f"note: {result.note}")
    if result.snapshot_note:
        click.echo(result.snapshot_note)


def show_provision_failed(exc: ProvisionFailed) -> None:
    """Show the per-host table before the error message (the group prints the message)."""
    console(stderr=True).print(host_summary_table(exc.result.playbook.hosts, "provisioning summary"))


@click.command()
@names_argument
@click.option("--no-provision", is_flag=True, help="Boot and wait for SSH only.")
@mitogen_option
@ansible_verbosity_option
@pass_app
def up(app, names, no_provision, mitogen, ansible_verbosity):
    """Boot the VMs (all, or NAMES) and provision them in one Ansible run."""
    from provisioner.machines.lifecycle import ProvisionFailed

    try:
        with with_progress(app, "devbox up"):
            result = app.up(names, provision=not no_provision, mitogen=mitogen, verbosity=ansible_verbosity)
    except ProvisionFailed as exc:
        show_provision_failed(exc)
        raise
    booted = ", ".join(result.booted) or "none"
    click.echo(f"booted: {booted} ({result.boot_seconds:.0f}s); SSH ready after {result.ssh_seconds:.0f}s"
               + (f"; already running: {', '.join(result.already_running)}" if result.already_running else ""))
    if result.provision:
        print_provision(result.provision)


@click.command()
@names_argument
@click.option("--tags", "-t", help="Only run plays and tasks tagged with these values (Ansible --tags).")
@click.option("--skip-tags", help="Skip plays and tasks tagged with these values (Ansible --skip-tags).")
@click.option("--limit", "-l", help="Further limit the hosts (Ansible --limit pattern).")
@click.option("--extra-vars", "-e", "extra_vars", multiple=True, metavar="VARS",
              help="Extra variables for ansible-playbook, as it takes them (key=value, JSON or @file); repeatable. "
                   "With --env: shown and asked for like any run against the environment.")
@click.option("--check", is_flag=True, help="Dry run (Ansible --check --diff): change nothing.")
@click.option("--diff", is_flag=True, help="Show what changed in files and templates (Ansible --diff).")
@click.option("--full", is_flag=True, help="Run the whole playbook on every VM, whatever changed.")
@click.option("--dry-run", is_flag=True, help="List per VM what would run and why; run nothing.")
@env_option
@yes_option("With --env on the command line: do not ask for the typed name (never for production).")
@click.option("--no-check-first", is_flag=True, help="With --env: skip the check-mode diff before applying.")
@mitogen_option
@ansible_verbosity_option
@pass_app
@click.pass_context
def provision(ctx, app, names, tags, skip_tags, limit, extra_vars, check, diff, full, dry_run, env, yes,
              no_check_first, mitogen, ansible_verbosity):
    """Run the production playbook against the development VMs (all, or NAMES), or an environment (--env).

    --tags, --skip-tags, --limit, -e and --check make a partial run: it records nothing in the change ledger."""
    if env and env != "dev":
        if full or dry_run:
            raise click.UsageError("--full and --dry-run are for the development VMs, not with --env")
        if names or check:
            raise click.UsageError("with --env, select hosts with --limit (no NAMES), and --check is implied "
                                   "unless --no-check-first")
        return provision_env(app, ctx, env, yes=yes, no_check_first=no_check_first, tags=tags, limit=limit,
                             skip_tags=skip_tags, extra_vars=extra_vars, diff=diff, verbosity=ansible_verbosity)
    from provisioner.machines.lifecycle import ProvisionFailed

    try:
        with with_progress(app, "devbox provision"):
            result = app.provision(names, tags=tags, limit=limit, check=check, full=full, dry_run=dry_run,
                                   mitogen=mitogen, skip_tags=skip_tags, diff=diff, extra_vars=extra_vars,
                                   verbosity=ansible_verbosity)
    except ProvisionFailed as exc:
        show_provision_failed(exc)
        raise
    print_provision(result)


@click.command()
@names_argument
@ansible_verbosity_option
@pass_app
def idempotence(app, names, ansible_verbosity):
    """Molecule's idempotence check on the development VMs (all, or NAMES): the whole playbook until converged
    (one run when devbox already recorded a full run with nothing changed since), then once more; exit 1 naming
    every task that reported changed on that last run."""
    from provisioner.machines.lifecycle import NotIdempotent

    try:
        with with_progress(app, "devbox idempotence"):
            result = app.idempotence(names, verbosity=ansible_verbosity)
    except NotIdempotent as exc:
        console(stderr=True).print(host_summary_table(exc.result.runs[-1].playbook.hosts, "the run after converging"))
        raise
    last = result.runs[-1].playbook
    console().print(host_summary_table(last.hosts, f"the run after converging ({len(result.runs)} full run(s))"))
    click.echo("idempotent: no task reported changed on the run after converging")


@click.command()
@json_option("Print {\"schema\": 1, \"machines\": [...]} as JSON: what the table shows, pending changes included.")
@click.option("--refresh", is_flag=True, help="Ask vagrant for the current states (one call; slower).")
@env_option
@pass_app
def status(app, as_json, refresh, env):
    """Per VM: state, SSH reachability, its name and address, when it was last provisioned and from which
    revision; the URLs the smoke checks probe, by name.

    With --env (dev included): read from each host which revision devbox last applied there."""
    if env:
        return status_env(app, env, as_json)
    result = app.status(refresh=refresh)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    console().print(status_table(result.machines, result.refreshed))
    lines = url_lines(result.machines)
    if lines:
        click.echo("URLs the smoke checks probe (they resolve here after `devbox hosts --write`):")
        for line in lines:
            click.echo(f"  {line}")
    if result.pending is None:  # a playbook devbox cannot read must not hide the machines' status
        click.secho(f"pending changes: unknown ({result.pending_error})", fg="yellow", err=True)
    else:
        console().print(plan_table(result.pending, plan_title(result.pending, ran=False, dry_run=False)))


class _SshCommand(click.Command):
    """Notes whether `--` was given: only what follows it goes to ssh (a stray word would become ssh's host)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["devbox.ssh_double_dash"] = "--" in args
        return super().parse_args(ctx, args)


@click.command(cls=_SshCommand)
@vm_name_argument
@click.option("--command", "-c", "command", metavar="CMD", help="Run CMD on the VM instead of a shell.")
@click.argument("ssh_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- SSH_ARGS...]")
@pass_app
@click.pass_context
def ssh(ctx, app, name, command, ssh_args):
    """Open a shell on VM NAME, or run `-c CMD` there; arguments after `--` go to ssh itself (e.g. `-- -L
    8080:localhost:80` forwards a port), as with `vagrant ssh`. Uses the cached connection, no vagrant."""
    if ssh_args and not ctx.meta.get("devbox.ssh_double_dash"):
        raise click.UsageError(f"unexpected argument {ssh_args[0]!r}: run a command with -c "
                               f"(devbox ssh {name} -c '{' '.join(ssh_args)}'); ssh's own options go after --")
    argv = app.ssh(name, (command,) if command else (), ssh_args=ssh_args).argv
    sys.stdout.flush()
    os.execvp(argv[0], list(argv))  # become ssh: the terminal, signals and exit code are the user's


@click.command()
@names_argument
@pass_app
def halt(app, names):
    """Shut the VMs (all, or NAMES) down; `devbox up` starts them again."""
    with with_progress(app, "devbox halt"):
        result = app.halt(names)
    click.echo(f"halted: {', '.join(result.names)} ({result.seconds:.0f}s)")


@click.command()
@names_argument
@yes_option("Do not ask.")
@pass_app
def destroy(app, names, yes):
    """Delete the VMs (all, or NAMES), their cached connection data and host keys."""
    def ask(selected) -> None:  # after the names are checked: an unknown name is a usage error, not a question
        which = ", ".join(selected) if names else f"ALL development VMs of this project ({', '.join(selected)})"
        click.confirm(f"Destroy {which}?", abort=True, err=True)

    # progress as plain lines (no live display): the question comes in the middle of the call
    app.progress = LiveProgress("devbox destroy")
    result = app.destroy(names, confirm=None if yes else ask)
    click.echo(f"destroyed: {', '.join(result.names)} ({result.seconds:.0f}s)")


@click.command()
@pass_app
def doctor(app):
    """Check vagrant, its libvirt plugin and daemon, ansible-core, memory and the box; say what to fix."""
    result = app.doctor()
    console().print(doctor_table(result.checks))
    if not result.ok:
        raise click.exceptions.Exit(1)
