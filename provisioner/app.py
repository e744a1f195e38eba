"""The app object: one method per user-facing action, returning result objects.

It wires the pure core (inventory, topology, render, state) to the adapters (vagrant, ansible, ssh).
Progress is reported through a callback, never printed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .planning import InitResult, PlanResult, RenderResult
from .topology import Topology

Progress = Callable[[str, str], None]  # (subject, message), e.g. ("web-1", "SSH ready")


def _no_progress(subject: str, message: str) -> None:
    pass


@dataclass
class Devbox:
    project_dir: Path
    progress: Progress = field(default=_no_progress)

    @classmethod
    def create(cls, project_dir: Path) -> "Devbox":
        """The real wiring, used by the CLI; tests build ``Devbox`` with fakes instead."""
        return cls(project_dir=Path(project_dir).resolve())

    # --- plan / init / render (issue 2) -------------------------------------------------------------------
    def plan(self, inventory: str | Path | None = None, config: str | Path | None = None, *,
             allow_inventory_scripts: bool = False) -> PlanResult:
        """Read the production inventory and derive the VMs; writes nothing."""
        from .planning import load_rules, derive
        rules = load_rules(self.project_dir, config)
        topology, source = derive(self.project_dir, rules, inventory, allow_inventory_scripts, self.progress)
        return PlanResult(topology=topology, inventory=source, config=rules.path)

    def init(self, inventory: str | Path | None = None, force: bool = False, *,
             allow_inventory_scripts: bool = False) -> InitResult:
        """Write devbox.yml (if absent or ``force``), the Vagrantfile, the dev inventory and plan.json."""
        from .planning import init_project
        return init_project(self, inventory, force, allow_inventory_scripts)

    def load_topology(self) -> Topology:
        """The plan written by the last init/render (``.devbox/plan.json``), without reading production."""
        from .planning import load_plan
        return load_plan(self.project_dir)

    def render(self, topology: Topology) -> RenderResult:
        """Write the Vagrantfile (validated by Vagrant), the dev inventory and plan.json for ``topology``."""
        from .planning import load_rules, render_project
        return render_project(self, topology, load_rules(self.project_dir, None))
