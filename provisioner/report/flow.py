"""`devbox report`: the real wiring (the environment rails, git, the plan, the result files) and the writes.

Read-only towards every environment; writes only the page and the JSON asked for, each atomically, and the
environment's run artifacts under ``.devbox/envs/<env>/`` like `devbox status --env` does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from provisioner.environments.runs import EnvironmentRuns
from provisioner.fsutil import atomic_write
from provisioner.parity.report import last_report_path
from provisioner.plan.planning import load_plan, plan_project
from provisioner.project.context import Project
from provisioner.report.gather import GitHistory, RunsStampReader, gather
from provisioner.report.model import Report
from provisioner.report.render import report_html, report_json

INTEGRATION_DIR = "integration-report"   # `devbox integration --report-dir`'s default


def collect(project: Project, runs: EnvironmentRuns, env_names: Sequence[str] | None, *,
            integration_dir: Path | None = None, parity_json: Path | None = None, branch: str = "main",
            history: GitHistory | None = None, reader: RunsStampReader | None = None) -> Report:
    root = project.paths.root

    def topology():
        if project.paths.plan.exists():
            return load_plan(root), ".devbox/plan.json"
        # no plan written yet (e.g. a fresh CI checkout): derive it as `devbox plan` would, writing nothing
        return plan_project(project).topology, "devbox.yml and the production inventory (no plan.json yet)"

    return gather(project=root.name, reader=reader or RunsStampReader(runs),
                  history=history or GitHistory(root, branch),
                  env_names=env_names, topology=topology,
                  integration_json=Path(integration_dir or root / INTEGRATION_DIR) / "integration.json",
                  parity_json=Path(parity_json) if parity_json else last_report_path(root),
                  progress=project.progress, project_dir=root)


def write(report: Report, *, html: Path | None, json_path: Path | None) -> list[Path]:
    """The page and the JSON, each written whole or not at all."""
    written = []
    for path, text in ((html, report_html), (json_path, report_json)):
        if path is not None:
            atomic_write(Path(path), text(report))
            written.append(Path(path))
    return written
