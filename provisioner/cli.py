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

from .env_cli import env_option, mitogen_option, provision_env, status_env  # noqa: E402 - needs nothing from this module


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
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=160)   # logs and pipes: no 80-column wrap
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


# --- base box and the test lab (issue 3) -----------------------------------------------------------------
def _echo_progress(app) -> None:
    """Progress lines on stderr for long steps (box build, lab), unless someone already wired progress."""
    from .app import _no_progress
    if getattr(app, "progress", None) is _no_progress:
        app.progress = lambda subject, message: click.echo(f"{subject}: {message}", err=True)


@main.group()
def box():
    """The libvirt base box, built from Debian packages alone."""


@box.command("build")
@click.option("--release", default="bookworm", show_default=True, help="Debian release of the box.")
@click.option("--mirror", metavar="URL", help="Debian mirror (default: this machine's apt sources).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also copy the box file here.")
@click.option("--force", is_flag=True, help="Build again even if a box with the same inputs is cached.")
@click.option("--lab", "lab_name", metavar="NAME", help="Add the box where the lab NAME's Vagrant looks for it.")
@pass_app
def box_build(app, release, mirror, output, force, lab_name):
    """Build the box (cached by a digest of its inputs) and add it to Vagrant when Vagrant lacks it."""
    _echo_progress(app)
    r = app.box_build(release=release, mirror=mirror, output=output, force=force, lab_name=lab_name)
    how = "cached" if r.cached else f"built in {r.seconds:.0f} s"
    click.echo(f"{r.name}: {r.path} ({r.size_bytes / 1e6:.0f} MB, {how}"
               f"{', added to Vagrant' if r.added else ', already in Vagrant'})")


@main.group()
def lab():
    """An isolated libvirt in a network namespace, for end-to-end tests on real VMs (needs root)."""


_lab_name = click.option("--name", default=None, help="Lab name (network namespace); default: devbox-lab.")


@lab.command("up")
@_lab_name
@pass_app
def lab_up(app, name):
    """Start the lab and print the environment for commands run in it."""
    _echo_progress(app)
    the_lab = app.lab(name)
    r = the_lab.up()
    click.echo(f"lab {r.name} up in {r.seconds:.1f} s; run commands in it with: "
               f"devbox lab exec{' --name ' + name if name else ''} -- CMD")
    for key, value in r.env.items():
        click.echo(f"{key}={value}")


@lab.command("down")
@_lab_name
@pass_app
def lab_down(app, name):
    """Stop everything the lab started and delete its namespace (also cleans up after a crashed run)."""
    _echo_progress(app)
    seconds = app.lab(name).down()
    click.echo(f"lab down in {seconds:.1f} s")


