"""Which variables a project's playbooks and roles read, and which they define: read statically, nothing run.

When a team's secrets live in whole-file vault-encrypted ``group_vars`` (``vault.yml``), devbox cannot see their
names; the roles that use them can still be read. ``scan_variables(folders)`` walks the playbooks, the roles'
``tasks``/``handlers``/``defaults``/``vars``/``meta`` and the readable ``group_vars``/``host_vars`` YAML files, and
the roles' ``templates``, and parses every templated string with Jinja2's own parser (``Environment.parse``;
the names come from walking its AST, the way ``jinja2.meta.find_undeclared_variables`` does, without compiling,
so Ansible's own filters and tests need not exist here). Conditionals (``when``, ``changed_when``,
``failed_when``, ``until``, ``assert``'s ``that``) are bare expressions and are read as ``{{ expression }}``.

A name is *defined* by a vars/defaults/group_vars/host_vars file (its top-level keys), ``vars:`` of a play,
block, task or role entry, ``register``, ``set_fact``, ``loop_control.loop_var``/``index_var``, ``vars_prompt``
and the template's own ``set``/``for``/``macro``/``import``. Ansible's magic and special variables
(``hostvars``, ``groups``, ``inventory_hostname``, ``item``, every ``ansible_*``, ...) are never reported.
Whole-file vault-encrypted files are counted in ``encrypted``: what they define is exactly what cannot be seen.

Pure: reads files, imports only Jinja2, PyYAML and devbox's limited YAML loader.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml
from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from provisioner.safeyaml import LimitedSafeLoader

YAML_SUFFIXES = (".yml", ".yaml", ".json")
VAULT_HEADER = b"$ANSIBLE_VAULT"
MAX_FILE_BYTES = 2 * 1024 * 1024          # a bigger "vars file" is data, not configuration: skipped
SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".tox", ".venv", "venv",
                             ".devbox", ".vagrant", "files", "molecule", "tests"})
CONDITIONAL_KEYS = frozenset({"when", "changed_when", "failed_when", "until", "that"})
SET_FACT_KEYS = frozenset({"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"})
SET_FACT_ARGS = frozenset({"cacheable"})
DEFINING_FOLDERS = frozenset({"defaults", "vars", "group_vars", "host_vars"})
# Ansible's magic variables, Jinja2's and Ansible's template globals, and devbox's own host variables.
MAGIC = frozenset({
    "hostvars", "groups", "group_names", "inventory_hostname", "inventory_hostname_short", "inventory_dir",
    "inventory_file", "playbook_dir", "play_hosts", "role_name", "role_names", "role_path", "role_uuid",
    "play_uuid", "omit", "item", "loop", "vars", "environment", "lookup", "query", "q", "now", "undef", "range",
    "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None",
    "self", "varargs", "kwargs", "caller", "super", "devbox_name", "devbox_address", "devbox_represents",
})
MAGIC_PREFIXES = ("ansible_", "facter_", "ohai_", "molecule_")


@dataclass(frozen=True)
class VariableUse:
    referenced: frozenset[str]   # names read somewhere
    defined: frozenset[str]      # names some readable file or task defines
    structured: frozenset[str]   # names read as a mapping or list (``x.key``, ``x['k']``, ``for a in x``)
    files: int                   # files read
    encrypted: tuple[str, ...]   # whole-file vault-encrypted files met (their names are unknown)

    def undefined(self, also_defined: Iterable[str] = ()) -> list[str]:
        """Names read that nothing readable defines (nor ``also_defined``: the inventory's own variables)."""
        return sorted(self.referenced - self.defined - set(also_defined))


class _Loader(LimitedSafeLoader):
    """Plain YAML, aliases limited ("billion laughs" refused): ``!vault`` values are secrets nobody can read here,
    ``!unsafe`` strings are never templates, other tags are nothing devbox needs."""


_Loader.add_constructor("!vault", lambda loader, node: None)
_Loader.add_constructor("!unsafe", lambda loader, node: None)
_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


@lru_cache(maxsize=None)
def _environment() -> Environment:
    """The parser (made on first use: only `init` scans the playbooks, and `plan` is timed against Ansible's)."""
    return Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


class _Names:
    def __init__(self) -> None:
        self.read: set[str] = set()
        self.stored: set[str] = set()
        self.structured: set[str] = set()


@lru_cache(maxsize=65536)
def template_names(text: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(read, defined by the template itself, read as a structure) for one Jinja2 template; empty when it
    does not parse (Ansible would fail on it too, and says so better)."""
    try:
        tree = _environment().parse(text)
    except (TemplateSyntaxError, RecursionError, ValueError):
        return frozenset(), frozenset(), frozenset()
    names = _Names()
    _walk(tree, names)
    return frozenset(names.read), frozenset(names.stored), frozenset(names.structured)


def _walk(node: nodes.Node, names: _Names) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, nodes.Name):
            if current.ctx == "load":
                names.read.add(current.name)
            else:   # store (set, for targets) and param (macro arguments)
                names.stored.add(current.name)
        elif isinstance(current, (nodes.Getattr, nodes.Getitem)) and isinstance(current.node, nodes.Name):
            names.structured.add(current.node.name)
        elif isinstance(current, nodes.For) and isinstance(current.iter, nodes.Name):
            names.structured.add(current.iter.name)
        elif isinstance(current, nodes.Import):
            names.stored.add(current.target)
        elif isinstance(current, nodes.FromImport):
            names.stored.update(n[1] if isinstance(n, tuple) else n for n in current.names)
        elif isinstance(current, nodes.Macro):
            names.stored.add(current.name)
        stack.extend(current.iter_child_nodes())


def _is_magic(name: str) -> bool:
    return name in MAGIC or name.startswith(MAGIC_PREFIXES)


class _Scan:
    def __init__(self) -> None:
        self.read: set[str] = set()
        self.defined: set[str] = set()
        self.structured: set[str] = set()
        self.files = 0
        self.encrypted: list[str] = []

    def text(self, text: str) -> None:
        read, stored, structured = template_names(text)
        self.read |= read
        self.defined |= stored
        self.structured |= structured

    def value(self, value: Any, conditional: bool = False) -> None:
        stack = [(value, conditional)]
        while stack:
            current, cond = stack.pop()
            if isinstance(current, str):
                if "{{" in current or "{%" in current:
                    self.text(current)
                elif cond and current.strip():
                    self.text("{{ " + current + " }}")
            elif isinstance(current, dict):
                for key, item in current.items():
                    self._key(key, item)
                    if isinstance(item, str) and isinstance(key, str) and (key == "loop" or key.startswith("with_")):
                        self.structured |= template_names(item)[0]   # iterated: a list or a mapping
                    stack.append((item, key in CONDITIONAL_KEYS))
            elif isinstance(current, list):
                stack.extend((item, cond) for item in current)

    def _key(self, key: Any, item: Any) -> None:
        if key == "register" and isinstance(item, str):
            self.defined.add(item)
        elif key in SET_FACT_KEYS and isinstance(item, dict):
            self.defined.update(str(k) for k in item if k not in SET_FACT_ARGS)
        elif key == "vars" and isinstance(item, dict):
            self.defined.update(str(k) for k in item)
        elif key == "loop_control" and isinstance(item, dict):
            self.defined.update(str(item[k]) for k in ("loop_var", "index_var", "extended_var") if k in item)
        elif key == "vars_prompt" and isinstance(item, list):
            self.defined.update(str(p["name"]) for p in item if isinstance(p, dict) and "name" in p)
        elif key in ("roles", "include_role", "import_role", "ansible.builtin.include_role",
                     "ansible.builtin.import_role") and isinstance(item, (list, dict)):
            for entry in item if isinstance(item, list) else [item]:
                if isinstance(entry, dict):   # role parameters are variables of the role
                    self.defined.update(str(k) for k in entry if k not in ("role", "name", "tags", "when", "vars"))

    def file(self, path: Path, defining: bool, template: bool) -> None:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return
            raw = path.read_bytes()
        except OSError:
            return
        if raw.lstrip().startswith(VAULT_HEADER):
            self.encrypted.append(str(path))
            return
        self.files += 1
        text = raw.decode("utf-8", "replace")
        if template:
            self.text(text)
            return
        try:
            data = yaml.load(text, Loader=_Loader)
        except (yaml.YAMLError, RecursionError):
            return
        if defining and isinstance(data, dict):
            self.defined.update(str(k) for k in data)
        self.value(data)


def scan_variables(folders: Iterable[Path]) -> VariableUse:
    """Read every playbook, role and vars file under ``folders`` (see the module docstring)."""
    scan = _Scan()
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder, followlinks=True):
            here = Path(root)
            resolved = here.resolve()
            if resolved in seen:   # a symlink loop, or a folder under two of the given folders
                dirs[:] = []
                continue
            seen.add(resolved)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
            parts = set(here.relative_to(folder).parts)
            template = "templates" in parts
            defining = bool(parts & DEFINING_FOLDERS)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = here / name
                if template:
                    scan.file(path, False, True)
                elif path.suffix in YAML_SUFFIXES or (defining and not path.suffix):
                    scan.file(path, defining, False)
    return VariableUse(referenced=frozenset(n for n in scan.read if not _is_magic(n)),
                       defined=frozenset(scan.defined), structured=frozenset(scan.structured),
                       files=scan.files, encrypted=tuple(scan.encrypted))
