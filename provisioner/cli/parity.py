"""`devbox parity`: options, the confirmation prompt, and the terminal report (the CLI layer of parity).

Exit codes: 0 parity, 1 drift or hosts that could not be measured, 2 usage.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner.cli.context import console as make_console, pass_app
from provisioner.cli.options import complete_env_names, json_option, yes_option
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.parity.compare import ParityReport


def print_report(report: ParityReport, console=None) -> None:
    from rich.table import Table

    console = console or make_console()
    pairs = Table(title=f"development against {report.against}", title_justify="left")
    for col in ("machine", "reference hosts", "paired by", "drift", "expected"):
        pairs.add_column(col)
    for p in report.pairs:
        drift = sum(1 for d in report.drift if d.machine == p.machine)
        expected = sum(1 for d in report.expected if d.machine == p.machine)
        pairs.add_row(p.machine, ", ".join(p.references) or "(none)", p.how,
                      f"[red]{drift}[/red]" if drift else "0", str(expected))
    console.print(pairs)
    for title, diffs, style, with_reason in (("drift", report.drift, "red", False),
                                             ("expected (declared in devbox.yml)", report.expected, "yellow", True)):
        if not diffs:
            continue
        table = Table(title=title, title_justify="left", title_style=style)
        for col in ("machine", "reference host", "fact", "development", "reference"):
            table.add_column(col, overflow="fold")
        if with_reason:
            table.add_column("reason", overflow="fold")
        for d in diffs:
            row = [d.machine, d.reference, d.fact, d.development, d.reference_value]
            table.add_row(*(row + [d.reason or ""] if d.expected else row))
        console.print(table)
    for u in report.unreachable:
        console.print(f"not measured: {u.host} ({u.side}): {u.message}", style="red", markup=False)
    for host in report.unpaired_references:
        console.print(f"no machine stands for {host}", markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, style="dim")
    console.print(report.verdict(), style="green" if report.ok else "red", markup=False)


def _confirm(plan, _check=None) -> str:
    click.echo(f"parity reads facts (read-only) from {len(plan.hosts)} hosts of '{plan.environment.name}':", err=True)
    for h in plan.hosts:
        click.echo(f"  {h.name} ({h.address})", err=True)
    return click.prompt(f"type '{plan.expected_answer}' to continue", default="", show_default=False, err=True)


@click.command()
@click.option("--against", metavar="ENV|BASELINE.json",
              help="The reference: an environment named in devbox.yml, or a baseline file from --export.")
@click.option("--export", "export", is_flag=True, help="Write a baseline of --env to stdout instead of comparing.")
# not options.env_option: no DEVBOX_ENV here (comparing with an environment is always asked for on the command line)
@click.option("--env", "env", metavar="ENV", shell_complete=complete_env_names,
              help="The environment to compare with (as --against ENV), or with --export to capture.")
@json_option("The report as JSON on stdout.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as one self-contained HTML page.")
@yes_option("Skip the typed confirmation (not for production).", short=False)
@pass_app
@click.pass_context
def parity(ctx: click.Context, app, against, export, env, as_json, html_path, yes):
    """Compare the development VMs with the hosts they stand for; exit code 1 on drift."""
    if export:
        if not env or against or as_json or html_path:
            raise UsageError("--export takes --env ENV only", "e.g. devbox parity --export --env production > baseline.json")
        click.echo(app.parity_export(env, yes=yes, confirm=_confirm), nl=False)
        return
    if env and against and env != against:
        raise UsageError(f"--env {env} and --against {against} name different references",
                         f"give one: --env {env} (or --against {against})")
    report = app.parity(env or against, yes=yes, confirm=_confirm)
    if html_path:
        app.write_parity_html(report, html_path)
    if as_json:
        from provisioner.parity.report import report_json

        click.echo(report_json(report), nl=False)
    else:
        print_report(report)
        if html_path:
            click.echo(f"HTML report: {html_path}")
    if not report.ok:
        ctx.exit(1)
