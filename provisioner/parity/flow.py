"""`devbox parity`: the steps, in order (orchestration; the comparison itself is the pure ``parity`` module).

1. What the playbooks manage, read statically from ``site.yml`` and its roles.
2. The development VMs' facts, through the development runner and the generated inventory.
3. The reference: a baseline file (no connection at all), or a named environment under the same rails as any
   other run against it (declared in devbox.yml, production only when allowed, no production host in a
   non-production inventory, typed confirmation unless ``--yes``, pinned host keys), gathered read-only from a
   copy of its inventory without vault files, with no vault password.
4. Pair, compare, report.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from provisioner.environments.model import RunPlan, check_confirmation
from provisioner.environments.runs import EnvironmentRuns, RunnerSettings
from provisioner.incremental.ledger import ledger_of
from provisioner.machines.lifecycle import write_connection_inventory
from provisioner.plan.planning import load_plan
from provisioner.project.context import Project
from provisioner.project.state import load_state
from provisioner.errors import DevboxError, UsageError
from provisioner.parity.compare import (Machine, ParityReport, baseline_json, build_report, expectations_from_config,
                     load_baseline, roles_from_ledger)
from provisioner.fsutil import atomic_write
from provisioner.parity.report import last_report_json, last_report_path, report_html
from provisioner.parity.gather import Gathered, gather, inventory_all_vars, readable_inventory_copy
from provisioner.parity.scan import Managed, scan_playbook
from provisioner.environments.trust import require_trusted


Confirm = Callable[[RunPlan, None], "str | None"]  # shows the hosts, returns the environment name as typed


def _managed(project: Project, config, inventory: Path | None) -> Managed:
    return scan_playbook(project.playbook(config),
                         inventory_vars=inventory_all_vars(inventory) if inventory else None)


def _is_baseline(against: str) -> bool:
    return against.endswith(".json") or Path(against).is_file()


def compare(project: Project, runs: EnvironmentRuns, against: str | None, *, yes: bool = False,
            confirm: Confirm | None = None) -> ParityReport:
    """``runs``: the rails every environment run passes (the app's, so tests can give fakes)."""
    if not against:
        raise UsageError("say what development is compared with",
                         "use --against ENV (e.g. staging) or --against BASELINE.json")
    config = project.config()
    # an environment passes the production guard before anything else is read, written or asked
    guarded = None if _is_baseline(against) else _guard(runs, against, yes=yes)
    with project.lock(f"devbox parity --against {against}"):   # it writes the connection inventory, the copies
        report = _compare(project, runs, config, against, guarded, confirm)
        # kept for `devbox report` (the last comparison, whatever its verdict)
        atomic_write(last_report_path(project.paths.root), last_report_json(
            report, finished_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat()))
        return report


def _compare(project: Project, runs: EnvironmentRuns, config, against: str, guarded: RunPlan | None,
             confirm: Confirm | None) -> ParityReport:
    topology = load_plan(project.paths.root)
    machines = [Machine(m.name, tuple(m.groups), tuple(m.represents)) for m in topology.machines]
    expectations = expectations_from_config((config.extensions.get("parity") or {}).get("expected"))
    if _is_baseline(against):
        path = Path(against)
        if not path.is_file():
            raise UsageError(f"baseline {against} not found", "create it with `devbox parity --export --env ENV`")
        name, ref_profiles = load_baseline(path.read_text(encoding="utf-8"), path=str(path))
        reference = Gathered(ref_profiles, ())
        managed = _managed(project, config, config.inventory_path())
        label = f"{path.name} ({name})"
    else:
        env, hosts = _confirm_and_trust(runs, guarded, confirm=confirm)
        managed = _managed(project, config, env.inventory)
        reference = _gather_environment(runs, env, hosts, managed)
        label = env.name
    dev = gather_development(project, topology, managed)
    return build_report(against=label, machines=machines, dev=dev.profiles, ref=reference.profiles,
                        managed=managed, expectations=expectations, ignore_groups=config.ignore_groups,
                        unreachable=(*dev.unreachable, *reference.unreachable))


def export(project: Project, runs: EnvironmentRuns, env_name: str, *, yes: bool = False,
           confirm: Confirm | None = None) -> str:
    """A baseline (JSON text) of ``env_name``: every host's profile, to compare with later, offline."""
    config = project.config()
    guarded = None if env_name == "dev" else _guard(runs, env_name, yes=yes)
    with project.lock(f"devbox parity --export --env {env_name}"):
        return _export(project, runs, config, env_name, guarded, confirm)


def _export(project: Project, runs: EnvironmentRuns, config, env_name: str, guarded: RunPlan | None,
            confirm: Confirm | None) -> str:
    if env_name == "dev":
        topology = load_plan(project.paths.root)
        gathered = gather_development(project, topology, _managed(project, config, config.inventory_path()))
    else:
        env, hosts = _confirm_and_trust(runs, guarded, confirm=confirm)
        gathered = _gather_environment(runs, env, hosts, _managed(project, config, env.inventory))
    if gathered.unreachable:
        lines = "\n".join(f"  - {u.host}: {u.message}" for u in gathered.unreachable)
        raise DevboxError(f"no baseline written: these hosts of '{env_name}' gave no facts:\n{lines}",
                          "a baseline without them would make their machines look unpaired; fix and export again")
    return baseline_json(env_name, gathered.profiles,
                         captured_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat())


def gather_development(project: Project, topology, managed: Managed) -> Gathered:
    paths = project.paths
    state = load_state(paths.state)
    names = [m.name for m in topology.machines]
    unknown = [n for n in names if not (state.machines.get(n) and state.machines[n].ssh)]
    if unknown:
        raise DevboxError(f"devbox has no connection details for {', '.join(unknown)}",
                          "run `devbox up` first: parity reads facts from running VMs")
    write_connection_inventory(paths, topology, state)
    roles = {vm: roles_from_ledger(units) for vm, units in ledger_of(state.other).items()}
    project.progress("development", f"gathering facts from {len(names)} VMs")
    return gather(project.playbooks, inventory=paths.inventory, managed=managed, side="development", hosts=names,
                  roles=roles)


def _guard(runs: EnvironmentRuns, name: str, *, yes: bool) -> RunPlan:
    """The environment declared, its hosts read, none of them production (``runs.plan``): no connection yet."""
    return runs.plan(name, env_explicit=True, yes=yes, no_check_first=True)  # a read needs no check-mode diff


def _confirm_and_trust(runs: EnvironmentRuns, plan: RunPlan, *, confirm: Confirm | None):
    """The rest of the rails before any connection to the environment: typed confirmation, pinned keys."""
    env = plan.environment
    check_confirmation(plan, confirm(plan, None) if plan.ask_confirmation and confirm else None)
    runs.progress(env.name, f"checking the host keys of {len(plan.hosts)} hosts")
    require_trusted(env.name, runs.host_key_checker(list(plan.hosts), env.known_hosts), env.known_hosts)
    return env, [h.name for h in plan.hosts]


def _gather_environment(runs: EnvironmentRuns, env, hosts: list[str], managed: Managed) -> Gathered:
    state_dir = runs.state_dir(env)
    inventory = readable_inventory_copy(env.inventory, state_dir / "parity-inventory")
    # no vault arguments at all: the copy has no encrypted file, and facts need no secret
    runner = runs.runner_factory(RunnerSettings(environment=env, runner_dir=state_dir / "runner",
                                                logs_dir=state_dir / "logs", known_hosts=env.known_hosts))
    runs.progress(env.name, f"gathering facts from {len(hosts)} hosts (read-only)")
    return gather(runner, inventory=inventory, managed=managed, side=env.name, hosts=hosts)


def write_html(report: ParityReport, path: Path) -> Path:
    """``report`` as one self-contained HTML page at ``path``, written atomically (never half a page)."""
    atomic_write(path, report_html(report))
    return path
