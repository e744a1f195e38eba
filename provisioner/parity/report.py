"""Parity reports as JSON and as one self-contained HTML page (inline style, no script, no external asset).

The page is a Jinja2 template shipped with the package, rendered with autoescape on: every value that came from a
host is escaped (package versions, service names and reasons are data, not markup).
"""
from __future__ import annotations

import json
from pathlib import Path

import jinja2

from provisioner import JSON_SCHEMA
from provisioner.parity.compare import Difference, ParityReport


def report_dict(report: ParityReport) -> dict:
    return {
        "schema": JSON_SCHEMA,
        "against": report.against,
        "ok": report.ok,
        "verdict": report.verdict(),
        "summary": {"machines": len(report.pairs), "drift": len(report.drift), "expected": len(report.expected),
                    "unreachable": len(report.unreachable)},
        "pairs": [{"machine": p.machine, "references": list(p.references), "paired_by": p.how}
                  for p in report.pairs],
        "drift": [d.to_json() for d in report.drift],
        "expected": [d.to_json() for d in report.expected],
        "unpaired_references": list(report.unpaired_references),
        "unreachable": [{"host": u.host, "side": u.side, "message": u.message} for u in report.unreachable],
        "notes": list(report.notes),
        "managed": report.managed.to_json(),
    }


def report_json(report: ParityReport) -> str:
    return json.dumps(report_dict(report), indent=2) + "\n"


def last_report_path(project_dir: Path) -> Path:
    """Where `devbox parity` keeps its last comparison (read by `devbox report`)."""
    return Path(project_dir) / ".devbox" / "parity-last.json"


def last_report_json(report: ParityReport, *, finished_at: str) -> str:
    """The saved last comparison: the ``--json`` document and when it finished."""
    return json.dumps({**report_dict(report), "finished_at": finished_at}, indent=2) + "\n"


# autoescape on: package versions, service names, reasons and host names are data, never markup
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("provisioner", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
TEMPLATE_NAME = "parity_report.html.j2"


def _diff_rows(diffs: list[Difference], with_reason: bool) -> list[list[str]]:
    return [[d.machine, d.reference, d.fact, d.development, d.reference_value] + ([d.reason or ""] if with_reason else [])
            for d in diffs]


def report_html(report: ParityReport) -> str:
    """One self-contained page from ``provisioner/templates/parity_report.html.j2``."""
    return _ENV.get_template(TEMPLATE_NAME).render(
        report=report,
        drift_rows=_diff_rows(report.drift, False),
        expected_rows=_diff_rows(report.expected, True),
        pair_rows=[[p.machine, ", ".join(p.references) or "(none)", p.how] for p in report.pairs],
        unreachable_rows=[[u.host, u.side, u.message] for u in report.unreachable],
    )
