"""VM lifecycle: up, provision, status, ssh, halt, destroy.

Orchestration only: Vagrant, Ansible and SSH are reached through the project's adapters, and
everything devbox learns is written to ``.devbox/state.json`` only once it is known to be true, so an
interrupted command (Ctrl-C) leaves state that the next ``up`` can converge from.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import yaml

from provisioner import JSON_SCHEMA
from provisioner.adapters import process
from provisioner.incremental import reprovision
from provisioner.environments.model import ensure_dev_gets_no_vault_password
from provisioner.errors import DevboxError, UsageError
from provisioner.fsutil import atomic_write
from provisioner.plan.planning import derive, generated_set_problem, load_plan, prepare_render, write_render
from provisioner.project.context import Project
from provisioner.project.paths import ProjectPaths
from provisioner.adapters.playbook_runner import PlaybookResult, TaskChange
from provisioner.incremental.ledger import EventLog
from provisioner.machines.names import machine_names
from provisioner.machines.snapshot_book import booted_definition, definition_of, forget_vms as forget_snapshots
from provisioner.adapters.ssh_probe import ProjectKnownHosts, SshTarget, known_hosts_name
from provisioner.environments.stamp import playbook_revision, stamp_run_args
from provisioner.project.state import State, load_state, now_iso, save_state

if TYPE_CHECKING:
    from provisioner.incremental.subset import IncrementalPlan
    from provisioner.plan.topology import Topology
    from provisioner.adapters.vagrant_driver import SshConfig

SSH_TIMEOUT = 300.0  # software-emulated guests answer SSH ~30 s after start; a loaded CI machine needs more
STATUS_PROBE_TIMEOUT = 0.3  # a VM on a local bridge answers a TCP connect in milliseconds
MIN_FORKS = 5  # Ansible's default; more when there are more VMs, so no VM waits for a fork


# ------------------------------------------------------------------------------------------------- results

@dataclass(frozen=True)
class ProvisionResult:
    playbook: PlaybookResult | None  # None: nothing needed to run (or --dry-run)
    names: tuple[str, ...]
    revision: str | None
    check: bool
    plan: "IncrementalPlan | None" = None  # incremental provisioning: what ran (or would run) per VM, and why
    partial: bool = False  # --tags, --skip-tags, --limit, -e or --check: nothing was recorded in the ledger
    snapshot_note: str | None = None  # what happened to the automatic `converged` snapshot after the run

    @property
    def note(self) -> str | None:
        """What the user should know about the ledger after a partial run (None for a normal run)."""
        if not self.partial or self.playbook is None:
            return None
        return (f"partial run ({reprovision.PARTIAL_FLAGS}): nothing recorded in the change ledger; the next plain "
                f"`devbox provision` runs whatever changed since the last full record")


@dataclass(frozen=True)
class UpResult:
    rendered: bool
    booted: tuple[str, ...]
    already_running: tuple[str, ...]
    boot_seconds: float
    ssh_seconds: float
    provision: ProvisionResult | None


@dataclass(frozen=True)
class MachineStatus:
    name: str
    state: str  # provider state as last seen ("unknown" if never seen)
    ssh: bool | None  # TCP answer on the cached SSH address; None: no cached address (never booted by devbox)
    address: str | None  # user@host:port
    last_provisioned: str | None
    revision: str | None
    seen_at: str | None
    # on the development network (the plan's address), the name `devbox hosts` gives it, and the smoke checks'
    # URLs it serves, with that name as their host
    private_address: str | None = None
    fqdn: str | None = None
    urls: tuple = ()

    def to_json(self) -> dict:
        return {"name": self.name, "state": self.state, "ssh": self.ssh, "address": self.address,
                "last_provisioned": self.last_provisioned, "revision": self.revision,
                "private_address": self.private_address, "fqdn": self.fqdn,
                "urls": [u.to_json() for u in self.urls]}


@dataclass(frozen=True)
class StatusResult:
    machines: tuple[MachineStatus, ...]
    refreshed: bool
    pending: "IncrementalPlan | None" = None  # what `devbox provision` would run now, per VM; None: unknown
    pending_error: str | None = None  # why it is unknown (a playbook devbox cannot read must not hide the states)

    def to_json(self) -> dict:
        return {"schema": JSON_SCHEMA, "refreshed": self.refreshed,
                "machines": [{**m.to_json(), "pending": self._pending_json(m.name)} for m in self.machines],
                "pending_error": self.pending_error}

    def _pending_json(self, name: str) -> dict | None:
        """``{"runs": "nothing" | "everything" | [role or play, ...], "why": [...]}``; None when unknown."""
        if self.pending is None or name not in {v.vm for v in self.pending.vms}:
            return None
        vm = self.pending.vm(name)
        if vm.nothing:
            return {"runs": "nothing", "why": []}
        if vm.everything:
            return {"runs": "everything", "why": list(vm.reasons())}
        return {"runs": list(dict.fromkeys(c.label for c in vm.units)),
                "why": [f"{c.label}: {r}" for c in vm.units for r in c.reasons]}


@dataclass(frozen=True)
class ChangeResult:
    """halt / destroy: which machines, how long."""

    names: tuple[str, ...]
    seconds: float
    log_path: str | None


@dataclass(frozen=True)
class SshCommand:
    argv: tuple[str, ...]


class ProvisionFailed(DevboxError):
    """The playbook ran and failed somewhere; carries the result so the CLI can still show the summary."""

    def __init__(self, result: ProvisionResult):
        pb = result.playbook
        lines = [str(f) for f in pb.failures] or [f"ansible-playbook ended with status {pb.status} (rc {pb.rc})"]
        super().__init__("provisioning failed:\n" + "\n".join("  " + l for l in lines) + f"\nfull log: {pb.log_path}",
                         "fix the failing task and run `devbox provision` again (only failed work is redone)")
        self.result = result


class SshNotReady(DevboxError):
    def __init__(self, errors: Sequence[str]):
        super().__init__("VMs did not become reachable over SSH:\n" + "\n".join("  " + e for e in errors),
                         "read the console log named above; `devbox up` again retries, `devbox destroy NAME` "
                         "starts that VM from scratch")


# ------------------------------------------------------------------------------------------------- helpers

def select(project: Project, names: Sequence[str]) -> list[str]:
    """The planned VMs ``names`` stand for (all when none), or a usage error naming the planned ones; reads
    ``.devbox/plan.json`` only."""
    return _select(load_plan(project.paths.root), names)


def _select(topology: "Topology", names: Sequence[str]) -> list[str]:
    """The machines a command acts on: all of the plan by default; unknown names are a usage error."""
    planned = [m.name for m in topology.machines]
    unknown = [n for n in names if n not in planned]
    if unknown:
        raise UsageError(f"no VM named {', '.join(unknown)} in the plan", f"VMs in the plan: {', '.join(planned)}")
    return [n for n in planned if n in names] if names else planned


def ensure_rendered(project: Project) -> tuple["Topology", bool]:
    """The plan to act on; re-rendered when devbox.yml or the production inventory changed since last time."""
    paths = project.paths
    try:
        saved = load_plan(project.paths.root)
    except DevboxError:
        saved = None
    config = project.config()
    fresh, _source = derive(paths.root, config, None, False, project.progress)
    # compared as plan.json would hold it (production secrets replaced), computed in memory
    pending = prepare_render(project, fresh, config)
    problem = generated_set_problem(paths.root) if saved is not None else None
    if saved is not None and saved.to_state() == pending.plan_topology.to_state() and problem is None:
        return saved, False
    project.progress("plan", f"{problem}; rendering the set again" if saved is not None and problem else
                     "changed; rendering the Vagrantfile and the development inventory")
    write_render(project, pending)
    return fresh, True


def write_connection_inventory(paths: ProjectPaths, topology: "Topology", state: State) -> None:
    """``.devbox/inventory/zz-connection.yml``: how Ansible reaches each VM, from the cached ssh-config.

    A separate file (loaded after hosts.yml, hence ``zz-``) so the rendered inventory never holds data that
    changes with every boot. Only planned machines appear, so it can never add a host to the inventory.
    """
    hosts = {}
    for m in topology.machines:
        ssh = state.machines.get(m.name) and state.machines[m.name].ssh
        if ssh:
            # ansible_connection too: a production group's `local`/`winrm`/`network_cli` (from group_vars beside
            # the playbook, which Ansible loads for the VMs as well) must never decide how a VM is reached
            hosts[m.name] = {"ansible_connection": "ssh", "ansible_host": ssh["host"], "ansible_port": ssh["port"],
                             "ansible_user": ssh["user"], "ansible_ssh_private_key_file": ssh["identity_file"]}
    text = "# Generated by devbox from `vagrant ssh-config`; rewritten on every up/provision.\n"
    text += yaml.safe_dump({"all": {"hosts": hosts}}, default_flow_style=False, sort_keys=True)
    atomic_write(paths.connection_inventory, text)


def forget_host_keys(paths: ProjectPaths, host: str, port: int) -> None:
    """Remove a VM's address from the project known_hosts, in both forms OpenSSH may have written."""
    if not paths.known_hosts.exists():
        return
    for name in {host, known_hosts_name(host, port)}:
        process.run(["ssh-keygen", "-f", str(paths.known_hosts), "-R", name],
                    log_path=paths.logs / "known-hosts.log").check(what=f"removing {name} from {paths.known_hosts}")


