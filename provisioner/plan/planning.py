"""plan, init and render: read production, derive the VMs, write the project files.

Every input is read and every output computed in memory first; files are written only after all of it
succeeded and Vagrant accepted the Vagrantfile, so bad input never leaves a half-written project. Writing holds
the project lock, and the files change as one set: ``plan.json`` is written last with a digest of every other
generated file, and ``up``/``provision`` check it (``generated_set_problem``) before using the set.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import yaml

from provisioner import JSON_SCHEMA
from provisioner.adapters.vagrant_driver import validate_vagrantfile
from provisioner.config.editor_schema import PROJECT_SCHEMA, schema_text
from provisioner.config.schema import CONFIG_NAME, Config, load_config, parse_config
from provisioner.plan.devinventory import INVENTORY_DIR, SECRETS_FILE, build_dev_inventory, load_secrets, secrets_file_content
from provisioner.errors import ConfigError, DevboxError, UsageError
from provisioner.plan.hostvars import HostVariables
from provisioner.plan.inventory import Inventory, load_inventory
from provisioner.plan.placement import Previous
from provisioner.plan.render import (DEFAULT_TEMPLATE, install_vagrantfile, make_environment, render_vagrantfile, template_for,
                     write_if_changed)
from provisioner.plan.topology import (FIRST_HOST_OCTET, Topology, derive_topology, fit_budget, free_network,
                                       suggest_rules)
from provisioner.playbook.variables import VariableUse, scan_variables
from provisioner.project.context import Project, load_rules, playbook_path
from provisioner.project.paths import ProjectPaths

CONFIG_TEMPLATE = DEFAULT_TEMPLATE.parent / "devbox.yml.j2"


@dataclass(frozen=True)
class PlanResult:
    topology: Topology
    inventory: Path
    config: Path | None          # the devbox.yml the rules came from; None: the rules `devbox init` would write
    proposed: bool = False       # no devbox.yml: the rules are the ones `devbox init` proposes for this inventory

    def to_json(self) -> dict:
        """`devbox plan --json`: the topology, with the JSON schema version and where the rules came from."""
        rules = "proposed" if self.proposed else str(self.config) if self.config else "defaults"
        return {"schema": JSON_SCHEMA, "rules": rules, **self.topology.to_json()}


@dataclass(frozen=True)
class RenderResult:
    topology: Topology
    written: tuple[str, ...]     # project-relative paths whose content changed
    unchanged: tuple[str, ...]
    validated: bool              # False when `vagrant` is not installed
    secret_names: tuple[str, ...]
    skipped: tuple[str, ...]     # production vars files not copied (vault-encrypted)
    unresolved: tuple[str, ...] = ()   # variables the playbooks read that nothing readable defines, no value given


@dataclass(frozen=True)
class InitResult:
    render: RenderResult
    config_path: Path
    config_written: bool
    inventory: Path

    @property
    def topology(self) -> Topology:
        return self.render.topology


def resolve_inventory(rules: Config, inventory: str | Path | None) -> Path:
    if inventory is not None:
        return Path(inventory).absolute()
    path = rules.inventory_path()
    if path is None:
        raise UsageError("no production inventory given",
                         "pass --inventory PATH, or set `inventory:` in devbox.yml")
    return path


def read_inventory(rules: Config, inventory: str | Path | None, allow_scripts: bool,
                   progress: Callable[[str, str], None]) -> Inventory:
    path = resolve_inventory(rules, inventory)
    inv = load_inventory(path, allow_scripts=allow_scripts or rules.allow_inventory_scripts)
    progress("inventory", f"read {len(inv.hosts)} hosts in {len(inv.groups)} groups from {path}")
    return inv


def derive(project_dir: Path, rules: Config, inventory: str | Path | None, allow_scripts: bool,
           progress: Callable[[str, str], None]) -> tuple[Topology, Path]:
    inv = read_inventory(rules, inventory, allow_scripts, progress)
    return derive_topology(inv, rules, host_variables(inv, rules, project_dir), previous_placement(project_dir)), \
        inv.source


def previous_placement(project_dir: Path) -> Previous:
    """Where the last plan (``.devbox/plan.json``) put each VM: placement keeps it (see plan/placement.py).
    No plan yet, or a damaged one: nothing to keep."""
    try:
        return load_plan(project_dir).previous_placement()
    except DevboxError:
        return Previous.empty()


def host_variables(inv: Inventory, rules: Config, project_dir: Path) -> HostVariables:
    """The hosts' variables as Ansible resolves them for the playbook devbox.yml names: group_vars and host_vars
    beside the inventory, then beside the playbook (Ansible loads both)."""
    return HostVariables(inv, playbook_path(rules, project_dir).parent)


def plan_project(project: Project, inventory: str | Path | None = None, config: str | Path | None = None, *,
                 allow_scripts: bool = False) -> PlanResult:
    """Read the production inventory and derive the VMs; writes nothing.

    Without a devbox.yml the rules are the ones ``devbox init`` would write for this inventory (the same
    ``config_file_text``), so ``plan`` shows exactly the VMs ``init`` then creates."""
    rules = load_rules(project.paths.root, config)
    inv = read_inventory(rules, inventory, allow_scripts, project.progress)
    proposed = rules.path is None
    variables = host_variables(inv, rules, project.paths.root)   # proposed rules name the same (default) playbook
    if proposed:
        rules = proposed_rules(inv, project.paths.root, variables)
    topology = derive_topology(inv, rules, variables, previous_placement(project.paths.root))
    return PlanResult(topology=with_budget(inv, rules, topology, variables=variables), inventory=inv.source,
                      config=rules.path, proposed=proposed)


MEMINFO = Path("/proc/meminfo")


def workstation_memory(meminfo: Path | None = None) -> tuple[int, int] | None:
    """(MemTotal, what VMs may take) in MiB: the machine's memory less room for the host itself (a quarter, at
    least 2 GiB). None where it cannot be read (not Linux)."""
    try:
        text = (meminfo or MEMINFO).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if not match:
        return None
    total = int(match.group(1)) // 1024
    return total, max(0, total - max(2048, total // 4))


def with_budget(inv: Inventory, rules: Config, topology: Topology, meminfo: Path | None = None, *,
                variables: HostVariables | None = None) -> Topology:
    """``topology`` with a warning, and the rules that fit, when its VMs need more memory than devbox.yml's
    ``budget`` or, without one, than this machine has to spare (not checked for a remote hypervisor)."""
    if rules.budget_memory is not None:
        limit, what = rules.budget_memory, "the budget in devbox.yml"
    elif rules.libvirt_uri or rules.hypervisors:   # remote, or spread out: placement checked each hypervisor
        return topology
    else:
        memory = workstation_memory(meminfo or MEMINFO)
        if memory is None:
            return topology
        limit, what = memory[1], f"this machine ({memory[0]} MiB of memory, less room for the host)"
    extra = fit_budget(inv, rules, topology, limit, what, variables)
    return replace(topology, warnings=topology.warnings + tuple(extra)) if extra else topology


def proposed_rules(inv: Inventory, project_dir: Path, variables: HostVariables | None = None) -> Config:
    """The rules ``devbox init`` writes into a new devbox.yml for ``inv``, parsed as it will read them back."""
    return parse_config(yaml.safe_load(config_file_text(inv, project_dir, Config(), variables)), None)


def init_project(project: Project, inventory: str | Path | None, force: bool, allow_scripts: bool) -> InitResult:
    project_dir = project.paths.root
    config_path = project_dir / CONFIG_NAME
    try:
        existing = load_config(config_path)
    except ConfigError:
        if not (force and inventory is not None):
            raise
        existing = Config()   # about to be replaced, and the inventory was given on the command line
    inv = read_inventory(existing, inventory, allow_scripts, project.progress)
    config_text = None
    if force or existing.path is None:
        rules = Config()   # --force starts over from the inventory; the rules written name the default playbook
        variables = host_variables(inv, rules, project_dir)
        config_text = config_file_text(inv, project_dir, rules, variables)
        rules = parse_config(yaml.safe_load(config_text), config_path)
    else:
        rules = existing
        variables = host_variables(inv, rules, project_dir)
    topology = with_budget(inv, rules, derive_topology(inv, rules, variables, previous_placement(project_dir)),
                           variables=variables)
    extra = {config_path: config_text} if config_text is not None else {}
    extra[project_dir / PROJECT_SCHEMA] = schema_text()   # what devbox.yml's yaml-language-server line points to
    pending = prepare_render(project, topology, rules, vars_dir=inv.vars_dir, extra_files=extra)
    # read and computed without the lock (bad input writes nothing, not even a lock file); written under it, so
    # no other command sees, or boots from, a set this init is half-way through replacing
    with project.lock("devbox init --force" if force else "devbox init"):
        result = write_render(project, pending)
    return InitResult(render=result, config_path=config_path, config_written=config_path.relative_to(
        project_dir).as_posix() in result.written, inventory=inv.source)


def config_file_text(inv: Inventory, project_dir: Path, base: Config, variables: HostVariables | None = None) -> str:
    """devbox.yml as ``init`` writes it for ``inv``; ``variables``: the hosts' variables for ``base``'s playbook
    (production's addresses, which the development network must avoid, may be set in vars files)."""
    ignore, rules = suggest_rules(inv)
    inventory_rel = os.path.relpath(inv.source, project_dir)
    env = make_environment(CONFIG_TEMPLATE.parent)
    env.filters["yaml"] = yaml_scalar
    template = env.get_template(CONFIG_TEMPLATE.name)
    network = free_network(inv, base.network, variables or host_variables(inv, base, project_dir))
    note = (f"not {base.network}: production hosts have addresses in it, and a development VM must never "
            "share an address with one" if network != base.network else None)
    return template.render(inventory=inventory_rel, playbook=base.playbook, provider=base.provider, box=base.box,
                           network=network, network_note=note, memory=base.memory, cpus=base.cpus, ignore=ignore,
                           rules=rules, first_octet=FIRST_HOST_OCTET)


_BARE = re.compile(r"[A-Za-z0-9_/.][A-Za-z0-9_/.+@-]*\Z")


def yaml_scalar(value) -> str:
    """One YAML scalar on one line, as a person would write it: bare when that reads back the same, else
    emitted by the YAML library in double quotes (newlines, `: `, `#`, quotes, braces and control characters
    escaped), so a value from the inventory can never become a key or a comment of devbox.yml."""
    if isinstance(value, str) and _BARE.match(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    text = yaml.safe_dump(value, default_style='"' if isinstance(value, str) else None, allow_unicode=True,
                          width=float("inf"), default_flow_style=True)
    text = text[:-len("...\n")] if text.endswith("\n...\n") else text
    text = text.rstrip("\n")
    if "\n" in text or yaml.safe_load(text) != value:   # never expected: a scalar the emitter cannot keep on one line
        raise DevboxError(f"cannot write {value!r} as a one-line YAML value in devbox.yml")
    return text


@dataclass(frozen=True)
class PendingRender:
    """Everything one render writes, computed in memory (nothing written yet)."""

    topology: Topology
    vagrantfile: str
    outputs: dict                 # Path -> (content, mode): the development inventory, secrets, devbox.yml
    vars_dir: Path | None
    secret_names: tuple[str, ...]
    skipped: tuple[str, ...]
    config_files: frozenset       # outputs the team edits (devbox.yml): written, but not part of the generation
    plan_topology: Topology       # what plan.json holds: the topology with production secrets replaced
    unresolved: tuple[str, ...] = ()   # variables the playbooks read that nothing readable defines, no value given


def prepare_render(project: Project, topology: Topology, rules: Config, *, vars_dir: Path | None = None,
                   extra_files: dict[Path, str] | None = None) -> PendingRender:
    """Render the Vagrantfile and build the development inventory in memory; writes nothing."""
    project_dir = project.paths.root
    if vars_dir is None:
        source = rules.inventory_path()
        vars_dir = (source if source.is_dir() else source.parent) if source is not None and source.exists() else None
    written = topology.redacted()   # no production address in anything written
    vagrantfile = render_vagrantfile(written, rules, template_for(project_dir), project_dir)
    dev = build_dev_inventory(written, rules.vars, vars_dir, load_secrets(project_dir / SECRETS_FILE),
                              not_secret=rules.not_secret, production_names=topology.private_names,
                              playbook_vars=playbook_variables(rules, project_dir))
    outputs: dict[Path, tuple[str, int]] = {Path(p): (t, 0o644) for p, t in (extra_files or {}).items()}
    outputs.update({project_dir / p: (f.content, f.mode) for p, f in dev.files.items()})
    outputs[project_dir / SECRETS_FILE] = (secrets_file_content(dev.secrets), 0o600)
    return PendingRender(topology, vagrantfile, outputs, vars_dir, dev.secret_names, dev.skipped,
                         frozenset(Path(p) for p in (extra_files or {})), dev.plan or written, dev.unresolved)


def playbook_variables(rules: Config, project_dir: Path) -> VariableUse:
    """The variables the playbook's folder (its plays, roles and vars files) and the project's ``roles/`` read
    and define."""
    playbook = playbook_path(rules, project_dir)
    return scan_variables([playbook.parent, Path(project_dir) / "roles"])


def write_render(project: Project, pending: PendingRender) -> RenderResult:
    """Write a prepared render as one set: every file first, ``plan.json`` last with the generation (a digest of
    each generated file) that ``generated_set_problem`` checks, so a set interrupted half-way is never taken for
    a whole one. The caller holds the project lock."""
    project_dir = project.paths.root
    validator = validate_vagrantfile if shutil.which("vagrant") else None
    written, unchanged = [], []
    if install_vagrantfile(project_dir, pending.vagrantfile, validator):
        written.append("Vagrantfile")
    else:
        unchanged.append("Vagrantfile")
    project.progress("Vagrantfile", "validated by vagrant" if validator else "written (vagrant not installed)")
    files = {"Vagrantfile": _digest(pending.vagrantfile)}
    for path, (content, mode) in pending.outputs.items():
        rel = path.relative_to(project_dir).as_posix()
        (written if write_if_changed(path, content, mode=mode) else unchanged).append(rel)
        if path not in pending.config_files:
            files[rel] = _digest(content)
    if pending.vars_dir is not None:   # without the production folder, what is stale cannot be known: keep the copies
        _remove_stale(project_dir / INVENTORY_DIR / "group_vars", set(pending.outputs), written)
    # plan.json holds variables too: the production secrets in it are replaced, and it is private all the same
    state = {**pending.plan_topology.to_state(), GENERATION_KEY: {"id": _digest(json.dumps(files, sort_keys=True)),
                                                             "files": dict(sorted(files.items()))}}
    plan_rel = project.paths.plan.relative_to(project_dir).as_posix()
    (written if write_if_changed(project.paths.plan, json.dumps(state, indent=2) + "\n", mode=0o600)
     else unchanged).append(plan_rel)
    return RenderResult(topology=pending.topology, written=tuple(written), unchanged=tuple(unchanged),
                        validated=validator is not None, secret_names=pending.secret_names, skipped=pending.skipped,
                        unresolved=pending.unresolved)


def render_project(project: Project, topology: Topology, rules: Config, *, vars_dir: Path | None = None,
                   extra_files: dict[Path, str] | None = None) -> RenderResult:
    """Write the Vagrantfile (validated by Vagrant), the dev inventory and plan.json for ``topology``.
    The caller holds the project lock (``up`` does; ``render_locked`` takes it)."""
    return write_render(project, prepare_render(project, topology, rules, vars_dir=vars_dir, extra_files=extra_files))


def render_locked(project: Project, topology: Topology, rules: Config) -> RenderResult:
    """``render_project`` under the project lock (computed first, so bad input takes no lock and writes nothing)."""
    pending = prepare_render(project, topology, rules)
    with project.lock("devbox render"):
        return write_render(project, pending)


# --- the generated files change as one set ----------------------------------------------------------------

GENERATION_KEY = "generation"


def _digest(content: str | bytes) -> str:
    raw = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(raw).hexdigest()


def generated_set_problem(project_dir: Path) -> str | None:
    """Why the Vagrantfile, the development inventory and plan.json are not one render's set (None: they are).

    ``plan.json`` is written last and records a digest of every other generated file: a file that differs, is
    missing, or an inventory file it does not list means a render was interrupted (or a file was edited by
    hand) and the set must be rendered again before anything boots or provisions from it."""
    paths = ProjectPaths(Path(project_dir))
    try:
        generation = json.loads(paths.plan.read_text(encoding="utf-8")).get(GENERATION_KEY)
    except FileNotFoundError:
        return f"{paths.plan} does not exist"
    except (ValueError, AttributeError) as exc:
        return f"{paths.plan} is damaged ({exc})"
    if not isinstance(generation, dict) or not isinstance(generation.get("files"), dict):
        return f"{paths.plan} records no generation of the generated files (an older devbox wrote it)"
    files = generation["files"]
    for rel, digest in files.items():
        try:
            actual = _digest((paths.root / rel).read_bytes())
        except FileNotFoundError:
            return f"{rel} is missing"
        if actual != digest:
            return f"{rel} is not the one written with {paths.plan.name}"
    inventory = paths.root / INVENTORY_DIR
    if inventory.is_dir():
        for path in sorted(inventory.rglob("*")):
            rel = path.relative_to(paths.root).as_posix()
            if path.is_file() and not path.name.startswith(".") and path != paths.connection_inventory \
                    and rel not in files:
                return f"{rel} is not part of the set {paths.plan.name} was written with"
    return None


def _remove_stale(group_vars: Path, keep: set[Path], written: list[str]) -> None:
    """Production vars files that disappeared must not live on in the dev copy."""
    if not group_vars.is_dir():
        return
    for path in sorted(group_vars.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
            written.append(f"{path.relative_to(group_vars.parents[2]).as_posix()} (removed)")
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def load_plan(project_dir: Path) -> Topology:
    """The plan written by the last init/render (``.devbox/plan.json``), without reading production."""
    path = ProjectPaths(Path(project_dir)).plan
    try:
        return Topology.from_state(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DevboxError(f"no plan yet: {path} does not exist", "run `devbox init` first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DevboxError(f"{path} is damaged ({exc})", "run `devbox init` to write it again") from None
