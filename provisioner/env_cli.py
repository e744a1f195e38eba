"""The CLI layer of named environments: `devbox trust`, and `provision`/`status` with `--env`.

Prompts live here (click); what to ask and whether the answer is good enough is decided in ``environments``;
the runs happen in ``env_runs``. Registered on the main group by ``cli.py``.
"""
from __future__ import annotations

from pathlib import Path

import click

from .environments import Environment, RunPlan

pass_app = click.make_pass_decorator(object)


def _console(stderr: bool = False):
    from .ui import console
    return console(stderr=stderr)


def env_option(f):
    """``--env NAME``, also from DEVBOX_ENV; only the command line counts as "explicit" for --yes."""
    return click.option("--env", "env", envvar="DEVBOX_ENV", metavar="NAME",
                        help="Target environment from devbox.yml (default: dev, the local VMs; also DEVBOX_ENV).")(f)


def env_given_explicitly(ctx: click.Context) -> bool:
    from click.core import ParameterSource
    return ctx.get_parameter_source("env") == ParameterSource.COMMANDLINE


def ask_vault_password(env: Environment) -> str:
    return click.prompt(f"Vault password for {env.name}", hide_input=True, err=True)


def show_plan(plan: RunPlan) -> None:
    from rich.table import Table

    table = Table(title=f"{len(plan.hosts)} hosts of {plan.environment.name} to apply to "
                        f"({plan.environment.inventory})", title_justify="left")
    for col in ("host", "address", "port"):
        table.add_column(col)
    for h in plan.hosts:
        table.add_row(h.name, h.address, str(h.port))
    _console(stderr=True).print(table)


def confirm_by_typing(plan: RunPlan, preview) -> str:
    """Show what check mode found, then ask for the environment's name."""
    console = _console(stderr=True)
    if preview is not None:
        from .ui import host_summary_table

        console.print(host_summary_table(preview.result.hosts, "check mode (nothing changed yet)"))
        for change in preview.changes:
            console.print(f"would change: {change.host}: {change.task}", markup=False, style="yellow")
            if change.diff:
                console.print(change.diff, markup=False, highlight=False)
        if not preview.changes:
            console.print("check mode found nothing to change", markup=False)
    return click.prompt(f"Type the environment name ({plan.expected_answer}) to apply", default="",
                        show_default=False, err=True)


def provision_env(app, ctx: click.Context, env_name: str, *, yes: bool, no_check_first: bool,
                  tags: str | None, limit: str | None) -> None:
    plan = app.env_plan(env_name, env_explicit=env_given_explicitly(ctx), yes=yes, no_check_first=no_check_first,
                        limit=limit)
    show_plan(plan)
    result = app.env_provision(plan, confirm=confirm_by_typing, ask_password=ask_vault_password, tags=tags,
                               limit=limit)
    from .ui import host_summary_table

    title = (f"{plan.environment.name}: applied {result.revision.describe()}; "
             f"revision recorded on {len(result.stamped)} hosts")
    _console().print(host_summary_table(result.apply.hosts, title))
    if not result.ok:
        from .errors import DevboxError

        failures = "\n".join(f"  {f}" for f in result.apply.failures) or f"  status {result.apply.status}"
        raise DevboxError(f"provisioning {plan.environment.name} failed:\n{failures}\nfull log: "
                          f"{result.apply.log_path}", "fix the failing task and run the command again")