def _targets(paths: ProjectPaths, state: State, names: Sequence[str]) -> list[SshTarget]:
    targets = []
    for n in names:
        ssh = state.machines.get(n) and state.machines[n].ssh
        if ssh:
            targets.append(SshTarget(name=n, host=ssh["host"], port=int(ssh["port"]), user=ssh["user"],
                                     key_file=ssh["identity_file"], console_log=paths.console_log(n)))
    return targets


def _learn_host_keys(project: Project, paths: ProjectPaths, state: State, names: Sequence[str]) -> None:
    """Record the keys of VMs missing from the project's known_hosts with devbox's own accept-new probe (`up`
    does this while waiting for SSH; `provision` may meet a VM booted outside devbox)."""
    known = ProjectKnownHosts(paths.known_hosts)
    targets = [t for t in _targets(paths, state, names) if not known.knows(t.host, t.port)]
    results = project.ssh_probe.wait_ready(targets=targets, timeout=SSH_TIMEOUT)
    errors = [r.error for r in results.values() if not r.ready]
    if errors:
        raise SshNotReady(errors)


def _refresh_connections(project: Project, state: State, names: Sequence[str], recreated: Sequence[str],
                         known: Mapping[str, SshConfig] | None = None) -> None:
    """Connection details for ``names``: those ``known`` already, the rest from one `vagrant ssh-config`.
    Recreated VMs lose their old host keys (new VM, new key)."""
    paths = project.paths
    configs = dict(known or {})
    missing = [n for n in names if n not in configs]
    if missing:
        configs.update(project.vagrant.ssh_config(names=missing))
    for name in names:
        cfg = configs[name]
        old = state.machine(name).ssh
        moved = bool(old) and (old["host"], int(old["port"])) != (cfg.host, cfg.port)
        if moved:  # the old address may go to another VM next: its key must not linger
            forget_host_keys(paths, old["host"], int(old["port"]))
        if name in recreated or moved:  # a key recorded for the new address belonged to some earlier VM
            forget_host_keys(paths, cfg.host, cfg.port)
        state.machine(name).ssh = cfg.to_json()


