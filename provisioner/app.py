"""The app object: one method per user-facing action, returning result objects.

It wires the pure core (inventory, topology, render, state) to the adapters (vagrant, ansible, ssh).
Progress is reported through a callback, never printed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .planning import (InitResult, PlanResult, RenderResult, derive, init_project, load_plan, load_rules,
                       render_project)
from .topology import Topology

Progress = Callable[[str, str], None]  # (subject, message), e.g. ("web-1", "SSH ready")


def _no_progress(subject: str, message: str) -> None:
    pass


@dataclass
class Devbox:
    project_dir: Path
    progress: Progress = field(default=_no_progress)
    # adapters (VagrantDriver, PlaybookRunner, SshProbe); create() wires the real ones, tests pass fakes
    vagrant: Any = None
    playbooks: Any = None
    ssh_probe: Any = None

    @classmethod
    def create(cls, project_dir: Path) -> "Devbox":
        """The real wiring, used by the CLI; tests build ``Devbox`` with fakes instead."""
        from .lifecycle import real_adapters
        project_dir = Path(project_dir).resolve()
        return cls(project_dir=project_dir, **real_adapters(project_dir))

    # --- plan / init / render (issue 2) -------------------------------------------------------------------
    def plan(self, inventory: str | Path | None = None, config: str | Path | None = None, *,
             allow_inventory_scripts: bool = False) -> PlanResult:
        """Read the production inventory and derive the VMs; writes nothing."""
        rules = load_rules(self.project_dir, config)
        topology, source = derive(self.project_dir, rules, inventory, allow_inventory_scripts, self.progress)
        return PlanResult(topology=topology, inventory=source, config=rules.path)

    def init(self, inventory: str | Path | None = None, force: bool = False, *,
             allow_inventory_scripts: bool = False) -> InitResult:
        """Write devbox.yml (if absent or ``force``), the Vagrantfile, the dev inventory and plan.json."""
        return init_project(self, inventory, force, allow_inventory_scripts)

    def load_topology(self) -> Topology:
        """The plan written by the last init/render (``.devbox/plan.json``), without reading production."""
        return load_plan(self.project_dir)

    def render(self, topology: Topology) -> RenderResult:
        """Write the Vagrantfile (validated by Vagrant), the dev inventory and plan.json for ``topology``."""
        return render_project(self, topology, load_rules(self.project_dir, None))

    # --- VM lifecycle (issue 3): the work is in lifecycle.py ------------------------------------------------
    def config(self):
        """devbox.yml of this project (defaults when there is none)."""
        from .planning import load_rules
        return load_rules(self.project_dir, None)

    def up(self, names: Sequence[str] = (), *, provision: bool = True):
        """Render if the plan changed, boot what is not running, wait for SSH, provision all in one run."""
        from . import lifecycle
        return lifecycle.up(self, names, provision_after=provision)

    def use_mitogen(self, requested: bool = True):
        """Opt in to Mitogen for the development VMs' Ansible runs; the strategy chosen (or why not: accelerate.py)."""
        from .accelerate import choose
        self.playbooks.strategy = choose(requested)
        return self.playbooks.strategy

    def provision(self, names: Sequence[str] = (), *, tags: str | None = None, limit: str | None = None,
                  check: bool = False, full: bool = False, dry_run: bool = False):
        """Runs only what changed since the last successful run (``full``: everything; ``dry_run``: only plan)."""
        from . import lifecycle
        return lifecycle.provision(self, names, tags=tags, limit=limit, check=check, full=full, dry_run=dry_run)

    def pending_changes(self):
        """Per VM, what `devbox provision` would run now and why; reads files only, contacts no VM."""
        from . import reprovision
        from .lifecycle import ProjectPaths
        paths = ProjectPaths(self.project_dir)
        config = self.config()
        playbook = (config.path.parent if config.path else paths.root) / config.playbook
        return reprovision.pending(devbox_dir=paths.devbox, playbook=playbook, inventory=paths.inventory,
                                   project_dir=paths.root)

    def status(self, *, refresh: bool = False):
        from . import lifecycle
        return lifecycle.status(self, refresh=refresh)

    def ssh(self, name: str, command: Sequence[str] = ()):
        from . import lifecycle
        return lifecycle.ssh_command(self, name, command)

    def halt(self, names: Sequence[str] = ()):
        from . import lifecycle
        return lifecycle.halt(self, names)

    def destroy(self, names: Sequence[str] = ()):
        """Destroys without asking: the CLI asks first (unless --yes)."""
        from . import lifecycle
        return lifecycle.destroy(self, names)

    def doctor(self):
        from . import doctor
        return doctor.run_checks(self)

    # --- base box and the test lab (issue 3): the work is in box.py and lab.py ------------------------------
    def box_build(self, release: str = "bookworm", mirror: str | None = None, output: Path | None = None, *,
                  force: bool = False, lab_name: str | None = None):
        """Build (or find in the cache) the libvirt base box for ``release`` and add it to Vagrant if needed:
        the user's Vagrant, or with ``lab_name`` the Vagrant home that lab's commands use."""
        from . import box, lab
        vagrant_env = {"VAGRANT_HOME": str(lab.LabPaths(lab_name).vagrant_home)} if lab_name else None
        builder = box.BoxBuilder(box.spec_for(release, mirror), progress=self.progress, vagrant_env=vagrant_env)
        return builder.build(output=output, force=force)

    def lab(self, name: str | None = None):
        """The network-namespace lab that end-to-end tests run in (see lab.py)."""
        from . import box, lab
        paths = lab.LabPaths(name or lab.DEFAULT_NAME)

        def ensure_box() -> None:  # a cache hit (and no `vagrant box add`) once the box exists
            builder = box.BoxBuilder(box.spec_for(box.DEFAULT_RELEASE), progress=self.progress,
                                     vagrant_env={"VAGRANT_HOME": str(paths.vagrant_home)})
            builder.build()

        return lab.Lab(paths.name, paths=paths, progress=self.progress, prepare=ensure_box)

    # --- named environments (issue 6): the work is in env_runs.py -------------------------------------------
    def environment_runs(self):
        from .env_runs import EnvironmentRuns
        return EnvironmentRuns(self.project_dir, progress=self.progress, dev_runner=self.playbooks)

    def env_plan(self, env: str | None, *, env_explicit: bool, yes: bool = False, no_check_first: bool = False,
                 limit: str | None = None):
        """Hosts of ``env`` and the steps before applying; refuses production hosts. Runs nothing."""
        return self.environment_runs().plan(env, env_explicit=env_explicit, yes=yes, no_check_first=no_check_first,
                                            limit=limit)

    def env_provision(self, plan, *, confirm, ask_password, tags: str | None = None, limit: str | None = None):
        """Pinned keys, check-mode diff, typed confirmation (callbacks from the CLI), apply, stamp."""
        return self.environment_runs().provision(plan, confirm=confirm, ask_password=ask_password, tags=tags,
                                                 limit=limit)

    def env_revisions(self, env: str | None, *, ask_password=None):
        """What each host of ``env`` last had applied by devbox, read from the hosts."""
        return self.environment_runs().revisions(env, ask_password=ask_password)

    def trust_scan(self, env: str | None):
        return self.environment_runs().scan_keys(env)

    def trust_record(self, environment, checks):
        return self.environment_runs().record_keys(environment, checks)

    def integration(self, report_dir: Path, *, lab_name: str | None = None, keep_workdir: bool = False,
                    mitogen: bool = False):
        """The development topology from this checkout, in a lab: up, smoke checks, reports, teardown."""
        from .integration import integrate
        return integrate(self, report_dir, lab_name=lab_name, keep_workdir=keep_workdir, mitogen=mitogen)

    # --- parity (issue 7): the work is in parity_flow.py ------------------------------------------------------
    def parity(self, against: str | None, *, yes: bool = False, confirm=None):
        """Compare the VMs with an environment or a baseline file; returns a ``parity.ParityReport``."""
        from . import parity_flow
        return parity_flow.compare(self, against, yes=yes, confirm=confirm)

    def parity_export(self, env: str, *, yes: bool = False, confirm=None) -> str:
        """A baseline (JSON text) of ``env``'s hosts, to compare with later without access to them."""
        from . import parity_flow
        return parity_flow.export(self, env, yes=yes, confirm=confirm)
