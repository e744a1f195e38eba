"""plan, init and render: read production, derive the VMs, write the project files.

Every input is read and every output computed in memory first; files are written only after all of it
succeeded and Vagrant accepted the Vagrantfile, so bad input never leaves a half-written project.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from provisioner.adapters.vagrant_driver import validate_vagrantfile
from provisioner.config.schema import CONFIG_NAME, Config, load_config, parse_config
from provisioner.plan.devinventory import INVENTORY_DIR, SECRETS_FILE, build_dev_inventory, load_secrets, secrets_file_content
from provisioner.errors import ConfigError, DevboxError, UsageError
from provisioner.plan.inventory import Inventory, load_inventory
from provisioner.plan.render import (DEFAULT_TEMPLATE, install_vagrantfile, make_environment, render_vagrantfile, template_for,
                     write_if_changed)
from provisioner.plan.topology import FIRST_HOST_OCTET, Topology, derive_topology, suggest_rules
from provisioner.project.context import Project, load_rules
from provisioner.project.paths import ProjectPaths

CONFIG_TEMPLATE = DEFAULT_TEMPLATE.parent / "templates" / "devbox.yml.j2"


@dataclass(frozen=True)
class PlanResult:
    topology: Topology
    inventory: Path
    config: Path | None          # the devbox.yml the rules came from; None: defaults


@dataclass(frozen=True)
class RenderResult:
    topology: Topology
    written: tuple[str, ...]     # project-relative paths whose content changed
    unchanged: tuple[str, ...]
    validated: bool              # False when `vagrant` is not installed
    secret_names: tuple[str, ...]
    skipped: tuple[str, ...]     # production vars files not copied (vault-encrypted)


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
    return derive_topology(inv, rules), inv.source


def plan_project(project: Project, inventory: str | Path | None = None, config: str | Path | None = None, *,
                 allow_scripts: bool = False) -> PlanResult:
    """Read the production inventory and derive the VMs; writes nothing."""
    rules = load_rules(project.paths.root, config)
    topology, source = derive(project.paths.root, rules, inventory, allow_scripts, project.progress)
    return PlanResult(topology=topology, inventory=source, config=rules.path)


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
        config_text = config_file_text(inv, project_dir, Config())   # --force starts over from the inventory
        rules = parse_config(yaml.safe_load(config_text), config_path)
    else:
        rules = existing
    topology = derive_topology(inv, rules)
    extra = {config_path: config_text} if config_text is not None else {}
    result = render_project(project, topology, rules, vars_dir=inv.vars_dir, extra_files=extra)
    return InitResult(render=result, config_path=config_path, config_written=config_path.relative_to(
        project_dir).as_posix() in result.written, inventory=inv.source)


def config_file_text(inv: Inventory, project_dir: Path, base: Config) -> str:
    ignore, rules = suggest_rules(inv)
    inventory_rel = os.path.relpath(inv.source, project_dir)
    env = make_environment(CONFIG_TEMPLATE.parent)
    env.filters["yaml"] = yaml_scalar
    template = env.get_template(CONFIG_TEMPLATE.name)
    return template.render(inventory=inventory_rel, playbook=base.playbook, provider=base.provider, box=base.box,
                           network=base.network, memory=base.memory, cpus=base.cpus, ignore=ignore, rules=rules,
                           first_octet=FIRST_HOST_OCTET)


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


def render_project(project: Project, topology: Topology, rules: Config, *, vars_dir: Path | None = None,
                   extra_files: dict[Path, str] | None = None) -> RenderResult:
    """Write the Vagrantfile (validated by Vagrant), the dev inventory and plan.json for ``topology``."""
    project_dir = project.paths.root
    if vars_dir is None:
        source = rules.inventory_path()
        vars_dir = (source if source.is_dir() else source.parent) if source is not None and source.exists() else None
    vagrantfile = render_vagrantfile(topology, rules, template_for(project_dir))
    dev = build_dev_inventory(topology, rules.vars, vars_dir, load_secrets(project_dir / SECRETS_FILE),
                              not_secret=rules.not_secret)
    outputs: dict[Path, tuple[str, int]] = {Path(p): (t, 0o644) for p, t in (extra_files or {}).items()}
    outputs.update({project_dir / p: (f.content, f.mode) for p, f in dev.files.items()})
    outputs[project_dir / SECRETS_FILE] = (secrets_file_content(dev.secrets), 0o600)
    # plan.json holds variables too: the production secrets in it are replaced, and it is private all the same
    outputs[project.paths.plan] = (json.dumps((dev.plan or topology).to_state(), indent=2) + "\n", 0o600)

    validator = validate_vagrantfile if shutil.which("vagrant") else None
    written, unchanged = [], []
    if install_vagrantfile(project_dir, vagrantfile, validator):
        written.append("Vagrantfile")
    else:
        unchanged.append("Vagrantfile")
    project.progress("Vagrantfile", "validated by vagrant" if validator else "written (vagrant not installed)")
    for path, (content, mode) in outputs.items():
        rel = path.relative_to(project_dir).as_posix()
        (written if write_if_changed(path, content, mode=mode) else unchanged).append(rel)
    if vars_dir is not None:   # without the production folder, what is stale cannot be known: keep the copies
        _remove_stale(project_dir / INVENTORY_DIR / "group_vars", set(outputs), written)
    return RenderResult(topology=topology, written=tuple(written), unchanged=tuple(unchanged),
                        validated=validator is not None, secret_names=dev.secret_names, skipped=dev.skipped)


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