# ------------------------------------------------------------------------------------------------ commands

def up(project: Project, names: Sequence[str] = (), *, provision_after: bool = True, verbosity: int = 0) -> UpResult:
    paths = project.paths
    with project.lock("devbox up"):
        topology, rendered = ensure_rendered(project)
        selected = _select(topology, names)
        state = load_state(paths.state)
        # A first `up` (no machine created yet) saves a `vagrant status` start-up: every selected VM is booted.
        seen = {} if project.vagrant.none_created(selected) else project.vagrant.status()
        for n, s in seen.items():
            if n in selected:
                state.record_seen(n, s.state)
        save_state(paths.state, state)
        running = [n for n in selected if seen.get(n) and seen[n].state == "running"]
        to_boot = [n for n in selected if n not in running]
        recreated = [n for n in to_boot if seen.get(n) is None or seen[n].state == "not_created"]
        reprovision.forget_in(state, recreated)  # a VM created again has nothing applied yet
        forget_snapshots(paths, recreated)  # nor any snapshot (destroyed outside devbox, its snapshots went too)

        boot_started = time.monotonic()
        boot_started_wall = time.time()
        if to_boot:
            for n in to_boot:
                project.progress(n, "booting")
            project.vagrant.up(names=to_boot, parallel=True)
            config = project.config()
            for n in to_boot:
                state.record_seen(n, "running")
                # what the VM now runs with, so a snapshot of it can be checked against the Vagrantfile
                rec = state.machine(n)
                rec.definition = booted_definition(rec.definition, definition_of(config, topology.machine(n)),
                                                   created=n in recreated)
                project.progress(n, "booted")
        boot_seconds = time.monotonic() - boot_started

        # Connection details change when a VM boots (new DHCP lease, new key for a new VM); cached ones of VMs
        # that were already running stay valid, so a second `up` starts no `vagrant ssh-config` at all.
        stale = [n for n in selected if n in to_boot or not state.machine(n).ssh]
        if stale:
            # what Vagrant recorded while booting them spares most `up`s the `vagrant ssh-config` start-up
            recorded = project.vagrant.recorded_ssh_config(names=[n for n in stale if n in to_boot],
                                                       since=boot_started_wall)
            _refresh_connections(project, state, stale, recreated, known=recorded)
        save_state(paths.state, state)
        write_connection_inventory(paths, topology, state)

        ssh_started = time.monotonic()
        results = project.ssh_probe.wait_ready(targets=_targets(paths, state, selected), timeout=SSH_TIMEOUT,
                                           on_ready=lambda n: project.progress(n, "SSH ready"))
        errors = [r.error for r in results.values() if not r.ready]
        if errors:
            raise SshNotReady(errors)
        ssh_seconds = time.monotonic() - ssh_started

        prov = (_provision_locked(project, topology, state, selected, names_given=bool(names), verbosity=verbosity)
                if provision_after else None)
    return UpResult(rendered=rendered, booted=tuple(to_boot), already_running=tuple(running),
                    boot_seconds=boot_seconds, ssh_seconds=ssh_seconds, provision=prov)


