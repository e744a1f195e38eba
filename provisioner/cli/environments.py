"""Named environments: `devbox trust`, and the `--env` branches of `provision` and `status` (machines.py).

Prompts live here (click); what to ask and whether the answer is good enough is decided in
``provisioner.environments``, which also does the runs.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from provisioner.cli.context import console, pass_app
from provisioner.cli.options import env_option
from provisioner.errors import DevboxError
from provisioner.cli.views import env_hosts_table, env_revisions_table, host_keys_table, host_summary_table

if TYPE_CHECKING:
    from provisioner.environments.model import Environment, RunPlan


def env_given_explicitly(ctx: click.Context) -> bool:
    """Only --env on the command line counts as explicit (for --yes), not DEVBOX_ENV."""
    return ctx.get_parameter_source("env") == ParameterSource.COMMANDLINE


def ask_vault_password(env: Environment) -> str:
    return click.prompt(f"Vault password for {env.name}", hide_input=True, err=True)


def confirm_by_typing(plan: RunPlan, preview) -> str:
    """Show what check mode found, then ask for the environment's name."""
    err = console(stderr=True)
    if preview is not None:
        err.print(host_summary_table(preview.result.hosts, "check mode (nothing changed yet)"))
        for change in preview.changes:
            err.print(f"would change: {change.host}: {change.task}", markup=False, style="yellow")
            if change.diff:
                err.print(change.diff, markup=False, highlight=False)
        if not preview.changes:
            err.print("check mode found nothing to change", markup=False)
    return click.prompt(f"Type the environment name ({plan.expected_answer}) to apply", default="",
                        show_default=False, err=True)


def provision_env(app, ctx: click.Context, env_name: str, *, yes: bool, no_check_first: bool,
                  tags: str | None, limit: str | None, skip_tags: str | None = None, extra_vars=(),
                  diff: bool = False, verbosity: int = 0) -> None:
    """`devbox provision --env NAME` (not dev): the hosts, a check-mode preview, the typed confirmation, the run."""
    plan = app.env_plan(env_name, env_explicit=env_given_explicitly(ctx), yes=yes, no_check_first=no_check_first,
                        limit=limit)
    err = console(stderr=True)
    err.print(env_hosts_table(plan))
    for value in extra_vars:  # shown before the question: the confirmation is for what will really be applied
        err.print(f"extra vars: -e {value}", markup=False, style="yellow")
    try:
        result = app.env_provision(plan, confirm=confirm_by_typing, ask_password=ask_vault_password, tags=tags,
                                   limit=limit, skip_tags=skip_tags, extra_vars=extra_vars, diff=diff,
                                   verbosity=verbosity)
    except DevboxError as exc:
        # imported here, as the app imports the environment workflow: `devbox` starts without paramiko
        from provisioner.environments.runs import EnvProvisionFailed

        if isinstance(exc, EnvProvisionFailed):  # the run's table comes before the error
            console().print(host_summary_table(exc.result.apply.hosts, _applied_title(exc.result)))
        raise
    console().print(host_summary_table(result.apply.hosts, _applied_title(result)))


def _applied_title(result) -> str:
    return (f"{result.plan.environment.name}: applied {result.revision.describe()}; "
            f"revision recorded on {len(result.stamped)} hosts")


def status_env(app, env_name: str, as_json: bool) -> None:
    """`devbox status --env NAME`: which revision devbox last applied to each host."""
    result = app.env_status(env_name, ask_password=ask_vault_password)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    console().print(env_revisions_table(env_name, result.hosts))


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
        console().print(host_keys_table(environment, checks))
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
            console().print(f"CHANGED keys: {', '.join(c.host.name for c in changed)}: a rebuilt host, or someone "
                            f"in between. Confirm with the host's owner before recording.", style="red", markup=False)
        click.confirm(f"Record {sum(len(c.offered) for c in to_record)} keys of {len(to_record)} hosts in "
                      f"{environment.known_hosts}?", abort=True, err=True)
        recorded = app.trust_record(environment, to_record)
        recorded_any = True
        click.echo(f"recorded {', '.join(c.host.name for c in recorded)}; commit {environment.known_hosts}")
        if not any("jump host" in c.detail for c in checks if not c.offered):
            return