@lab.command("status")
@_lab_name
@pass_app
def lab_status(app, name):
    """Is the lab running: namespace, daemons, VMs."""
    s = app.lab(name).status()
    click.echo(f"lab {s.name}: namespace {'present' if s.namespace else 'absent'}")
    for proc, ok in s.processes.items():
        click.echo(f"  {proc}: {'running' if ok else 'not running'}")
    click.echo(f"  VMs: {', '.join(s.domains) or 'none'}")
    click.echo(f"  VAGRANT_HOME={s.vagrant_home}  DEVBOX_APT_PROXY={s.apt_proxy}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@_lab_name
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def lab_exec(app, name, command):
    """Run COMMAND in a lab that is already up (see `lab run` for up + command + down)."""
    sys.exit(app.lab(name).exec(list(command)))


@lab.command("run", context_settings={"ignore_unknown_options": True})
@_lab_name
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def lab_run(app, name, command):
    """Start the lab, run COMMAND in it, tear it down (always); exit with COMMAND's exit code."""
    _echo_progress(app)
    sys.exit(app.lab(name).run(list(command)))


# --- VM lifecycle (issue 3) ----------------------------------------------------------------------------
_names_argument = click.argument("names", nargs=-1)


def _with_progress(app, title: str):
    """Show the app's progress live while a command runs."""
    from .ui import LiveProgress

    display = LiveProgress(title)
    app.progress = display
    return display


def _print_provision(result) -> None:
    from .ui import console, host_summary_table

    if result.plan is not None:  # incremental provisioning: what ran (or would run) per VM, and why
        from .incremental_view import plan_table, plan_title
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


def _provision_failed(exc) -> None:
    """Show the per-host table before the error message (the group prints the message)."""
    from .ui import console, host_summary_table

    console(stderr=True).print(host_summary_table(exc.result.playbook.hosts, "provisioning summary"))


@main.command()
@_names_argument
@click.option("--no-provision", is_flag=True, help="Boot and wait for SSH only.")
@mitogen_option
@pass_app
def up(app, names, no_provision, mitogen):
    """Boot the VMs (all, or NAMES) and provision them in one Ansible run."""
    from .lifecycle import ProvisionFailed

    if mitogen:
        app.use_mitogen()
    try:
        with _with_progress(app, "devbox up"):
            result = app.up(names, provision=not no_provision)
    except ProvisionFailed as exc:
        _provision_failed(exc)
        raise
    booted = ", ".join(result.booted) or "none"
    click.echo(f"booted: {booted} ({result.boot_seconds:.0f}s); SSH ready after {result.ssh_seconds:.0f}s"
               + (f"; already running: {', '.join(result.already_running)}" if result.already_running else ""))
    if result.provision:
        _print_provision(result.provision)


@main.command()
@_names_argument
@click.option("--tags", "-t", help="Only run plays and tasks tagged with these values (Ansible --tags).")
@click.option("--limit", "-l", help="Further limit the hosts (Ansible --limit pattern).")
@click.option("--check", is_flag=True, help="Dry run (Ansible --check --diff): change nothing.")
@click.option("--full", is_flag=True, help="Run the whole playbook on every VM, whatever changed.")
@click.option("--dry-run", is_flag=True, help="List per VM what would run and why; run nothing.")
@env_option
@click.option("--yes", "-y", is_flag=True, help="With --env on the command line: do not ask for the typed name "
                                                "(never for production).")
@click.option("--no-check-first", is_flag=True, help="With --env: skip the check-mode diff before applying.")
@mitogen_option
@click.pass_context
def provision(ctx, names, tags, limit, check, full, dry_run, env, yes, no_check_first, mitogen):
    """Run the production playbook against the development VMs (all, or NAMES), or an environment (--env)."""
    from .lifecycle import ProvisionFailed

    app = ctx.find_object(object)
    if env and env != "dev":
        if full or dry_run:
            raise click.UsageError("--full and --dry-run are for the development VMs, not with --env")
        if names or check:
            raise click.UsageError("with --env, select hosts with --limit (no NAMES), and --check is implied "
                                   "unless --no-check-first")
        return provision_env(app, ctx, env, yes=yes, no_check_first=no_check_first, tags=tags, limit=limit)
    if mitogen:
        app.use_mitogen()
    try:
        with _with_progress(app, "devbox provision"):
            result = app.provision(names, tags=tags, limit=limit, check=check, full=full, dry_run=dry_run)
    except ProvisionFailed as exc:
        _provision_failed(exc)
        raise
    _print_provision(result)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print {\"machines\": [...]} as JSON.")
@click.option("--refresh", is_flag=True, help="Ask vagrant for the current states (one call; slower).")
@env_option
@pass_app
def status(app, as_json, refresh, env):
    """Per VM: state, SSH reachability, when it was last provisioned and from which revision.

    With --env (dev included): read from each host which revision devbox last applied there."""
    if env:
        return status_env(app, env, as_json)
    result = app.status(refresh=refresh)
    if as_json:
        import json
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    from .ui import console, status_table
    console().print(status_table(result.machines, result.refreshed))
    _print_pending(app)


def _print_pending(app) -> None:
    """Pending changes per VM; a playbook devbox cannot read must not hide the machines' status."""
    from .errors import DevboxError
    from .incremental_view import plan_table, plan_title
    from .ui import console

    try:
        plan = app.pending_changes()
    except DevboxError as exc:
        click.secho(f"pending changes: unknown ({exc})", fg="yellow", err=True)
        return
    console().print(plan_table(plan, plan_title(plan, ran=False, dry_run=False)))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_app
def ssh(app, name, command):
    """Open a shell on VM NAME, or run `-- COMMAND` there (uses the cached connection, no vagrant)."""
    import os
    argv = app.ssh(name, command).argv
    sys.stdout.flush()
    os.execvp(argv[0], list(argv))  # become ssh: the terminal, signals and exit code are the user's


@main.command()
@_names_argument
@pass_app
def halt(app, names):
    """Shut the VMs (all, or NAMES) down; `devbox up` starts them again."""
    with _with_progress(app, "devbox halt"):
        result = app.halt(names)
    click.echo(f"halted: {', '.join(result.names)} ({result.seconds:.0f}s)")


@main.command()
@_names_argument
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@pass_app
def destroy(app, names, yes):
    """Delete the VMs (all, or NAMES), their cached connection data and host keys."""
    if not yes:
        which = ", ".join(names) if names else "ALL development VMs of this project"
        click.confirm(f"Destroy {which}?", abort=True, err=True)
    with _with_progress(app, "devbox destroy"):
        result = app.destroy(names)
    click.echo(f"destroyed: {', '.join(result.names)} ({result.seconds:.0f}s)")


@main.command()
@pass_app
def doctor(app):
    """Check vagrant, its libvirt plugin and daemon, ansible-core, memory and the box; say what to fix."""
    from .ui import console, doctor_table

    result = app.doctor()
    console().print(doctor_table(result.checks))
    if not result.ok:
        raise click.exceptions.Exit(1)


# --- named environments (issue 6): trust, and the --env parts of provision/status --------------------------
from .env_cli import integration as _integration, trust as _trust  # noqa: E402 - registered after `main` exists

main.add_command(_trust)
main.add_command(_integration)

# --- parity (issue 7): the command lives with its report rendering ----------------------------------------
from .parity_cli import parity as _parity  # noqa: E402 - registered after `main` exists

main.add_command(_parity)
