"""The app object: one method per user-facing action, returning result objects.

It wires the adapters (Vagrant, Ansible, SSH) into a ``Project`` and hands that to the workflows (plan,
machines, incremental, environments, parity, lab); it holds no logic of its own. Progress is reported through
a callback, never printed here. Nothing below imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from provisioner.adapters.hypervisor_probe import HypervisorProbe
from provisioner.adapters.mitogen import choose as choose_strategy
from provisioner.adapters.playbook_runner import AnsibleRunnerPlaybookRunner, PlaybookRunner
from provisioner.adapters.ssh_probe import ParamikoSshProbe, SshProbe
from provisioner.adapters.vagrant_driver import PythonVagrantDriver, VagrantDriver
from provisioner.errors import DevboxError
from provisioner.plan.planning import (InitResult, PlanResult, RenderResult, init_project, load_plan, plan_project,
                                       render_locked)
from provisioner.plan.topology import Topology
from provisioner.project.context import Progress, Project, load_rules, no_progress
from provisioner.project.paths import ProjectPaths

if TYPE_CHECKING:
    from provisioner.environments.runs import EnvironmentRuns
    from provisioner.environments.stamp import EnvRevisions
    from provisioner.lab.namespace import Lab

# Every workflow but plan/init/render is imported by the methods that use it: every command starts through this
# module, and `devbox plan` (timed against Ansible's own parser in bench/) never needs the VM lifecycle,
# snapshots, environments, parity or the lab, nor SSH (paramiko) and lab code.


def _keep_converged(project: Project, outcome):
    """The automatic `converged` snapshot after a provisioning run (machines/snapshots.py)."""
    from provisioner.machines import snapshots

    from provisioner.machines import snapshots

    return snapshots.keep_converged(project, outcome)


def real_adapters(project_dir: Path) -> dict:
    """The real Vagrant, Ansible and SSH adapters for a project (no side effects until they are used)."""
    paths = ProjectPaths(Path(project_dir))
    return {"vagrant": PythonVagrantDriver(root=paths.root, logs_dir=paths.logs),
            "playbooks": AnsibleRunnerPlaybookRunner(runner_dir=paths.runner, logs_dir=paths.logs,
                                                     known_hosts=paths.known_hosts),
            "ssh_probe": ParamikoSshProbe(known_hosts=paths.known_hosts)}


@dataclass
class Devbox:
    project_dir: Path
    progress: Progress = field(default=no_progress)
    # the adapters; create() wires the real ones, tests pass fakes that subclass the same interfaces
    vagrant: VagrantDriver | None = None
    playbooks: PlaybookRunner | None = None
    ssh_probe: SshProbe | None = None
    hypervisor_probe: HypervisorProbe | None = None   # `doctor` with `hypervisors:`; None: the real one

    @classmethod
    def create(cls, project_dir: Path) -> "Devbox":
        """The real wiring, used by the CLI; tests build ``Devbox`` with fakes instead."""
        project_dir = Path(project_dir).resolve()
        return cls(project_dir=project_dir, **real_adapters(project_dir))

    def project(self) -> Project:
        """What the workflows receive: this project's paths, progress and adapters (as they are now)."""
        return Project(root=Path(self.project_dir), vagrant=self.vagrant, playbooks=self.playbooks,
                       ssh_probe=self.ssh_probe, progress=self.progress, after_provision=_keep_converged)

    # --- plan / init / render -------------------------------------------------------------------------------
    def plan(self, inventory: str | Path | None = None, config: str | Path | None = None, *,
             allow_inventory_scripts: bool = False) -> PlanResult:
        """Read the production inventory and derive the VMs; writes nothing."""
        return plan_project(self.project(), inventory, config, allow_scripts=allow_inventory_scripts)

    def init(self, inventory: str | Path | None = None, force: bool = False, *,
             allow_inventory_scripts: bool = False) -> InitResult:
        """Write devbox.yml (if absent or ``force``), the Vagrantfile, the dev inventory and plan.json."""
        return init_project(self.project(), inventory, force, allow_inventory_scripts)

    def load_topology(self) -> Topology:
        """The plan written by the last init/render (``.devbox/plan.json``), without reading production."""
        return load_plan(self.project_dir)

    def render(self, topology: Topology) -> RenderResult:
        """Write the Vagrantfile (validated by Vagrant), the dev inventory and plan.json for ``topology``."""
        return render_locked(self.project(), topology, load_rules(self.project_dir))

    def config(self):
        """devbox.yml of this project (defaults when there is none)."""
        return load_rules(self.project_dir)

    def _on_one_machine(self, command: str) -> None:
        """VMs spread over `hypervisors:` are planned, rendered and checked (plan, init, doctor), not booted yet:
        devbox's SSH to them through their hypervisor is not built, so `up` would boot VMs it cannot reach."""
        if self.config().hypervisors:
            raise DevboxError(f"`devbox {command}` cannot run VMs spread over hypervisors yet: devbox.yml lists "
                              "`hypervisors`, and only `devbox plan`, `init` and `doctor` support them so far",
                              "remove `hypervisors` from devbox.yml to run the VMs on this machine")

    def config_schema(self) -> str:
        """devbox.yml's JSON Schema (for editors), as shipped with this devbox."""
        from provisioner.config.editor_schema import schema_text

        return schema_text()

    def show_progress(self, callback: Progress) -> None:
        """Report progress to ``callback``, unless progress is already wired (e.g. by a test or a caller)."""
        if self.progress is no_progress:
            self.progress = callback

    # --- VM lifecycle: machines/ ----------------------------------------------------------------------------
    def up(self, names: Sequence[str] = (), *, provision: bool = True, mitogen: bool = False, verbosity: int = 0):
        """Render if the plan changed, boot what is not running, wait for SSH, provision all in one run."""
        self._on_one_machine("up")
        self._use_mitogen(mitogen)
        from provisioner.machines import lifecycle

        return lifecycle.up(self.project(), names, provision_after=provision, verbosity=verbosity)

    def _use_mitogen(self, requested: bool):
        """Opt in to Mitogen for the development VMs' Ansible runs; the strategy chosen (or why not)."""
        if requested:
            self.playbooks.strategy = choose_strategy(requested)

    def provision(self, names: Sequence[str] = (), *, tags: str | None = None, limit: str | None = None,
                  check: bool = False, full: bool = False, dry_run: bool = False, mitogen: bool = False,
                  skip_tags: str | None = None, diff: bool = False, extra_vars: Sequence[str] = (),
                  verbosity: int = 0):
        """Runs only what changed since the last successful run (``full``: everything; ``dry_run``: only plan).
        ``tags``, ``skip_tags``, ``limit``, ``check``, ``extra_vars``: a partial run that records nothing."""
        self._use_mitogen(mitogen)
        from provisioner.machines import lifecycle

        return lifecycle.provision(self.project(), names, tags=tags, limit=limit, check=check, full=full,
                                   dry_run=dry_run, skip_tags=skip_tags, diff=diff, extra_vars=extra_vars,
                                   verbosity=verbosity)

    def idempotence(self, names: Sequence[str] = (), *, verbosity: int = 0):
        """Molecule's idempotence check: full runs until converged, then one that must change nothing."""
        from provisioner.machines import lifecycle

        return lifecycle.idempotence(self.project(), names, verbosity=verbosity)

    def status(self, *, refresh: bool = False):
        """States, SSH, last run per VM, and the changes `devbox provision` would run (``pending``)."""
        from provisioner.machines import lifecycle

        return lifecycle.status(self.project(), refresh=refresh)

    def hosts_block(self):
        """The hosts-file block that names this project's VMs (`<vm>.<domain>`), from the plan."""
        from provisioner.machines import names

        return names.hosts_block(self.project())

    def hosts_write(self, path: Path | None = None):
        """Put the block into ``path`` (default /etc/hosts), replacing only this project's previous block."""
        from provisioner.machines import names

        return names.write_hosts(self.project(), path)

    def hosts_remove(self, path: Path | None = None):
        """Take this project's block out of ``path`` (default /etc/hosts)."""
        from provisioner.machines import names

        return names.remove_hosts(self.project(), path)

    def ssh(self, name: str, command: Sequence[str] = (), *, ssh_args: Sequence[str] = ()):
        from provisioner.machines import lifecycle

        return lifecycle.ssh_command(self.project(), name, command, ssh_args=ssh_args)

    def halt(self, names: Sequence[str] = ()):
        from provisioner.machines import lifecycle

        return lifecycle.halt(self.project(), names)

    def destroy(self, names: Sequence[str] = (), *, confirm=None):
        """``confirm(planned names)`` (the CLI's question, unless --yes) runs after the names are checked."""
        from provisioner.machines import lifecycle

        return lifecycle.destroy(self.project(), names, confirm=confirm)

    def doctor(self):
        from provisioner.machines import doctor

        return doctor.run_checks(self.project(), self.hypervisor_probe)

    # --- snapshots and reset: machines/snapshots.py ---------------------------------------------------------
    def snapshot_save(self, name: str, names: Sequence[str] = (), *, replace: bool = False):
        """The provider's snapshot of each VM, with devbox's ledger and the VM's definition beside it."""
        from provisioner.machines import snapshots

        return snapshots.save(self.project(), name, names, replace=replace)

    def snapshot_restore(self, name: str, names: Sequence[str] = ()):
        """VMs, their ledger and connection details back to snapshot ``name``."""
        from provisioner.machines import snapshots

        return snapshots.restore(self.project(), name, names)

    def snapshot_delete(self, name: str, names: Sequence[str] = ()):
        from provisioner.machines import snapshots

        return snapshots.delete(self.project(), name, names)

    def snapshot_list(self):
        from provisioner.machines import snapshots

        return snapshots.listing(self.project())

    def reset(self, names: Sequence[str] = (), *, mitogen: bool = False, verbosity: int = 0):
        """Back to the `converged` snapshot, then only what changed since (an incremental provision)."""
        self._use_mitogen(mitogen)
        from provisioner.machines import snapshots

        return snapshots.reset(self.project(), names, verbosity=verbosity)

    # --- base box and the test lab: lab/ --------------------------------------------------------------------
    def box_build(self, release: str = "bookworm", mirror: str | None = None, output: Path | None = None, *,
                  force: bool = False, lab_name: str | None = None):
        """Build (or find in the cache) the libvirt base box for ``release`` and add it to Vagrant if needed:
        the user's Vagrant, or with ``lab_name`` the Vagrant home that lab's commands use."""
        from provisioner.lab import box
        from provisioner.lab.namespace import LabPaths

        vagrant_env = {"VAGRANT_HOME": str(LabPaths(lab_name).vagrant_home)} if lab_name else None
        builder = box.BoxBuilder(box.spec_for(release, mirror), progress=self.progress, vagrant_env=vagrant_env)
        return builder.build(output=output, force=force)

    def lab(self, name: str | None = None) -> "Lab":
        """The network-namespace lab that end-to-end tests run in (see lab/namespace.py)."""
        from provisioner.lab import box
        from provisioner.lab.namespace import DEFAULT_NAME, Lab, LabPaths

        paths = LabPaths(name or DEFAULT_NAME)

        def ensure_box() -> None:  # a cache hit (and no `vagrant box add`) once the box exists
            builder = box.BoxBuilder(box.spec_for(box.DEFAULT_RELEASE), progress=self.progress,
                                     vagrant_env={"VAGRANT_HOME": str(paths.vagrant_home)})
            builder.build()

        return Lab(paths.name, paths=paths, progress=self.progress, prepare=ensure_box)

    def integration(self, report_dir: Path, *, lab_name: str | None = None, keep_workdir: bool = False,
                    mitogen: bool = False):
        """The development topology from this checkout, in a lab: up, smoke checks, reports, teardown."""
        def machines_of(project_dir: Path) -> "Devbox":
            inner = type(self).create(project_dir)  # the real adapters, for the copy
            inner.progress = self.progress
            inner._use_mitogen(mitogen)
            return inner

        from provisioner.lab.integration import integrate

        return integrate(Path(self.project_dir), report_dir, machines_factory=machines_of,
                         start_lab=lambda argv: self.lab(lab_name).run(argv), progress=self.progress,
                         keep_workdir=keep_workdir, mitogen=mitogen)

    # --- named environments: environments/ ------------------------------------------------------------------
    def environment_runs(self) -> "EnvironmentRuns":
        from provisioner.environments.runs import EnvironmentRuns

        return EnvironmentRuns(Path(self.project_dir), progress=self.progress, dev_runner=self.playbooks)

    def env_plan(self, env: str | None, *, env_explicit: bool, yes: bool = False, no_check_first: bool = False,
                 limit: str | None = None):
        """Hosts of ``env`` and the steps before applying; refuses production hosts. Runs nothing."""
        return self.environment_runs().plan(env, env_explicit=env_explicit, yes=yes, no_check_first=no_check_first,
                                            limit=limit)

    def env_provision(self, plan, *, confirm, ask_password, tags: str | None = None, limit: str | None = None,
                      skip_tags: str | None = None, extra_vars: Sequence[str] = (), diff: bool = False,
                      verbosity: int = 0):
        """Pinned keys, check-mode diff, typed confirmation (callbacks from the CLI), apply, stamp. Raises
        ``EnvProvisionFailed`` (with the per-host result) when a host failed."""
        return self.environment_runs().provision(plan, confirm=confirm, ask_password=ask_password, tags=tags,
                                                 limit=limit, skip_tags=skip_tags, extra_vars=tuple(extra_vars),
                                                 diff=diff, verbosity=verbosity)

    def env_revisions(self, env: str | None, *, ask_password=None):
        """What each host of ``env`` last had applied by devbox, read from the hosts."""
        return self.environment_runs().revisions(env, ask_password=ask_password)

    def env_status(self, env: str | None, *, ask_password=None) -> EnvRevisions:
        """`status --env`: the revisions per host, with the environment's name (``to_json()`` for --json)."""
        from provisioner.environments.stamp import EnvRevisions

        return EnvRevisions(env or "dev", tuple(self.env_revisions(env, ask_password=ask_password)))

    def environment_names(self) -> list[str]:
        """The environments devbox.yml names (and ``dev``), for shell completion; reads devbox.yml only."""
        from provisioner.environments.model import environments_of

        return sorted(environments_of(self.config()))

    def trust_scan(self, env: str | None):
        return self.environment_runs().scan_keys(env)

    def trust_record(self, environment, checks):
        return self.environment_runs().record_keys(environment, checks)

    # --- parity: parity/ ------------------------------------------------------------------------------------
    def parity(self, against: str | None, *, yes: bool = False, confirm=None):
        """Compare the VMs with an environment or a baseline file; returns a ``ParityReport``."""
        from provisioner.parity import flow as parity_flow

        return parity_flow.compare(self.project(), self.environment_runs(), against, yes=yes, confirm=confirm)

    def write_parity_html(self, report, path: Path) -> Path:
        """The report as one self-contained HTML page, written atomically."""
        from provisioner.parity import flow as parity_flow

        return parity_flow.write_html(report, Path(path))

    def parity_export(self, env: str, *, yes: bool = False, confirm=None) -> str:
        """A baseline (JSON text) of ``env``'s hosts, to compare with later without access to them."""
        from provisioner.parity import flow as parity_flow

        return parity_flow.export(self.project(), self.environment_runs(), env, yes=yes, confirm=confirm)

    # --- the team's page: report/ ---------------------------------------------------------------------------
    def report(self, env_names: Sequence[str] | None = None, *, integration_dir: Path | None = None,
               parity_json: Path | None = None, branch: str = "main"):
        """What each host of the environments runs (read-only, the same rails as any run against them), the last
        integration and parity results, the topology; ``env_names`` None: every declared one but production."""
        from provisioner.report import flow as report_flow

        return report_flow.collect(self.project(), self.environment_runs(), env_names,
                                   integration_dir=integration_dir, parity_json=parity_json, branch=branch)

    def write_report(self, report, *, html: Path | None = None, json_path: Path | None = None) -> list[Path]:
        """The page and its JSON, each written atomically."""
        from provisioner.report import flow as report_flow

        return report_flow.write(report, html=html, json_path=json_path)
