"""The base box and the test lab: `devbox box build`, `devbox lab ...`, and `devbox integration` (lab end to end)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from provisioner.cli.context import pass_app
from provisioner.cli.options import force_option, lab_name_option, mitogen_option


def _echo_progress(app) -> None:
    """Progress lines on stderr for long steps (box build, lab, integration), unless someone already wired progress;
    results go to stdout."""
    app.show_progress(lambda subject, message: click.echo(f"{subject}: {message}", err=True))


@click.group()
def box():
    """The libvirt base box, built from Debian packages alone."""


@box.command("build")
@click.option("--release", default="bookworm", show_default=True, help="Debian release of the box.")
@click.option("--mirror", metavar="URL", help="Debian mirror (default: this machine's apt sources).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also copy the box file here.")
@force_option("Build again even if a box with the same inputs is cached.")
@click.option("--lab", "lab_name", metavar="NAME", help="Add the box where the lab NAME's Vagrant looks for it.")
@pass_app
def box_build(app, release, mirror, output, force, lab_name):
    """Build the box (cached by a digest of its inputs) and add it to Vagrant when Vagrant lacks it."""
    _echo_progress(app)
    r = app.box_build(release=release, mirror=mirror, output=output, force=force, lab_name=lab_name)
    how = "cached" if r.cached else f"built in {r.seconds:.0f} s"
    click.echo(f"{r.name}: {r.path} ({r.size_bytes / 1e6:.0f} MB, {how}"
               f"{', added to Vagrant' if r.added else ', already in Vagrant'})")


@click.group()
def lab():
    """An isolated libvirt in a network namespace, for end-to-end tests on real VMs (needs root)."""


@lab.command("up")
@lab_name_option
@pass_app
def lab_up(app, name):
    """Start the lab and print the environment for commands run in it."""
    _echo_progress(app)
    r = app.lab(name).up()
    click.echo(f"lab {r.name} up in {r.seconds:.1f} s; run commands in it with: "
               f"devbox lab exec{' --name ' + name if name else ''} -- CMD")
    for key, value in r.env.items():
        click.echo(f"{key}={value}")


@lab.command("down")
@lab_name_option
@pass_app
def lab_down(app, name):
    """Stop everything the lab started and delete its namespace (also cleans up after a crashed run)."""
    _echo_progress(app)
    seconds = app.lab(name).down()
    click.echo(f"lab down in {seconds:.1f} s")


@lab.command("status")
@lab_name_option
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
@lab_name_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def lab_exec(app, name, command):
    """Run COMMAND in a lab that is already up (see `lab run` for up + command + down)."""
    sys.exit(app.lab(name).exec(list(command)))


@lab.command("run", context_settings={"ignore_unknown_options": True})
@lab_name_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def lab_run(app, name, command):
    """Start the lab, run COMMAND in it, tear it down (always); exit with COMMAND's exit code."""
    _echo_progress(app)
    sys.exit(app.lab(name).run(list(command)))


@click.command()
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("integration-report"),
              show_default=True, help="Where integration.xml (JUnit) and integration.json are written.")
@click.option("--lab-name", default=None, help="Lab (network namespace) name; default: devbox-lab.")
@click.option("--keep-workdir", is_flag=True, help="Keep the copy of the checkout the run used (for debugging).")
@mitogen_option
@pass_app
def integration(app, report_dir, lab_name, keep_workdir, mitogen):
    """Build the development topology from this checkout in an isolated lab, provision it, run the smoke checks
    of devbox.yml, write JUnit XML + JSON reports, tear everything down. Exit code 0 only if all passed."""
    _echo_progress(app)
    outcome = app.integration(report_dir, lab_name=lab_name, keep_workdir=keep_workdir, mitogen=mitogen)
    from provisioner.lab.integration import summary_lines

    for line in summary_lines(outcome.report):
        click.echo(line)
    click.echo(f"reports: {outcome.junit} {outcome.json}")
    if outcome.workdir:
        click.echo(f"kept the run's copy of the checkout: {outcome.workdir}")
    click.echo("integration: " + ("passed" if outcome.exit_code == 0 else "FAILED"))
    raise click.exceptions.Exit(outcome.exit_code)
