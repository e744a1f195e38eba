"""`devbox report` as JSON and as one self-contained HTML page (inline CSS and SVG, no script, no fetch).

The page is a Jinja2 template shipped with the package (``templates/report.html.j2``), rendered with autoescape
on: host names, commit messages, users and error messages are data, never markup. Pure: returns text.
"""
from __future__ import annotations

import json

import jinja2
from markupsafe import Markup

from provisioner.report.model import Report, integration_summary, parity_summary
from provisioner.report.svg import render_svg

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("provisioner", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                          lstrip_blocks=True)
TEMPLATE_NAME = "report.html.j2"


def when(value) -> str:
    """An ISO time as people read it on the page (``2026-11-30 16:20 UTC``); anything else as it is."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M")


_ENV.filters["when"] = when


def report_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


def report_html(report: Report) -> str:
    # the SVG is built by render_svg, which escapes every name itself
    svg = Markup(render_svg(report.topology)) if report.topology else None
    return _ENV.get_template(TEMPLATE_NAME).render(
        report=report, integration=integration_summary(report.integration), parity=parity_summary(report.parity),
        svg=svg)
