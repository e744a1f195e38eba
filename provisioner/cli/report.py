"""`devbox report`: options, one app call, the files written and a short summary (the CLI layer of report).

Exit codes: 0 the page (and JSON) written and every environment named was read; 1 written, but an environment
or some of its hosts could not be read (shown on the page, with why); 2 usage.
"""
from __future__ import annotations

from pathlib import Path

import click

from provisioner.cli.context import console, pass_app
from provisioner.cli.options import complete_env_names
from provisioner.errors import UsageError


@click.command()
@click.option("--env", "envs", multiple=True, metavar="ENV", shell_complete=complete_env_names,
              help="An environment to read (repeat for several); default: every one devbox.yml declares except "
                   "production.")
@click.option("--no-env", is_flag=True,
              help="Read no environment (no connection at all): the topology and the last integration and parity "
                   "results only.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as one self-contained HTML page here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the same facts as JSON here.")
@click.option("--integration-report", "integration_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where `devbox integration` wrote its reports; default: integration-report/.")
@click.option("--parity-report", "parity_json", type=click.Path(dir_okay=False, path_type=Path),
              help="A `devbox parity --json` file; default: the last comparison `devbox parity` kept.")
@click.option("--branch", default="main", show_default=True,
              help="The branch hosts are counted behind (commits in this checkout).")
@pass_app
@click.pass_context
def report(ctx: click.Context, app, envs, no_env, html_path, json_path, integration_dir, parity_json, branch):
    """One page for the whole team: what each environment's hosts run, the last integration and parity results,
    and the development topology. Read-only."""
    if not html_path and not json_path:
        raise UsageError("say where to write the report", "e.g. devbox report --html report.html --json report.json")
    if envs and no_env:
        raise UsageError("--env and --no-env together", "give one of them")
    app.show_progress(lambda subject, message: click.echo(f"{subject}: {message}", err=True))
    result = app.report(() if no_env else (list(envs) or None), integration_dir=integration_dir,
                        parity_json=parity_json, branch=branch)
    written = app.write_report(result, html=html_path, json_path=json_path)
    out = console()
    for env in result.environments:
        out.print(f"{env.name}: {env.summary()}", markup=False, style=None if env.ok else "red")
    for line in (_integration_line(result), _parity_line(result)):
        out.print(line, markup=False)
    for path in written:
        click.echo(f"written: {path}")
    for env in result.unread:   # as any command's error is shown: the reason and the next step
        if env.error:
            click.secho(f"error: {env.name}: {env.error}", fg="red", err=True)
            if env.hint:
                click.echo(f"hint: {env.hint}", err=True)
    if result.unread:
        click.echo(f"not read: {', '.join(e.name for e in result.unread)} (on the page, with why)", err=True)
        ctx.exit(1)


def _integration_line(result) -> str:
    o = result.integration
    if o.data is None:
        return f"integration: {o.problem}"
    return f"integration: {'passed' if o.data.get('ok') else 'failed'} ({o.data.get('started')})"


def _parity_line(result) -> str:
    o = result.parity
    if o.data is None:
        return f"parity: {o.problem}"
    return f"parity against {o.data.get('against')}: {o.data.get('verdict')}"