def provision(project: Project, names: Sequence[str] = (), *, tags: str | None = None, limit: str | None = None,
              check: bool = False, full: bool = False, dry_run: bool = False, skip_tags: str | None = None,
              diff: bool = False, extra_vars: Sequence[str] = (), verbosity: int = 0) -> ProvisionResult:
    with project.lock("devbox provision"):
        return provision_locked(project, names, tags=tags, limit=limit, check=check, full=full, dry_run=dry_run,
                                skip_tags=skip_tags, diff=diff, extra_vars=extra_vars, verbosity=verbosity)


def provision_locked(project: Project, names: Sequence[str] = (), *, tags: str | None = None,
                     limit: str | None = None, check: bool = False, full: bool = False, dry_run: bool = False,
                     skip_tags: str | None = None, diff: bool = False, extra_vars: Sequence[str] = (),
                     verbosity: int = 0) -> ProvisionResult:
    """``provision`` for a caller that holds the project lock already (``devbox reset``)."""
    paths = project.paths
    topology = load_plan(project.paths.root)
    problem = generated_set_problem(paths.root)
    if problem:  # a mixed set (an interrupted init?) would run against a topology nobody asked for
        raise DevboxError(f"the generated files are not one set: {problem}; nothing was run",
                          "run `devbox up` (it renders the set again) or `devbox init`")
    selected = _select(topology, names)
    state = load_state(paths.state)
    options = dict(tags=tags, limit=limit, check=check, full=full, dry_run=dry_run, skip_tags=skip_tags,
                   diff=diff, extra_vars=tuple(extra_vars), verbosity=verbosity)
    if dry_run:  # plans only: no connection details needed, no VM contacted (none may exist yet)
        return _provision_locked(project, topology, state, selected, names_given=bool(names), **options)
    missing = [n for n in selected if not state.machine(n).ssh]
    if missing:  # never booted by devbox (or destroyed since): ask Vagrant once for all of them
        _refresh_connections(project, state, missing, recreated=())
        save_state(paths.state, state)
    write_connection_inventory(paths, topology, state)
    if project.playbooks.strategy.needs_known_host_keys:
        _learn_host_keys(project, paths, state, selected)
    return _provision_locked(project, topology, state, selected, names_given=bool(names), **options)


