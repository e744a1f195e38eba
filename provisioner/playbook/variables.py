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
Names read as a mapping or a list also get their ``shapes`` (the keys read, recursively; the items' shape where
iterated), so that a development value can be built to match (``template_shapes``).

Pure: reads files, imports only Jinja2, PyYAML and devbox's limited YAML loader.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

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
    shapes: Mapping[str, Any] = field(default_factory=dict)   # how each structured name is read (``Shape``)

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
    tree = _parse(text)
    if tree is None:
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


# How a template reads a value, as a ``Shape``: ``None`` a scalar (or unknown), a dict a mapping whose known keys
# map to their own shapes, a one-item list a list whose items have that shape. ``vault_ldap.bind_password`` gives
# ``{"bind_password": None}``; ``{% for u in vault_users %}{{ u.name }}`` gives ``[{"name": None}]``.
Shape = Any
MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})
MAPPING_FILTERS = frozenset({"dict2items", "combine"})


def merge_shapes(a: Shape, b: Shape) -> Shape:
    """Both readings at once: keys of both mappings, items read both ways; a scalar reading adds nothing."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        for key, sub in b.items():
            merged[key] = merge_shapes(merged.get(key), sub)
        return merged
    if isinstance(a, list) and isinstance(b, list):
        return [merge_shapes(a[0], b[0])]
    return a   # read as a mapping in one place and as a list in another: the first reading


def _access(node: nodes.Node) -> tuple[str, Shape] | None:
    """``x.a['b']`` as (``x``, ``{"a": {"b": None}}``); None when ``node`` is not such a chain from a name."""
    steps: list[tuple[str, Any]] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            steps.append(("key", node.attr))
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            steps.append(("key", node.arg.value))
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, int):
            steps.append(("item", None))
        else:
            steps.append(("any", None))   # x[some_variable]: a mapping or a list, which keys unknown
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    shape: Shape = None
    for kind, key in steps:   # innermost first: x.a.b is steps [b, a]
        shape = {key: shape} if kind == "key" else [shape] if kind == "item" else {}
    return node.name, shape


def _shape_of_chain(node: nodes.Node, shape: Shape) -> tuple[str, Shape] | None:
    """The shape of the name at the root of chain ``node`` when the value the chain reaches has ``shape``."""
    found = _access(node)
    if found is None:
        return None
    name, path = found

    def put(at: Shape) -> Shape:
        if at is None:
            return shape
        if isinstance(at, list):
            return [put(at[0])]
        if isinstance(at, dict) and len(at) == 1:
            key = next(iter(at))
            return {key: put(at[key])}
        return at   # x[some_variable]: nothing more is known
    return name, put(path)


@lru_cache(maxsize=65536)
def _parse(text: str) -> nodes.Template | None:
    try:
        return _environment().parse(text)
    except (TemplateSyntaxError, RecursionError, ValueError):
        return None


def template_shapes(text: str) -> dict[str, Shape]:
    """How one template reads each name it reads as a mapping or a list (names read only as scalars are left
    out): keys read (``x.key``, ``x['key']``, ``x.get('key')``), items iterated (``for u in x``, the loop
    variable's own reading giving the items' shape), mapping methods and filters (``x.items()``,
    ``x | dict2items``)."""
    tree = _parse(text)
    if tree is None:
        return {}
    shapes: dict[str, Shape] = {}
    loops: list[tuple[int, nodes.For]] = []
    methods: set[int] = set()

    def add(found: tuple[str, Shape] | None) -> None:
        if found is not None and found[1] is not None:
            shapes[found[0]] = merge_shapes(shapes.get(found[0]), found[1])

    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, nodes.Call) and isinstance(current.node, nodes.Getattr) \
                and current.node.attr in MAPPING_METHODS:
            methods.add(id(current.node))
            key = current.args[0] if current.node.attr == "get" and current.args else None
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                add(_shape_of_chain(current.node.node, {key.value: None}))
            else:
                add(_shape_of_chain(current.node.node, {}))
        elif isinstance(current, nodes.Filter) and current.name in MAPPING_FILTERS and current.node is not None:
            add(_shape_of_chain(current.node, {}))
        elif isinstance(current, (nodes.Getattr, nodes.Getitem)) and id(current) not in methods:
            add(_access(current))
        elif isinstance(current, nodes.For):
            loops.append((depth, current))
        stack.extend((child, depth + 1) for child in current.iter_child_nodes())
    for _, loop in sorted(loops, key=lambda pair: -pair[0]):   # inner loops first: their items feed the outer
        item = shapes.get(loop.target.name) if isinstance(loop.target, nodes.Name) else None
        add(_shape_of_chain(loop.iter, [item]))
    return shapes


def _is_magic(name: str) -> bool:
    return name in MAGIC or name.startswith(MAGIC_PREFIXES)


class _Scan:
    def __init__(self) -> None:
        self.read: set[str] = set()
        self.defined: set[str] = set()
        self.structured: set[str] = set()
        self.shapes: dict[str, Shape] = {}
        self.files = 0
        self.encrypted: list[str] = []

    def text(self, text: str) -> None:
        read, stored, structured = template_names(text)
        self.read |= read
        self.defined |= stored
        self.structured |= structured
        if structured:
            self.shape(template_shapes(text))

    def shape(self, shapes: Mapping[str, Shape]) -> None:
        for name, shape in shapes.items():
            self.shapes[name] = merge_shapes(self.shapes.get(name), shape)

    def task_loop(self, task: dict, key: str, expression: str) -> None:
        """``loop: "{{ x }}"`` (or ``with_items``/``with_list``): ``x`` is a list whose items have the shape the
        task's other strings read its loop variable with (``item.name``)."""
        tree = _parse(expression)
        body = tree.body if tree is not None and key in ("loop", "with_items", "with_list") else []
        if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1 \
                or _access(body[0].nodes[0]) is None:
            return   # not a bare `{{ x }}` (or `{{ x.y }}`): a filter or a literal list says nothing here
        control = task.get("loop_control")
        var = str(control.get("loop_var", "item")) if isinstance(control, dict) else "item"
        item: Shape = None
        stack = [(v, k in CONDITIONAL_KEYS) for k, v in task.items() if k != key]
        while stack:
            current, conditional = stack.pop()
            if isinstance(current, str):
                text = current if "{{" in current or "{%" in current else \
                    "{{ " + current + " }}" if conditional and current.strip() else None
                if text is not None:
                    item = merge_shapes(item, template_shapes(text).get(var))
            elif isinstance(current, dict):
                stack.extend((v, k in CONDITIONAL_KEYS) for k, v in current.items())
            elif isinstance(current, list):
                stack.extend((v, conditional) for v in current)
        self.shape(dict([found]) if (found := _shape_of_chain(body[0].nodes[0], [item])) else {})

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
                        self.task_loop(current, key, item)
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
                       files=scan.files, encrypted=tuple(scan.encrypted), shapes=scan.shapes)
