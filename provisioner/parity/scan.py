"""What the playbooks manage, read statically: packages, services, users and groups.

Parity compares only what the playbooks are responsible for, so it reads ``site.yml`` and the roles it uses
(following ``import_playbook``, ``meta`` dependencies, blocks, handlers and every task file of a role) and
collects the ``name:`` of package, service, user and group tasks. Templated names are resolved when that is
simple: a variable from the play's ``vars`` or a role's ``defaults``/``vars``, or a literal ``loop`` list.
Anything else is kept as unresolved; the comparison then falls back to every package installed on the
reference host whose name the playbooks mention anywhere.

``site.yml`` and the playbooks it imports come from the shared reader (``provisioner.playbook.site``, Ansible's
YAML loader, called only when a scan runs); the roles' files are read here with plain YAML. Pure: never runs
Ansible, and importing this module does not import it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jinja2
import jinja2.nativetypes
import yaml

from provisioner.errors import DevboxError
from provisioner.playbook.role_tasks import iter_tasks, role_task_files
from provisioner.playbook.site import SitePlaybook, read_site

PACKAGE_MODULES = {"apt", "package", "ansible.builtin.apt", "ansible.builtin.package", "ansible.legacy.apt",
                   "ansible.legacy.package"}
SERVICE_MODULES = {"service", "systemd", "systemd_service", "ansible.builtin.service", "ansible.builtin.systemd",
                   "ansible.builtin.systemd_service", "ansible.legacy.service", "ansible.legacy.systemd"}
USER_MODULES = {"user", "ansible.builtin.user", "ansible.legacy.user"}
GROUP_MODULES = {"group", "ansible.builtin.group", "ansible.legacy.group"}
TASK_LIST_KEYS = ("pre_tasks", "tasks", "post_tasks", "handlers")
LOOP_KEYS = ("loop", "with_items", "with_list")
# a Debian package name (policy 5.6.1), used to find packages the playbooks mention in the fallback
PACKAGE_TOKEN = re.compile(r"[a-z0-9][a-z0-9+.-]+")

# native types: `{{ ops_users | default([]) }}` must give a list, not the text "[]"
_jinja = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class Managed:
    """What the playbooks manage. ``unresolved`` lists templated names devbox could not work out."""

    packages: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    unresolved: tuple[str, ...] = ()
    mentioned: frozenset[str] = frozenset()

    def to_json(self) -> dict:
        return {"packages": sorted(self.packages), "services": sorted(self.services), "users": sorted(self.users),
                "groups": sorted(self.groups), "unresolved": list(self.unresolved)}


@dataclass
class _Collector:
    packages: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)
    mentioned: set[str] = field(default_factory=set)
    seen_roles: set[Path] = field(default_factory=set)
    inventory_vars: dict = field(default_factory=dict)


def scan_playbook(playbook: Path, *, roles_paths: Iterable[Path] = (), inventory_vars: dict | None = None,
                  site: SitePlaybook | None = None) -> Managed:
    """Scan ``playbook`` (and what it imports). Roles are looked up next to each playbook, then in ``roles_paths``.

    ``inventory_vars`` (the inventory's variables for ``all``, non-secret) take precedence over role defaults,
    as in Ansible, so lists such as the operators' accounts resolve to what the environment really sets.
    ``site``: the playbook as already read this run (``read_site(playbook)``); read here if not given.
    """
    playbook = Path(playbook)
    if site is None:
        if not playbook.is_file():
            raise DevboxError(f"playbook {playbook} not found", "check `playbook:` in devbox.yml")
        site = read_site(playbook)
    if site.problems:
        raise site.problems[0]
    c = _Collector(inventory_vars=dict(inventory_vars or {}))
    _scan_site(site, c, tuple(Path(p) for p in roles_paths))
    return Managed(packages=frozenset(c.packages), services=frozenset(c.services), users=frozenset(c.users),
                   groups=frozenset(c.groups), unresolved=tuple(dict.fromkeys(c.unresolved)),
                   mentioned=frozenset(c.mentioned))


def _load_yaml(path: Path, c: _Collector) -> Any:
    text = path.read_text(encoding="utf-8")
    c.mentioned.update(PACKAGE_TOKEN.findall(text))
    try:
        # the roles may carry `!vault` values; the scan never needs them, so any tag loads as plain data
        return yaml.load(text, Loader=_AnyTagLoader)
    except yaml.YAMLError as exc:
        raise DevboxError(f"cannot read {path}: {exc}", "run `ansible-playbook --syntax-check` on the playbook") from exc


class _AnyTagLoader(yaml.SafeLoader):
    pass


_AnyTagLoader.add_multi_constructor("", lambda loader, suffix, node: None)


def _scan_site(site: SitePlaybook, c: _Collector, roles_paths: tuple[Path, ...]) -> None:
    for file in site.files.values():
        c.mentioned.update(PACKAGE_TOKEN.findall(file.text))
    for play in site.plays:  # imports expanded in place, in execution order
        play_vars = {**c.inventory_vars, **play.vars}
        search = (play.source.parent / "roles", *roles_paths)
        for role in play.roles:
            if role.name is not None:
                _scan_role(role.name, search, play_vars, c)
        for key in TASK_LIST_KEYS:
            _scan_tasks(play.tasks(key), play_vars, search, play.source.parent, c)


def _find_role(name: str, search: tuple[Path, ...]) -> Path | None:
    for base in search:
        candidate = base / name
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _role_vars(role_dir: Path, c: _Collector) -> dict:
    merged: dict = {}
    for sub in ("defaults", "vars"):  # Ansible's order: role defaults < inventory variables < role vars
        for f in _yaml_files(role_dir / sub):
            data = _load_yaml(f, c)
            if isinstance(data, dict):
                merged.update(data)
        if sub == "defaults":
            merged.update(c.inventory_vars)
    return merged


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def _scan_role(name: str, search: tuple[Path, ...], outer_vars: dict, c: _Collector) -> None:
    if "{{" in name:
        c.unresolved.append(f"role {name}")
        return
    role_dir = _find_role(name, search)
    if role_dir is None:
        c.unresolved.append(f"role {name} (not found)")
        return
    if role_dir in c.seen_roles:
        return
    c.seen_roles.add(role_dir)
    variables = {**_role_vars(role_dir, c), **outer_vars}
    meta = role_dir / "meta" / "main.yml"
    if meta.is_file():
        data = _load_yaml(meta, c) or {}
        for dep in (data.get("dependencies") or []) if isinstance(data, dict) else []:
            dep_name = dep if isinstance(dep, str) else (dep.get("role") or dep.get("name")) if isinstance(dep, dict) else None
            if isinstance(dep_name, str):
                _scan_role(dep_name, search, outer_vars, c)
    for path, _handlers in role_task_files(role_dir, _yaml_files):  # handlers are read like any task
        _scan_tasks(_load_yaml(path, c), variables, search, path.parent, c)


def _scan_tasks(tasks: Any, variables: dict, search: tuple[Path, ...], here: Path, c: _Collector) -> None:
    for task in iter_tasks(tasks):
        for module, args in task.items():
            if module in ("include_role", "import_role", "ansible.builtin.include_role",
                          "ansible.builtin.import_role") and isinstance(args, dict):
                if isinstance(args.get("name"), str):
                    _scan_role(args["name"], search, variables, c)
                continue
            if isinstance(args, str):
                args = _parse_kv(args)
            if not isinstance(args, dict):
                continue
            if module in PACKAGE_MODULES:
                _add_names(args.get("name", args.get("pkg")), task, variables, c.packages, c, packages=True)
            elif module in SERVICE_MODULES:
                _add_names(args.get("name"), task, variables, c.services, c)
            elif module in USER_MODULES:
                _add_names(args.get("name"), task, variables, c.users, c)
                _add_names(args.get("group"), task, variables, c.groups, c)
                _add_names(args.get("groups"), task, variables, c.groups, c, split_commas=True)
            elif module in GROUP_MODULES:
                _add_names(args.get("name"), task, variables, c.groups, c)


def _parse_kv(text: str) -> dict:
    """``apt: name=nginx state=present`` (the old one-line form)."""
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def _add_names(value: Any, task: dict, variables: dict, into: set[str], c: _Collector, *,
               split_commas: bool = False, packages: bool = False) -> None:
    if value is None:
        return
    for raw in value if isinstance(value, list) else [value]:
        for name in _resolve(raw, task, variables, c):
            for part in (name.split(",") if split_commas or packages else [name]):
                if part.strip():
                    into.add(_base_package_name(part.strip()) if packages else part.strip())


def _base_package_name(name: str) -> str:
    """``nginx=1.22*`` or ``nginx:amd64`` -> ``nginx``."""
    return re.split(r"[=:<>]", name, maxsplit=1)[0]


def _resolve(raw: Any, task: dict, variables: dict, c: _Collector) -> list[str]:
    if not isinstance(raw, str):
        return [str(raw)] if isinstance(raw, (int, float)) else []
    if "{{" not in raw:
        return [raw]
    scope = dict(variables)
    loop = next((task[k] for k in LOOP_KEYS if k in task), None)
    if loop is not None and "item" in raw:
        items = _resolve_value(loop, scope, 0)
        if isinstance(items, list):
            out: list[str] = []
            for item in items:
                value = _resolve_value(raw, {**scope, "item": item}, 0)
                if value is None:
                    c.unresolved.append(raw)
                    return out
                out.extend(value if isinstance(value, list) else [value])
            return [str(v) for v in out]
    value = _resolve_value(raw, scope, 0)
    if value is None:
        c.unresolved.append(raw)
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _resolve_value(value: Any, scope: dict, depth: int) -> Any:
    """Resolve a template against ``scope``; ``None`` if it is not simple (unknown variable, Ansible filter...)."""
    if depth > 5:
        return None
    if isinstance(value, list):
        resolved = [_resolve_value(v, scope, depth + 1) for v in value]
        return None if any(v is None for v in resolved) else resolved
    if isinstance(value, dict):
        resolved = {k: _resolve_value(v, scope, depth + 1) for k, v in value.items()}
        return None if any(v is None for v in resolved.values()) else resolved
    if not isinstance(value, str) or "{{" not in value and "{%" not in value:
        return value
    # only the variables the template names, each resolved first (defaults often point at inventory variables)
    needed = {k: _resolve_value(v, scope, depth + 1) for k, v in scope.items()
              if re.search(rf"\b{re.escape(k)}\b", value)}
    try:
        # a variable that is not simple stays undefined, so StrictUndefined makes the whole name unresolved
        result = _jinja.from_string(value).render({k: v for k, v in needed.items() if v is not None})
    except Exception:  # noqa: BLE001 - any template devbox cannot render alone (Ansible filters, lookups)
        return None
    return None if isinstance(result, str) and "{{" in result else result