def _ansible_limit(selected: Sequence[str], names_given: bool, limit: str | None) -> str | None:
    if not names_given:
        return limit
    if limit is None:
        return ",".join(selected)
    if any(sep in limit for sep in ",:"):
        raise UsageError("combine VM names with a single-pattern --limit only",
                         "put the whole host pattern in --limit and leave out the VM names")
    return ",".join(selected) + f",&{limit}"


def _provision_locked(project: Project, topology: "Topology", state: State, selected: Sequence[str], *,
                      names_given: bool, tags: str | None = None, limit: str | None = None,
                      check: bool = False, full: bool = False, dry_run: bool = False, skip_tags: str | None = None,
                      diff: bool = False, extra_vars: Sequence[str] = (), verbosity: int = 0) -> ProvisionResult:
    paths = project.paths
    playbook = project.playbook()
    # the run's one git lookup: recorded in the state and in the stamp
    revision = playbook_revision(playbook, log_path=paths.logs / "git.log")
    # development runs use the generated values in .devbox/, never a real vault password
    ensure_dev_gets_no_vault_password(os.environ, playbook.parent)
    # Only what changed since the last successful run, on only the VMs it concerns (see incremental/reprovision.py)
    incremental = reprovision.start(devbox_dir=paths.devbox, playbook=playbook, inventory=paths.inventory,
                                    project_dir=paths.root, names=selected, full=full, dry_run=dry_run,
                                    tags=tags, limit=limit, check=check, skip_tags=skip_tags,
                                    extra_vars=extra_vars)
    partial = reprovision.partial_run(tags=tags, skip_tags=skip_tags, limit=limit, check=check,
                                      extra_vars=extra_vars)
    if incremental and (dry_run or incremental.nothing_to_do):
        return ProvisionResult(playbook=None, names=tuple(selected), revision=revision.recorded, check=check,
                               plan=incremental.plan)
    events = EventLog()
    selected = incremental.vms_to_run if incremental else selected
    ansible_limit = _ansible_limit(selected, names_given, limit)
    # every real run leaves on each VM what it applied (/etc/devbox/applied.json); a check run changes nothing
    # site.yml as the change planner read it (None when no plan was made: the stamp reads it, once, itself)
    site = incremental.digests.site if incremental and incremental.digests else None
    stamping = {} if check else stamp_run_args(paths.root, playbook, environment="dev", revision=revision,
                                               site=site, limit=ansible_limit,
                                               tags=tags or (f"skipped {skip_tags}" if skip_tags else None))
    if incremental and ansible_limit is None and not incremental.plan.run_whole_playbook:
        # the subset's plays name their VMs; devbox's own plays after it (the stamp) must not reach the others
        ansible_limit = ",".join(incremental.hosts_to_contact)
    for n in selected:
        project.progress(n, "provisioning")
    result = project.playbooks.run(playbook=incremental.playbook if incremental else playbook, on_event=events,
                               inventory=paths.inventory,
                               forks=max(MIN_FORKS, len(topology.machines)),
                               limit=ansible_limit, tags=tags, check=check, skip_tags=skip_tags, diff=diff,
                               extra_vars=tuple(extra_vars), verbosity=verbosity,
                               on_progress=lambda host, task: project.progress(host, f"provisioning: {task}"),
                               **stamping)
    if incremental:
        reprovision.record(devbox_dir=paths.devbox, run=incremental, events=events.events)
    if not check:
        # Only hosts that completed the play count as provisioned; a failed host keeps its previous record.
        finished = now_iso()
        fresh = load_state(paths.state)  # keep what others wrote (e.g. the incremental ledger) meanwhile
        fresh.machines.update({n: state.machines[n] for n in selected if n in state.machines})
        for h in result.hosts:
            if h.succeeded and h.host in selected:
                rec = fresh.machine(h.host)
                rec.last_provisioned, rec.revision = finished, revision.recorded
        save_state(paths.state, fresh)
    for h in result.hosts:
        project.progress(h.host, "provisioned" if h.succeeded else "provisioning failed")
    outcome = ProvisionResult(playbook=result, names=tuple(selected), revision=revision.recorded, check=check,
                              plan=incremental.plan if incremental else None, partial=partial)
    if not result.ok:
        raise ProvisionFailed(outcome)
    if project.after_provision is not None:  # the automatic `converged` snapshot (machines/snapshots.py)
        outcome = replace(outcome, snapshot_note=project.after_provision(project, outcome))
    return outcome


