"""Parity reports as JSON and as one self-contained HTML page (inline style, no script, no external asset).

Every value that came from a host is escaped: package versions, service names and reasons are data, not markup.
"""
from __future__ import annotations

import json
from html import escape

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


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f2f2f2}td.v{font-family:monospace}
.ok{color:#1a7f37}.bad{color:#c62828}.exp{color:#8a6d00}
"""


def _table(headers: list[str], rows: list[list[str]], *, mono: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=v" if i in mono else ""}>{escape(str(c))}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _diff_rows(diffs: list[Difference], with_reason: bool) -> list[list[str]]:
    return [[d.machine, d.reference, d.fact, d.development, d.reference_value] + ([d.reason or ""] if with_reason else [])
            for d in diffs]


def report_html(report: ParityReport) -> str:
    verdict = f'<p class={"ok" if report.ok else "bad"}>{escape(report.verdict())}</p>'
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>devbox parity against {escape(report.against)}</title>", f"<style>{_STYLE}</style></head><body>",
        f"<h1>devbox parity: development against {escape(report.against)}</h1>", verdict,
        "<h2>Drift</h2>",
        _table(["machine", "reference host", "fact", "development", "reference"], _diff_rows(report.drift, False),
               mono={3, 4}) if report.drift else "<p class=ok>none</p>",
        "<h2>Expected differences (declared in devbox.yml)</h2>",
        _table(["machine", "reference host", "fact", "development", "reference", "reason"],
               _diff_rows(report.expected, True), mono={3, 4}) if report.expected else "<p>none</p>",
        "<h2>Pairs</h2>",
        _table(["machine", "reference hosts", "paired by"],
               [[p.machine, ", ".join(p.references) or "(none)", p.how] for p in report.pairs]),
    ]
    if report.unreachable:
        parts += ["<h2>Not measured</h2>",
                  _table(["host", "side", "problem"], [[u.host, u.side, u.message] for u in report.unreachable])]
    if report.unpaired_references:
        parts += ["<h2>Reference hosts no machine stands for</h2>",
                  "<ul>" + "".join(f"<li>{escape(h)}</li>" for h in report.unpaired_references) + "</ul>"]
    if report.notes:
        parts += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)