def status_env(app, env_name: str, as_json: bool) -> None:
    revisions = app.env_revisions(env_name, ask_password=ask_vault_password)
    if as_json:
        import json

        click.echo(json.dumps({"environment": env_name or "dev", "hosts": [
            {"host": r.host, "revision": r.revision, "applied": dict(r.stamp) if r.stamp else None,
             "problem": r.problem or None} for r in revisions]}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"what each host of {env_name or 'dev'} runs (recorded by devbox)", title_justify="left")
    for col in ("host", "revision", "applied at (UTC)", "by", "partial"):
        table.add_column(col, overflow="fold")
    for r in revisions:
        s = r.stamp or {}
        table.add_row(r.host, r.revision, str(s.get("applied_at", "")), str(s.get("applied_by", "")),
                      ("yes: " + ", ".join(f"{k} {s[k]}" for k in ("limit", "tags") if s.get(k))) if s.get("partial")
                      else ("no" if s else ""))
    _console().print(table)


@click.command()
@env_option
@pass_app
def trust(app, env):
    """Show the SSH host keys of an environment's hosts and pin them in environments/<env>.known_hosts.

    Compare the fingerprints with what the hosts' owners publish before answering; commit the file so the whole
    team connects to the same machines. Hosts behind a jump host (ProxyJump) are reached through it once its own
    key is pinned, in a second round.
    """
    recorded_any = False
    for _ in range(3):  # jump hosts first, then the hosts behind them
        environment, checks = app.trust_scan(env)
        _show_keys(environment, checks)
        to_record = [c for c in checks if c.offered and not c.ok]
        if not to_record:
            unreachable = [c for c in checks if not c.offered]
            if unreachable:
                click.echo(f"not reached: {', '.join(c.host.name for c in unreachable)}", err=True)
            if not recorded_any:
                click.echo("all keys are already pinned" if not unreachable else "nothing to record")
            return
        changed = [c for c in to_record if c.status == "changed"]
        if changed:
            _console().print(f"CHANGED keys: {', '.join(c.host.name for c in changed)}: a rebuilt host, or someone "
                             f"in between. Confirm with the host's owner before recording.", style="red", markup=False)
        click.confirm(f"Record {sum(len(c.offered) for c in to_record)} keys of {len(to_record)} hosts in "
                      f"{environment.known_hosts}?", abort=True, err=True)
        recorded = app.trust_record(environment, to_record)
        recorded_any = True
        click.echo(f"recorded {', '.join(c.host.name for c in recorded)}; commit {environment.known_hosts}")
        if not any("jump host" in c.detail for c in checks if not c.offered):
            return


def _show_keys(environment, checks) -> None:
    from rich.table import Table

    table = Table(title=f"host keys of {environment.name} ({environment.known_hosts})", title_justify="left")
    for col in ("host", "known_hosts name", "status", "key", "SHA256 fingerprint"):
        table.add_column(col, overflow="fold")
    for c in checks:
        first = True
        for k in c.offered or ():
            table.add_row(c.host.name if first else "", c.entry if first else "", c.status if first else "",
                          k.key_type, k.fingerprint)
            first = False
        if first:
            table.add_row(c.host.name, c.entry, c.status, "", c.detail)
    _console().print(table)


mitogen_option = click.option(
    "--mitogen", is_flag=True, envvar="DEVBOX_MITOGEN",
    help="Development VMs only, opt-in: run Ansible with Mitogen's strategy (one Python per VM for the whole run; "
         "much faster on emulated VMs). Falls back to Ansible's own strategy, saying why, when Mitogen is missing "
         "or does not support the installed ansible-core. Also DEVBOX_MITOGEN=1.")


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
    from .integration import summary_lines

    from .app import _no_progress

    if getattr(app, "progress", None) in (None, _no_progress):  # progress lines on stderr, the summary on stdout
        app.progress = lambda subject, message: click.echo(f"{subject}: {message}", err=True)
    outcome = app.integration(report_dir, lab_name=lab_name, keep_workdir=keep_workdir, mitogen=mitogen)
    for line in summary_lines(outcome.report):
        click.echo(line)
    click.echo(f"reports: {outcome.junit} {outcome.json}")
    if outcome.workdir:
        click.echo(f"kept the run's copy of the checkout: {outcome.workdir}")
    click.echo("integration: " + ("passed" if outcome.exit_code == 0 else "FAILED"))
    raise click.exceptions.Exit(outcome.exit_code)