def status(project: Project, *, refresh: bool = False) -> StatusResult:
    """From the cache plus a TCP probe per VM; ``refresh`` asks Vagrant once for the real states. Also what
    `devbox provision` would run now per VM (files only, no VM contacted)."""
    paths = project.paths
    topology = load_plan(project.paths.root)
    names = [m.name for m in topology.machines]
    config = None
    try:  # a devbox.yml devbox cannot read must not hide the states either (pending_error says what is wrong)
        config = project.config()
        named = {m.vm: m for m in machine_names(topology, config)}
    except DevboxError:
        named = {}
    if refresh:
        with project.lock("devbox status --refresh"):
            state = load_state(paths.state)
            for n, s in project.vagrant.status().items():
                if n in names:
                    state.record_seen(n, s.state)
            save_state(paths.state, state)
    else:
        state = load_state(paths.state)
    # never seen by devbox and no machine id in Vagrant's folder: Vagrant itself would say "not created"
    never_created = {n for n in names if state.machine(n).provider_state is None
                     and project.vagrant.none_created([n])}
    probe_names = [n for n in names if state.machine(n).provider_state in (None, "running") and n not in never_created]
    reachable = project.ssh_probe.reachable(targets=_targets(paths, state, probe_names), timeout=STATUS_PROBE_TIMEOUT)
    machines = []
    for n in names:
        rec = state.machine(n)
        ssh = rec.ssh
        machines.append(MachineStatus(
            name=n, state=rec.provider_state or ("not_created" if n in never_created else "unknown"),
            ssh=reachable.get(n, False) if ssh else None,
            address=f"{ssh['user']}@{ssh['host']}:{ssh['port']}" if ssh else None,
            last_provisioned=rec.last_provisioned, revision=rec.revision, seen_at=rec.seen_at,
            private_address=named[n].address if n in named else None, fqdn=named[n].fqdn if n in named else None,
            urls=named[n].urls if n in named else ()))
    try:
        pending, pending_error = reprovision.pending(devbox_dir=paths.devbox, playbook=project.playbook(config),
                                                     inventory=paths.inventory, project_dir=paths.root), None
    except DevboxError as exc:
        pending, pending_error = None, str(exc)
    return StatusResult(machines=tuple(machines), refreshed=refresh, pending=pending, pending_error=pending_error)


def ssh_command(project: Project, name: str, command: Sequence[str] = (), *,
                ssh_args: Sequence[str] = ()) -> SshCommand:
    """The ``ssh`` argv for a VM from the cached connection (no `vagrant ssh` and its Ruby start-up).

    As `vagrant ssh NAME -c CMD -- ARGS`: ``ssh_args`` go to ssh itself (before the destination, e.g. ``-L
    8080:localhost:80``), ``command`` runs on the VM (after ``--``, so it is never read as ssh options)."""
    paths = project.paths
    _select(load_plan(project.paths.root), [name])
    state = load_state(paths.state)
    if not state.machine(name).ssh:
        with project.lock(f"devbox ssh {name}"):
            _refresh_connections(project, state, [name], recreated=())
            save_state(paths.state, state)
    ssh = state.machine(name).ssh
    argv = ["ssh", "-i", ssh["identity_file"], "-p", str(ssh["port"]),
            "-o", f"UserKnownHostsFile={paths.known_hosts}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *ssh_args, f"{ssh['user']}@{ssh['host']}"]
    if command:
        argv += ["--", *command]
    return SshCommand(tuple(argv))


def halt(project: Project, names: Sequence[str] = ()) -> ChangeResult:
    paths = project.paths
    with project.lock("devbox halt"):
        selected = _select(load_plan(project.paths.root), names)
        for n in selected:
            project.progress(n, "halting")
        run = project.vagrant.halt(names=selected)
        state = load_state(paths.state)
        for n in selected:
            state.record_seen(n, "poweroff")
            project.progress(n, "halted")
        save_state(paths.state, state)
    return ChangeResult(tuple(selected), run.seconds, run.log_path)


def destroy(project: Project, names: Sequence[str] = (), *,
            confirm: Callable[[Sequence[str]], None] | None = None) -> ChangeResult:
    """Delete VMs and everything cached about them, host keys included. ``confirm`` (the CLI's question) gets the
    planned VMs once the names are known to be planned, and raises to stop; nothing is asked for an unknown name."""
    paths = project.paths
    with project.lock("devbox destroy"):
        topology = load_plan(project.paths.root)
        selected = _select(topology, names)
        if confirm is not None:
            confirm(selected)
        for n in selected:
            project.progress(n, "destroying")
        run = project.vagrant.destroy(names=selected)
        state = load_state(paths.state)
        for n in selected:
            ssh = state.machine(n).ssh
            if ssh:
                forget_host_keys(paths, ssh["host"], int(ssh["port"]))
            state.forget(n)
            reprovision.forget_in(state, [n])  # a VM created again has nothing applied yet
            forget_snapshots(paths, [n])  # Vagrant deleted its snapshots with it
            state.record_seen(n, "not_created")
            project.progress(n, "destroyed")
        save_state(paths.state, state)
        write_connection_inventory(paths, topology, state)
    return ChangeResult(tuple(selected), run.seconds, run.log_path)


@dataclass(frozen=True)
class IdempotenceResult:
    """`devbox idempotence`: the full runs made (one when the VMs were already converged, else two) and what the
    last one changed; idempotent when nothing."""

    runs: tuple[ProvisionResult, ...]
    changes: tuple[TaskChange, ...]

    @property
    def ok(self) -> bool:
        return not self.changes


class NotIdempotent(DevboxError):
    def __init__(self, result: IdempotenceResult):
        lines = "\n".join(f"  {c}" for c in result.changes)
        super().__init__(f"not idempotent: {len(result.changes)} task(s) reported changed on a run after converging:"
                         f"\n{lines}\nfull log: {result.runs[-1].playbook.log_path}",
                         "make each task report changed only when it changes something (e.g. `changed_when` on "
                         "command/shell tasks, `creates:`), then run `devbox idempotence` again")
        self.result = result


def idempotence(project: Project, names: Sequence[str] = (), *, verbosity: int = 0) -> IdempotenceResult:
    """Molecule's idempotence check on the development VMs: the whole playbook (``--full``) until converged, then
    once more; every task that reports changed on that last run is a defect. VMs whose last full run is recorded
    with nothing changed since count as converged: one run. Raises ``NotIdempotent`` naming the tasks."""
    selected = select(project, names)
    pending = reprovision.pending(devbox_dir=project.paths.devbox, playbook=project.playbook(),
                                  inventory=project.paths.inventory, project_dir=project.paths.root)
    converged = all(pending.vm(n).nothing for n in selected if n in {v.vm for v in pending.vms})
    runs = []
    if not converged:
        project.progress("idempotence", "converging first (a full run)")
        runs.append(provision(project, names, full=True, verbosity=verbosity))
    project.progress("idempotence", "the full run that must change nothing")
    runs.append(provision(project, names, full=True, verbosity=verbosity))
    result = IdempotenceResult(runs=tuple(runs), changes=runs[-1].playbook.changes)
    if not result.ok:
        raise NotIdempotent(result)
    return result
