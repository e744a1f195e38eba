"""What a provisioning run would apply to each VM, as content digests (pure core).

``scan_project(playbook, inventory_dir, ...)`` loads the playbook with ansible-core's own classes (plays, role
search path, ``meta/main.yml`` dependencies), built on the data of the shared reader (``provisioner.playbook.site``:
``site.yml`` is parsed once per run, for the planner, the stamp and the parity scan alike), and the development
inventory with ``InventoryManager``, then cuts the run into *units*, in execution order:

* one unit per play for the play's own content (``hosts``, play vars, ``vars_files``, pre_tasks, tasks,
  post_tasks, handlers: everything but the ``roles:`` list), and
* one unit per entry of the play's ``roles:`` list.

Each unit has *inputs*: a mapping ``input name -> sha256`` of everything that decides what the unit does on a VM:
global inputs (ansible.cfg, requirements files, playbook-level plugin folders, ansible-core's version), the
variables that apply to the VM (inventory and playbook ``group_vars``/``host_vars`` files of every group the VM
is in, the VM's inline host and group vars, devbox's extra vars and extra var files), the play's own content,
the role entry, and every file of the role's *closure* (the role, its ``meta`` dependencies recursively, and roles
it pulls with a static ``include_role``/``import_role``, recursively). Only digests are kept, never values.

For the planner (``provisioner/incremental/subset.py``) each unit also carries what a text scan of its closure finds:
names it *exports* to later units (``set_fact``/``register`` names, role defaults and vars, which a play exposes
to all of its roles; for an ``include_vars`` with a templated file name, the top-level names of every vars file of
the role or the playbook the name can match, whatever it renders to), whether it exports names devbox cannot know
(an ``include_vars`` whose name is any variable or whose file cannot be read, ``*_facts`` modules,
``add_host``/``group_by``, ``meta: end_*``), the identifiers it *mentions*, the names it reads of other hosts
through ``hostvars`` (Jinja2's AST of its templates, task expressions, play and role-entry vars; None when it uses
``hostvars`` in a way that names none), whether it reads the play's host list, which other roles of the play define the handlers it notifies, and anything that makes devbox
unable to know what it runs (a templated ``include_role`` name, a templated ``notify``, a templated play
``hosts``...): those units make the planner run everything for the VMs concerned.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from provisioner.errors import DevboxError
from provisioner.playbook.role_tasks import iter_tasks, role_task_files
from provisioner.playbook.site import PlaybookReadError, SitePlaybook, read_site

# Identifiers in role and play text; used to know which names a unit may read.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REMOTE_FACTS = re.compile(r"hostvars[^\n]{0,80}ansible_")
# Variables that say how devbox reaches a VM, not what is applied to it (they change when a VM restarts).
CONNECTION_VARS = frozenset({
    "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_host", "ansible_ssh_port", "ansible_ssh_user",
    "ansible_ssh_private_key_file", "ansible_private_key_file", "ansible_ssh_common_args",
    "ansible_ssh_extra_args", "ansible_ssh_pass", "ansible_password",
    # set by the inventory parser: where the inventory is, not what it says
    "inventory_file", "inventory_dir",
})
# Magic variables whose value depends on which hosts are in the play: a unit reading them must run on all of them.
PLAY_HOSTS_MAGIC = frozenset({"play_hosts", "ansible_play_hosts", "ansible_play_hosts_all", "ansible_play_batch"})
# Folders of a role that never take part in a run.
_ROLE_SKIP = frozenset({"molecule", "tests", "__pycache__"})
# Folders next to the playbook that Ansible searches (plugins, shared templates/files...): global inputs.
_PLAYBOOK_GLOBAL_DIRS = ("library", "module_utils", "filter_plugins", "lookup_plugins", "callback_plugins",
                         "action_plugins", "test_plugins", "vars_plugins", "templates", "files", "tasks")
_GLOBAL_FILES = ("ansible.cfg", "requirements.yml", "requirements.yaml", "collections/requirements.yml",
                 "roles/requirements.yml")
_VAR_EXTS = ("", ".yml", ".yaml", ".json")
_TEXT_DIRS = ("tasks", "handlers", "templates", "defaults", "vars", "meta")


_PLUGINS_READY = False


class ChangesError(DevboxError):
    """The playbook or the development inventory cannot be parsed, so no plan can be made."""


@dataclass(frozen=True)
class Unit:
    """A piece of the run that is applied, or not, as a whole on a VM: a play's own content, or one role entry."""

    key: str                       # "PLAY" (play's own) or "PLAY/ROLE"
    play: str                      # play key
    role: str | None               # role entry key within the play; None for the play's own content
    order: int                     # execution order in the playbook
    inputs: Mapping[str, str]      # shared inputs (play, role closure); VM inputs are added per VM
    role_names: frozenset[str] = frozenset()   # names Ansible reports on task events for this unit's closure
    exports: frozenset[str] = frozenset()      # set_fact/register names: visible to later units on the host
    scoped_exports: frozenset[str] = frozenset()  # role defaults/vars: visible to every role of the same play
    unknown_exports: tuple[str, ...] = ()      # why later units may read names devbox cannot list
    assigns: frozenset[str] = frozenset()      # names the unit sets itself (so reading them is no dependency)
    mentions: frozenset[str] = frozenset()     # identifiers found in the closure's text
    handler_units: frozenset[str] = frozenset()  # units of the same play defining handlers this one notifies
    notifies: bool = False                     # notifies any handler (a handler still pending is unfinished work)
    uncertain: tuple[str, ...] = ()            # reasons devbox cannot know what this unit runs
    reads_remote_facts: bool = False           # reads gathered facts of other hosts through hostvars
    fact_exports: tuple[str, ...] = ()         # those of unknown_exports that set only `ansible_*` facts
    hostvars_reads: frozenset[str] | None = frozenset()  # names read through hostvars; None: any name

    @property
    def label(self) -> str:
        return f"play {self.play}" if self.role is None else f"role {self.role} (play {self.play})"

    @property
    def uses_hostvars(self) -> bool:
        return "hostvars" in self.mentions

    @property
    def uses_play_hosts(self) -> bool:
        return bool(self.mentions & PLAY_HOSTS_MAGIC)

    @property
    def remote_reads(self) -> frozenset[str]:
        """Names this unit reads from other hosts through ``hostvars``: those its templates name, or every
        identifier it mentions when it reads ``hostvars`` in a way that names none."""
        return self.mentions if self.hostvars_reads is None else self.hostvars_reads

    def may_set(self, names: frozenset[str]) -> list[str]:
        """Of ``names``, those this unit can set for its host as another host sees them through ``hostvars``;
        ``["variables"]`` when it sets names devbox cannot list that may be among them."""
        found = sorted(self.exports & names)
        if found:
            return found
        others = [r for r in self.unknown_exports if r not in self.fact_exports]
        if others or (self.fact_exports and any(n.startswith("ansible_") for n in names)):
            return ["variables"]
        return []


@dataclass(frozen=True)
class PlayInfo:
    key: str
    index: int
    hosts: Any                      # the play's `hosts`, as written
    vms: tuple[str, ...]            # VMs the play targets
    role_keys: tuple[str, ...]      # role entry keys, in order
    role_entries: Mapping[str, Any]  # role entry key -> the entry as written
    data: Mapping[str, Any]         # the play as written (used to derive the subset playbook)
    gather_facts: bool


@dataclass(frozen=True)
class ProjectDigests:
    """Everything the planner compares with the ledger: per-VM inputs and the units of the run, in order."""

    playbook: Path
    vms: tuple[str, ...]
    plays: tuple[PlayInfo, ...]
    units: tuple[Unit, ...]
    vm_inputs: Mapping[str, Mapping[str, str]]         # global + variables, per VM
    vm_uncertain: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    subset_blockers: tuple[str, ...] = ()             # reasons no subset playbook can be derived at all
    sources: tuple[str, ...] = ()                     # every folder and file the digests were read from
    site: SitePlaybook | None = field(default=None, compare=False, repr=False)  # the playbook as read for them

    def units_for(self, vm: str) -> list[Unit]:
        plays = {p.key for p in self.plays if vm in p.vms}
        return [u for u in self.units if u.play in plays]

    def inputs_for(self, vm: str, unit: Unit) -> dict[str, str]:
        merged = dict(self.vm_inputs.get(vm, {}))
        merged.update(unit.inputs)
        return merged

    def play(self, key: str) -> PlayInfo:
        return next(p for p in self.plays if p.key == key)


# ---------------------------------------------------------------------------------------------------- digests

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(value: Any) -> str:
    """For ``json.dumps`` of play data: a vault-encrypted value stands as a digest of its ciphertext (turning it
    into text would decrypt it, and development runs have no vault password)."""
    ciphertext = getattr(value, "_ciphertext", None)
    if ciphertext is not None:
        raw = ciphertext if isinstance(ciphertext, bytes) else str(ciphertext).encode()
        return f"<vault {_sha(raw)[:16]}>"
    return str(value)


def _digest_data(data: Any) -> str:
    """Digest of parsed YAML data; vault-encrypted values are digested as their ciphertext, never decrypted."""
    import yaml
    from ansible.parsing.yaml.dumper import AnsibleDumper

    return _sha(yaml.dump(data, Dumper=AnsibleDumper, sort_keys=True, default_flow_style=False).encode())


def _files_under(root: Path, skip: frozenset[str] = frozenset()) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip)
        for name in sorted(filenames):
            if not name.startswith(".") and not name.endswith((".pyc", ".retry")):
                yield Path(dirpath, name)


def _var_files(folder: Path, name: str) -> list[Path]:
    """The files Ansible's host_group_vars plugin reads for ``name`` in a group_vars/host_vars folder."""
    found = []
    for ext in _VAR_EXTS:
        path = folder / f"{name}{ext}"
        if path.is_file():
            found.append(path)
    if (folder / name).is_dir():
        found.extend(p for p in _files_under(folder / name) if p.suffix in _VAR_EXTS)
    return found


# ---------------------------------------------------------------------------------------------------- task scan

def _short(action: str) -> str:
    return action.rsplit(".", 1)[-1]


_TASK_KEYWORDS = frozenset({
    "name", "when", "register", "notify", "listen", "tags", "vars", "loop", "loop_control", "with_items",
    "become", "become_user", "become_method", "delegate_to", "delegate_facts", "run_once", "ignore_errors",
    "ignore_unreachable", "changed_when", "failed_when", "until", "retries", "delay", "environment", "no_log",
    "args", "check_mode", "diff", "any_errors_fatal", "throttle", "timeout", "connection", "module_defaults",
    "collections", "debugger", "local_action", "async", "poll", "action", "port", "remote_user",
})


def _task_action(task: Mapping) -> tuple[str | None, Any]:
    if "action" in task or "local_action" in task:
        value = task.get("action", task.get("local_action"))
        if isinstance(value, str):
            return value.split()[0] if value.split() else None, value
        if isinstance(value, Mapping):
            return value.get("module"), value
    for key, value in task.items():
        if key not in _TASK_KEYWORDS and not str(key).startswith("with_"):
            return str(key), value
    return None, None


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@dataclass
class _Scan:
    """What a text and task scan of one role (or a play's own tasks) found."""

    exports: set[str] = field(default_factory=set)
    scoped_exports: set[str] = field(default_factory=set)
    unknown_exports: list[str] = field(default_factory=list)
    assigns: set[str] = field(default_factory=set)
    mentions: set[str] = field(default_factory=set)
    notifies: set[str] = field(default_factory=set)
    handlers: set[str] = field(default_factory=set)       # handler names and listen topics defined
    roles_used: list[str] = field(default_factory=list)   # static include_role/import_role names
    uncertain: list[str] = field(default_factory=list)
    reads_remote_facts: bool = False
    fact_exports: list[str] = field(default_factory=list)  # setup/gather_facts: sets `ansible_*` facts only
    hostvars_reads: set[str] = field(default_factory=set)  # names read from other hosts through hostvars
    hostvars_any: bool = False                             # reads hostvars in a way that names no variable


# Variables an include_vars file name may be templated with and still name a file of the role or the playbook:
# facts (`ansible_os_family`, `ansible_distribution`...: never a path), and the folders Ansible itself names.
_CONFINED_NAMES = frozenset({"role_path", "playbook_dir", "role_name", "ansible_facts"})
_TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_LOOP_KEYS = ("loop", "with_items", "with_list", "with_first_found")
_BARE_KEYS = frozenset({"when", "changed_when", "failed_when", "until", "that"})


class _VarFiles:
    """The files an ``include_vars`` in a task file can load, as Ansible searches them for a relative name: the
    role's ``vars/``, the role folder, the task file's folder, then the playbook's ``vars/`` and folder. A name
    with a ``/`` in it (or a ``dir:``) can reach deeper: each of them is then searched whole."""

    def __init__(self, loader, role_path: Path | None, task_dir: Path | None, basedir: Path):
        self.loader = loader
        flat = [d for d in (role_path, task_dir, basedir) if d is not None]
        deep = [d for d in ((role_path / "vars") if role_path else None, basedir / "vars") if d is not None]
        self.shallow = [(d, False) for d in flat] + [(d, True) for d in deep]
        self.everything = [(d, True) for d in [*flat, *deep]]

    def keys(self, pattern: str) -> tuple[set[str] | None, str]:
        """Top-level names of every file matching ``pattern`` (``*`` for each templated part); None when one of
        them cannot be read (vault-encrypted, broken: its names are unknown)."""
        from fnmatch import fnmatchcase

        found: set[str] = set()
        seen: set[Path] = set()
        for folder, recursive in self.everything if "/" in pattern else self.shallow:
            if not folder.is_dir():
                continue
            paths = (_files_under(folder, _ROLE_SKIP) if recursive
                     else (p for p in sorted(folder.iterdir()) if p.is_file()))
            for path in paths:
                if path in seen or path.suffix not in _VAR_EXTS:
                    continue
                rel = str(path.relative_to(folder))
                if not (fnmatchcase(rel, pattern) or (pattern.startswith("*") and fnmatchcase(str(path), pattern))):
                    continue
                seen.add(path)
                try:
                    data = self.loader.load_from_file(str(path), unsafe=True)
                except Exception:  # noqa: BLE001 - vault-encrypted or broken: devbox cannot list its names
                    return None, f"{path.name} cannot be read"
                if isinstance(data, Mapping):
                    found.update(str(k) for k in data)
        return found, ""


def _template_names(text: str) -> set[str] | None:
    """The variables a template reads (Jinja2's own AST), or None if it does not parse."""
    try:
        from jinja2 import meta

        return set(meta.find_undeclared_variables(_jinja_env().parse(text)))
    except Exception:  # noqa: BLE001 - TemplateSyntaxError and friends
        return None


def _include_vars_keys(task: Mapping, args: Any, var_files: "_VarFiles | None") -> tuple[set[str] | None, str]:
    """Names a templated (or looped) ``include_vars`` can set: the top-level keys of every file of the role or the
    playbook its name can pick, whatever the template renders to. (None, why) when devbox cannot tell."""
    if isinstance(args, str):
        from ansible.parsing.splitter import parse_kv

        args = parse_kv(args)
    if not isinstance(args, Mapping):
        return None, "its arguments are templated"
    if "dir" in args:
        folder = args["dir"]
        if not isinstance(folder, str) or _templated(folder):
            return None, "templated dir"
        sources = [folder.rstrip("/") + "/*"]
    else:
        source = args.get("file", args.get("_raw_params"))
        if not isinstance(source, str):
            return None, "no file name devbox can read"
        sources = [source]
        loop_var = (task.get("loop_control") or {}).get("loop_var", "item") \
            if isinstance(task.get("loop_control"), Mapping) else "item"
        names = _template_names(source)
        if names is None:
            return None, f"{source!r} does not parse"
        if loop_var in names:
            entries = _loop_entries(task)
            if entries is None:
                return None, "its loop is templated"
            item = re.compile(r"\{\{\s*" + re.escape(loop_var) + r"\s*\}\}")
            sources = [item.sub(lambda _m, e=entry: e, source) for entry in entries]
    if var_files is None:
        return None, "outside a role"
    keys: set[str] = set()
    for source in sources:
        names = _template_names(source)
        if names is None:
            return None, f"{source!r} does not parse"
        free = sorted(n for n in names if not (n.startswith("ansible_") or n in _CONFINED_NAMES))
        if free:
            return None, f"`{free[0]}` can name any file"
        static = _TEMPLATE_PART.sub("", source)
        if source.startswith("/") or ".." in Path(static).parts:
            return None, f"{source!r} is outside the role"
        found, why = var_files.keys(_TEMPLATE_PART.sub("*", source))
        if found is None:
            return None, why
        keys |= found
    return keys, ""


def _loop_entries(task: Mapping) -> list[str] | None:
    """The file names a loop over include_vars gives (``with_first_found`` files joined with their paths)."""
    for key in _LOOP_KEYS:
        if key not in task:
            continue
        value = task[key]
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for item in items:
            if isinstance(item, str):  # a templated entry is checked like the file name it becomes
                out.append(item)
            elif isinstance(item, Mapping) and key == "with_first_found":
                files = item.get("files") or []
                paths = item.get("paths") or [""]
                files = files if isinstance(files, list) else [files]
                paths = paths if isinstance(paths, list) else [paths]
                if not all(isinstance(x, str) for x in [*files, *paths]):
                    return None
                out.extend(f"{d.rstrip('/')}/{f}" if d else f for d in paths for f in files)
            else:
                return None
        return out
    return None


_ENV = None


def _jinja_env():
    global _ENV
    if _ENV is None:
        try:  # the environment Ansible templates with (its grammar, its extensions)
            from ansible._internal._templating._jinja_bits import AnsibleEnvironment

            _ENV = AnsibleEnvironment()
        except Exception:  # noqa: BLE001 - ansible-core moved it: Jinja2's own parses the same syntax
            from jinja2 import Environment

            _ENV = Environment()
    return _ENV


def _hostvars_reads(data: Any, scan: _Scan, *, bare: bool = False) -> None:
    """Record what ``data`` (a template's text, or YAML data whose conditions are bare expressions) reads
    through ``hostvars``: ``hostvars[h]['x']``, ``hostvars[h].x``, ``hostvars[h].get('x')``,
    ``map('extract', hostvars, 'x')``. Any other use of ``hostvars`` names no variable (``hostvars_any``)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            _hostvars_reads(value, scan, bare=key in _BARE_KEYS)
        return
    if isinstance(data, list):
        for value in data:
            _hostvars_reads(value, scan, bare=bare)
        return
    if not isinstance(data, str) or "hostvars" not in data:
        return
    text = data if (not bare or _templated(data)) else "{{ " + data + " }}"
    try:
        tree = _jinja_env().parse(text)
    except Exception:  # noqa: BLE001 - not a template Ansible could render either: assume the worst
        scan.hostvars_any = True
        return
    _visit_hostvars(tree, [], scan)


def _visit_hostvars(node, parents: list, scan: _Scan) -> None:
    from jinja2 import nodes

    if isinstance(node, nodes.Name) and node.name == "hostvars":
        name = _hostvars_name(node, parents)
        if name is None:
            scan.hostvars_any = True
        else:
            scan.hostvars_reads.add(name)
            if name.startswith("ansible_"):
                scan.reads_remote_facts = True
    for child in node.iter_child_nodes():
        _visit_hostvars(child, [*parents, node], scan)


def _hostvars_name(node, parents: list) -> str | None:
    from jinja2 import nodes

    def const(value):
        if isinstance(value, nodes.Const) and isinstance(value.value, str):
            return value.value
        if isinstance(value, nodes.List) and value.items:
            return const(value.items[0])
        return None

    parent = parents[-1] if parents else None
    if isinstance(parent, (nodes.Getitem, nodes.Getattr)) and parent.node is node and len(parents) >= 2:
        host, up = parent, parents[-2]
        if isinstance(up, nodes.Getattr) and up.node is host:
            if up.attr == "get" and len(parents) >= 3 and isinstance(parents[-3], nodes.Call) \
                    and parents[-3].node is up and parents[-3].args:
                return const(parents[-3].args[0])
            return up.attr
        if isinstance(up, nodes.Getitem) and up.node is host:
            return const(up.arg)
        return None
    if isinstance(parent, (nodes.Filter, nodes.Call)):
        args = list(parent.args)
        at = next((i for i, a in enumerate(args) if a is node), None)
        if at is None or at + 1 >= len(args):
            return None
        if isinstance(parent, nodes.Filter) and parent.name == "extract" and at == 0:
            return const(args[1])
        if at >= 1 and isinstance(args[at - 1], nodes.Const) and args[at - 1].value == "extract":
            return const(args[at + 1])
    return None


def _scan_tasks(tasks: Any, where: str, scan: _Scan, *, handlers: bool = False,
                var_files: "_VarFiles | None" = None) -> None:
    """``var_files``: the files an ``include_vars`` of these tasks can load (see ``_VarFiles``); without it a
    templated ``include_vars`` sets names devbox cannot list."""
    for task in iter_tasks(tasks):
        action, args = _task_action(task)
        short = _short(action) if action else ""
        if handlers:
            for key in ("name", "listen"):
                values = task.get(key)
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, str):
                        scan.handlers.add(value)
        if "register" in task and isinstance(task["register"], str):
            scan.exports.add(task["register"])
            scan.assigns.add(task["register"])
        notify = task.get("notify")
        for value in notify if isinstance(notify, list) else [notify] if notify else []:
            if _templated(value) or not isinstance(value, str):
                scan.uncertain.append(f"templated notify {value!r} in {where}")
            else:
                scan.notifies.add(value)
        if short == "set_fact" and isinstance(args, Mapping):
            for key in args:
                if key == "cacheable":
                    continue
                if _templated(key):
                    scan.unknown_exports.append(f"set_fact with a templated name in {where}")
                scan.exports.add(str(key))
                scan.assigns.add(str(key))
        elif short == "include_vars":
            name = args.get("name") if isinstance(args, Mapping) else None
            if isinstance(name, str) and not _templated(name):
                scan.exports.add(name)
                scan.assigns.add(name)
            elif name is not None:
                scan.unknown_exports.append(f"include_vars with a templated name in {where}")
            else:
                keys, why = _include_vars_keys(task, args, var_files)
                if keys is None:
                    scan.unknown_exports.append(f"include_vars in {where} ({why})")
                else:
                    scan.exports.update(keys)
                    scan.assigns.update(keys)
        elif short in ("add_host", "group_by"):
            scan.unknown_exports.append(f"{short} in {where} changes the inventory of later plays")
        elif short in ("setup", "gather_facts"):
            reason = f"{short} in {where} sets facts"
            scan.unknown_exports.append(reason)
            scan.fact_exports.append(reason)
        elif short.endswith("_facts"):
            scan.unknown_exports.append(f"{short} in {where} sets facts")
        elif short == "meta" and isinstance(args, str) and args.startswith("end_"):
            scan.unknown_exports.append(f"meta: {args} in {where} can stop the rest of the run")
        elif short in ("include_role", "import_role"):
            name = args.get("name") if isinstance(args, Mapping) else None
            if not isinstance(name, str) or _templated(name):
                scan.uncertain.append(f"{short} with a templated role name in {where}")
            else:
                scan.roles_used.append(name)
        elif short in ("include_tasks", "import_tasks", "include", "include_playbook"):
            path = args if isinstance(args, str) else args.get("file", args.get("_raw_params")) \
                if isinstance(args, Mapping) else None
            if isinstance(path, str) and (path.startswith("/") or ".." in path or "playbook_dir" in path):
                scan.uncertain.append(f"{short} of {path!r} outside the role in {where}")


def _scan_text(path: Path, scan: _Scan, loader=None) -> None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    scan.mentions.update(_WORD.findall(text))
    if "hostvars" in text:
        data: Any = text
        if path.suffix in _VAR_EXTS[1:] and loader is not None and path.parent.name != "templates":
            try:
                data = loader.load_from_file(str(path), unsafe=True)  # YAML: conditions are bare expressions
            except Exception:  # noqa: BLE001 - read as text then
                data = text
        _hostvars_reads(data, scan, bare=data is not text)
    # `hostvars[h]['ansible_default_ipv4']`, `map('extract', hostvars, 'ansible_fqdn')`: another host's facts
    if _REMOTE_FACTS.search(text):
        scan.reads_remote_facts = True


def _top_keys(loader, path: Path) -> set[str]:
    try:
        data = loader.load_from_file(str(path), unsafe=True)  # read only: no defensive deep copy
    except Exception:  # a broken vars file fails the real run too; the digest already covers it
        return set()
    return {str(k) for k in data} if isinstance(data, Mapping) else set()


def _scan_role(loader, role_path: Path, role_name: str) -> _Scan:
    scan = _Scan()
    basedir = Path(loader.get_basedir())
    for path, handlers in role_task_files(role_path, _files_under):
        try:
            data = loader.load_from_file(str(path), unsafe=True)  # read only: no defensive deep copy
        except Exception as exc:
            scan.uncertain.append(f"cannot parse {path.name} of role {role_name}: {exc}")
            continue
        var_files = _VarFiles(loader, role_path, path.parent, basedir)
        _scan_tasks(data, f"role {role_name}", scan, handlers=handlers, var_files=var_files)
    for sub in ("defaults", "vars"):
        for path in _files_under(role_path / sub) if (role_path / sub).is_dir() else ():
            if path.suffix in _VAR_EXTS:
                scan.scoped_exports.update(_top_keys(loader, path))
    for sub in _TEXT_DIRS:
        for path in _files_under(role_path / sub) if (role_path / sub).is_dir() else ():
            _scan_text(path, scan, loader)
    return scan


# ---------------------------------------------------------------------------------------------------- project

def _site_loader(site: SitePlaybook):
    """Ansible's DataLoader, handed the playbook files the shared reader already parsed instead of parsing them
    again: ``Playbook.load`` (and ``import_playbook``) then build plays from the very data the stamp and the parity
    scan read. Any other file (roles, vars files, a playbook imported through a template) is Ansible's own read."""
    import copy

    from ansible.parsing.dataloader import DataLoader

    class SiteLoader(DataLoader):
        def load_from_file(self, file_name, cache="all", unsafe=False, json_only=False, trusted_as_template=False):
            if trusted_as_template and not json_only:  # how Ansible reads a playbook (as the reader did)
                known = site.file(self.path_dwim(file_name))
                if known is not None:
                    return known.data if unsafe else copy.deepcopy(known.data)
            return super().load_from_file(file_name, cache=cache, unsafe=unsafe, json_only=json_only,
                                          trusted_as_template=trusted_as_template)

    return SiteLoader()


def _use_playbook_collections(folder: Path) -> None:
    """As ansible-playbook does: collections in a ``collections/`` folder next to the playbook resolve first.
    Ansible's collection loader keeps imported collection packages in ``sys.modules``, with the folder they were
    found in; when the playbook folder changes within one process (several projects scanned), those of the
    previous folder are dropped so that each collection resolves again."""
    import sys

    from ansible.utils.collection_loader import AnsibleCollectionConfig

    wanted = [str(folder)]
    if AnsibleCollectionConfig.playbook_paths == [os.path.join(str(folder), "collections")]:
        return
    for name in [n for n in sys.modules if n.startswith("ansible_collections.")]:
        if not name.startswith("ansible_collections.ansible"):
            del sys.modules[name]
    AnsibleCollectionConfig.playbook_paths = wanted


class _Scanner:
    def __init__(self, playbook: Path, inventory_dir: Path, project_dir: Path, site: SitePlaybook):
        from ansible.inventory.manager import InventoryManager
        from ansible.plugins.loader import init_plugin_loader
        from ansible.utils.collection_loader import AnsibleCollectionConfig
        from ansible.vars.manager import VariableManager

        global _PLUGINS_READY
        if not _PLUGINS_READY and AnsibleCollectionConfig.collection_finder is None:   # not set up by the inventory reader
            init_plugin_loader()  # the collection loader: needed to resolve module names like ansible.builtin.copy
            _PLUGINS_READY = True
        _use_playbook_collections(playbook.parent)
        self.playbook = playbook
        self.inventory_dir = inventory_dir
        self.project_dir = project_dir
        self.loader = _site_loader(site)
        self.loader.set_basedir(str(playbook.parent))
        try:
            self.inventory = InventoryManager(loader=self.loader, sources=[str(inventory_dir)])
        except Exception as exc:
            raise ChangesError(f"cannot read the development inventory {inventory_dir}: {exc}",
                               "run `devbox up` (or `devbox init`) to generate it again") from exc
        self.variable_manager = VariableManager(loader=self.loader, inventory=self.inventory)
        self.role_files: dict[str, dict[str, str]] = {}   # role path -> {relpath: digest}
        self.role_scans: dict[str, _Scan] = {}
        self.extra_sources: set[str] = set()   # vars files and imported playbooks' folders read on the way

    # -- roles
    def role_digests(self, path: Path) -> dict[str, str]:
        key = str(path)
        if key not in self.role_files:
            self.role_files[key] = {str(p.relative_to(path)): _sha(p.read_bytes())
                                    for p in _files_under(path, _ROLE_SKIP) if not p.name.startswith("README")}
        return self.role_files[key]

    def role_scan(self, path: Path, name: str) -> _Scan:
        if str(path) not in self.role_scans:
            self.role_scans[str(path)] = _scan_role(self.loader, path, name)
        return self.role_scans[str(path)]

    def load_role(self, name: str, play, basedir: Path | None, collections: list[str] | None = None):
        """``collections``: the search list of the role whose tasks name this one (a role of a collection
        finds its siblings by short name), as Ansible resolves an include_role/import_role in that role."""
        from ansible.playbook.role import Role
        from ansible.playbook.role.include import RoleInclude

        ri = RoleInclude.load(name, play=play, current_role_path=str(basedir) if basedir else None,
                              variable_manager=self.variable_manager, loader=self.loader,
                              collection_list=collections or None)
        return Role.load(ri, play=play)

    def closure(self, roles: list, play) -> tuple[dict[str, Any], list[str]]:
        """Roles reached from ``roles`` through meta dependencies and static include_role/import_role."""
        seen: dict[str, Any] = {}
        problems: list[str] = []
        todo = list(roles)
        while todo:
            role = todo.pop()
            path = role._role_path
            if path in seen:
                continue
            seen[path] = role
            todo.extend(role.get_all_dependencies())
            for used in self.role_scan(Path(path), role.get_name()).roles_used:
                try:
                    todo.append(self.load_role(used, play, Path(path), list(role.collections)))
                except Exception as exc:
                    problems.append(f"role {role.get_name()} includes role {used!r}, which devbox cannot load: {exc}")
        return seen, problems

    def closure_unit_parts(self, roles: list, play) -> tuple[dict[str, str], _Scan, set[str]]:
        members, problems = self.closure(roles, play)
        inputs: dict[str, str] = {}
        merged = _Scan(uncertain=list(problems))
        names: set[str] = set()
        for path, role in members.items():
            name = role.get_name()
            names.add(name)
            names.add(role.get_name(include_role_fqcn=False))
            for file, digest in self.role_digests(Path(path)).items():
                inputs[f"role {name}: {file}"] = digest
            scan = self.role_scan(Path(path), name)
            for attr in ("exports", "scoped_exports", "assigns", "mentions", "notifies", "handlers"):
                getattr(merged, attr).update(getattr(scan, attr))
            merged.unknown_exports.extend(scan.unknown_exports)
            merged.fact_exports.extend(scan.fact_exports)
            merged.hostvars_reads.update(scan.hostvars_reads)
            merged.hostvars_any |= scan.hostvars_any
            merged.reads_remote_facts |= scan.reads_remote_facts
            merged.uncertain.extend(scan.uncertain)
        return inputs, merged, names

    # -- variables
    def vm_inputs(self, vm: str, extra_vars: Mapping, extra_files: Iterable[Path]) -> dict[str, str]:
        host = self.inventory.get_host(vm)
        inputs: dict[str, str] = {}
        host_vars = {k: v for k, v in host.vars.items() if k not in CONNECTION_VARS}
        inputs[f"host vars of {vm} in the inventory"] = _digest_data(host_vars)
        for group in sorted(host.get_groups(), key=lambda g: g.name):
            if group.vars:
                inputs[f"vars of group {group.name} in the inventory"] = _digest_data(dict(group.vars))
            for base, label in ((self.inventory_dir, "inventory"), (self.playbook.parent, "playbook")):
                for path in _var_files(base / "group_vars", group.name):
                    inputs[f"{label} {path.relative_to(base)}"] = _sha(path.read_bytes())
        for base, label in ((self.inventory_dir, "inventory"), (self.playbook.parent, "playbook")):
            for path in _var_files(base / "host_vars", vm):
                inputs[f"{label} {path.relative_to(base)}"] = _sha(path.read_bytes())
        if extra_vars:
            inputs["devbox extra vars"] = _sha(json.dumps(extra_vars, sort_keys=True, default=_json_default).encode())
        for path in extra_files:
            path = Path(path)
            inputs[f"devbox var file {path.name}"] = _sha(path.read_bytes()) if path.is_file() else "missing"
        return inputs

    def global_inputs(self) -> dict[str, str]:
        import ansible

        inputs = {"ansible-core version": _sha(ansible.__version__.encode())}
        for base, label in ((self.project_dir, "project"), (self.playbook.parent, "playbook")):
            for name in _GLOBAL_FILES:
                path = base / name
                if path.is_file():
                    inputs[f"{label} {name}"] = _sha(path.read_bytes())
        for name in _PLAYBOOK_GLOBAL_DIRS:
            folder = self.playbook.parent / name
            if folder.is_dir():
                for path in _files_under(folder):
                    inputs[f"playbook {path.relative_to(self.playbook.parent)}"] = _sha(path.read_bytes())
        # collections next to the playbook: their plugins and metadata serve every role (their roles are digested
        # as roles, with the units that use them)
        for coll in sorted((self.playbook.parent / "collections" / "ansible_collections").glob("*/*")):
            for path in _files_under(coll, frozenset({"roles", "__pycache__"})):
                inputs[f"playbook {path.relative_to(self.playbook.parent)}"] = _sha(path.read_bytes())
        config = os.environ.get("ANSIBLE_CONFIG")
        if config and Path(config).is_file():
            inputs["ANSIBLE_CONFIG file"] = _sha(Path(config).read_bytes())
        return inputs

    def resolve_hosts(self, pattern: Any) -> tuple[tuple[str, ...], str | None]:
        flat = pattern if isinstance(pattern, list) else [pattern]
        if any(_templated(p) for p in flat):
            return tuple(h.name for h in self.inventory.get_hosts("all")), f"hosts {pattern!r} is templated"
        return tuple(h.name for h in self.inventory.get_hosts(pattern)), None


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _unique_key(wanted: str, taken: set[str]) -> str:
    key, n = wanted, 1
    while key in taken:
        n += 1
        key = f"{wanted}#{n}"
    taken.add(key)
    return key


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        return str(entry.get("role", entry.get("name", "?")))
    return "?"


def scan_project(playbook: str | os.PathLike, inventory_dir: str | os.PathLike, *,
                 project_dir: str | os.PathLike | None = None, extra_vars: Mapping | None = None,
                 extra_files: Iterable[str | os.PathLike] = (), site: SitePlaybook | None = None) -> ProjectDigests:
    """Digest everything a run of ``playbook`` on the VMs of ``inventory_dir`` depends on, per VM and per unit.

    ``site``: the playbook as already read this run (``read_site(playbook)``); read here if not given. The
    digests keep it (``ProjectDigests.site``) for the rest of the run."""
    playbook = Path(playbook).resolve()
    inventory_dir = Path(inventory_dir).resolve()
    project_dir = Path(project_dir).resolve() if project_dir else playbook.parent
    if not playbook.is_file():
        raise ChangesError(f"playbook {playbook} does not exist", "check `playbook:` in devbox.yml")
    if site is None:
        try:
            site = read_site(playbook)
        except PlaybookReadError as exc:
            raise ChangesError(f"cannot parse playbook {playbook}: {exc.reason}",
                               "fix the playbook (`ansible-playbook --syntax-check` shows the same error)") from exc
    scanner = _Scanner(playbook, inventory_dir, project_dir, site)

    from ansible.playbook import Playbook
    from ansible.playbook.play import Play

    try:
        loaded = Playbook.load(str(playbook), variable_manager=scanner.variable_manager, loader=scanner.loader)
    except Exception as exc:
        raise ChangesError(f"cannot parse playbook {playbook}: {exc}",
                           "fix the playbook (`ansible-playbook --syntax-check` shows the same error)") from exc

    vms = tuple(h.name for h in scanner.inventory.get_hosts("all"))
    global_inputs = scanner.global_inputs()
    vm_inputs = {vm: {**global_inputs, **scanner.vm_inputs(vm, extra_vars or {}, [Path(p) for p in extra_files])}
                 for vm in vms}
    vm_uncertain: dict[str, list[str]] = {vm: [] for vm in vms}
    blockers: list[str] = []
    plays: list[PlayInfo] = []
    units: list[Unit] = []
    play_keys: set[str] = set()

    for index, play in enumerate(p for p in loaded.get_plays() if isinstance(p, Play)):
        data = dict(play._ds) if isinstance(play._ds, Mapping) else {}
        basedir = Path(play._loader.get_basedir() if play._loader else playbook.parent)
        scanner.extra_sources.add(str(basedir.resolve()))
        if basedir.resolve() != playbook.parent:
            blockers.append(f"play {play.get_name()!r} is imported from {basedir}, outside the playbook's folder")
        key = _unique_key(str(play.get_name() or data.get("hosts") or f"play {index + 1}"), play_keys)
        hosts = data.get("hosts", play.hosts)
        targets, why = scanner.resolve_hosts(hosts)
        if why:
            for vm in targets:
                vm_uncertain[vm].append(f"play {key}: {why}")

        # The play's own content: everything but the roles list, plus its vars files and the roles its tasks use.
        own = {k: v for k, v in data.items() if k != "roles"}
        own_inputs = {f"play {key}": _digest_data(own)}
        own_scan = _Scan()
        play_var_files = _VarFiles(scanner.loader, None, None, basedir)
        for path in play.vars_files or []:
            for item in path if isinstance(path, list) else [path]:
                if _templated(item):
                    for vm in targets:
                        vm_uncertain[vm].append(f"play {key}: vars_files entry {item!r} is templated")
                    continue
                full = Path(scanner.loader.path_dwim(item))
                scanner.extra_sources.add(str(full))
                own_inputs[f"play {key}: vars file {item}"] = _sha(full.read_bytes()) if full.is_file() else "missing"
                own_scan.scoped_exports.update(_top_keys(scanner.loader, full) if full.is_file() else set())
        for section in ("pre_tasks", "tasks", "post_tasks"):
            _scan_tasks(data.get(section), f"play {key} {section}", own_scan, var_files=play_var_files)
        _scan_tasks(data.get("handlers"), f"play {key} handlers", own_scan, handlers=True, var_files=play_var_files)
        own_text = json.dumps(own, default=_json_default)
        own_scan.mentions.update(_WORD.findall(own_text))
        own_scan.reads_remote_facts = bool(_REMOTE_FACTS.search(own_text))
        _hostvars_reads(own, own_scan)
        own_roles = []
        for name in own_scan.roles_used:
            try:
                own_roles.append(scanner.load_role(name, play, None))
            except Exception as exc:
                own_scan.uncertain.append(f"play {key} includes role {name!r}, which devbox cannot load: {exc}")
        role_inputs, role_scan, role_names = scanner.closure_unit_parts(own_roles, play)
        own_inputs.update(role_inputs)
        own_unit_scan = _merge(own_scan, role_scan)

        entries = list(data.get("roles") or [])
        loaded_roles = list(play.get_roles())
        role_keys: list[str] = []
        role_entries: dict[str, Any] = {}
        taken: set[str] = set()
        role_units: list[tuple[str, dict[str, str], _Scan, set[str]]] = []
        for position, entry in enumerate(entries):
            rkey = _unique_key(_entry_name(entry), taken)
            role_keys.append(rkey)
            role_entries[rkey] = entry
            role = loaded_roles[position] if position < len(loaded_roles) else None
            inputs = {f"play {key}": own_inputs[f"play {key}"],
                      f"play {key}: roles entry {rkey}": _digest_data(entry)}
            inputs.update({k: v for k, v in own_inputs.items() if k.startswith(f"play {key}: vars file")})
            if role is None:
                scan = _Scan(uncertain=[f"devbox cannot load role entry {rkey!r} of play {key}"])
                names: set[str] = set()
            else:
                closure_inputs, scan, names = scanner.closure_unit_parts([role], play)
                inputs.update(closure_inputs)
            if isinstance(entry, Mapping) and isinstance(entry.get("vars"), Mapping):
                scan.scoped_exports.update(str(k) for k in entry["vars"])
            # the entry's and the play's vars are templated where the role reads them: their reads are the role's
            for lazy in (entry, data.get("vars")):
                if isinstance(lazy, (Mapping, list)):
                    scan.mentions.update(_WORD.findall(json.dumps(lazy, default=_json_default)))
                    _hostvars_reads(lazy, scan)
            role_units.append((rkey, inputs, scan, names))

        # Handlers notified across roles: the role (or the play) defining them must be in the generated play.
        defined = {rkey: scan.handlers for rkey, _, scan, _ in role_units}
        first = len(units)
        units.append(_unit(key, None, len(units), own_inputs, own_unit_scan, role_names, defined, own_scan))
        for rkey, inputs, scan, names in role_units:
            units.append(_unit(key, rkey, len(units), inputs, scan, names, defined, own_scan))
        plays.append(PlayInfo(key=key, index=index, hosts=hosts, vms=targets, role_keys=tuple(role_keys),
                              role_entries=role_entries, data=data,
                              gather_facts=bool(play.gather_facts) if play.gather_facts is not None else True))
        for unit in units[first:]:
            if unit.uncertain:
                for vm in targets:
                    vm_uncertain[vm].extend(unit.uncertain)

    units = _cross_host_inputs(units, scanner, vm_inputs, global_inputs)
    sources = {str(playbook.parent), str(inventory_dir), *scanner.role_files, *scanner.extra_sources,
               *(str(project_dir / name) for name in _GLOBAL_FILES), *(str(Path(p)) for p in extra_files)}
    if os.environ.get("ANSIBLE_CONFIG"):
        sources.add(os.environ["ANSIBLE_CONFIG"])
    return ProjectDigests(playbook=playbook, vms=vms, plays=tuple(plays), units=tuple(units), vm_inputs=vm_inputs,
                          vm_uncertain={vm: tuple(dict.fromkeys(r)) for vm, r in vm_uncertain.items() if r},
                          subset_blockers=tuple(blockers), sources=tuple(sorted(sources)), site=site)


def _cross_host_inputs(units: list[Unit], scanner: "_Scanner", vm_inputs: Mapping[str, Mapping[str, str]],
                       global_inputs: Mapping[str, str]) -> list[Unit]:
    """Units reading other hosts' variables (``hostvars``) or the inventory's shape (``groups``, the play's host
    list) depend on those too: a load balancer's backend list changes when a web VM's address does."""
    from dataclasses import replace

    shape = {g.name: sorted(h.name for h in g.get_hosts()) for g in scanner.inventory.groups.values()}
    shape_digest = _sha(json.dumps(shape, sort_keys=True).encode())
    host_vars = {vm: _sha(json.dumps({k: v for k, v in inputs.items() if k not in global_inputs},
                                     sort_keys=True).encode())
                 for vm, inputs in vm_inputs.items()}
    out = []
    for unit in units:
        extra: dict[str, str] = {}
        if unit.mentions & ({"groups", "hostvars"} | PLAY_HOSTS_MAGIC):
            extra["inventory groups and their hosts"] = shape_digest
        if "hostvars" in unit.mentions:
            extra.update({f"variables of {vm} (read through hostvars)": d for vm, d in host_vars.items()})
        out.append(replace(unit, inputs={**unit.inputs, **extra}) if extra else unit)
    return out


def _merge(a: _Scan, b: _Scan) -> _Scan:
    out = _Scan()
    for attr in ("exports", "scoped_exports", "assigns", "mentions", "notifies", "handlers"):
        getattr(out, attr).update(getattr(a, attr), getattr(b, attr))
    out.unknown_exports = a.unknown_exports + b.unknown_exports
    out.fact_exports = a.fact_exports + b.fact_exports
    out.hostvars_reads = a.hostvars_reads | b.hostvars_reads
    out.hostvars_any = a.hostvars_any or b.hostvars_any
    out.reads_remote_facts = a.reads_remote_facts or b.reads_remote_facts
    out.uncertain = a.uncertain + b.uncertain
    out.roles_used = a.roles_used + b.roles_used
    return out


def _unit(play: str, role: str | None, order: int, inputs: Mapping[str, str], scan: _Scan, names: set[str],
          handlers_by_role: Mapping[str, set[str]], play_scan: _Scan) -> Unit:
    own_handlers = scan.handlers | play_scan.handlers
    needed: set[str] = set()
    uncertain = list(scan.uncertain)
    for name in scan.notifies:
        if name in own_handlers:
            continue
        owners = {rkey for rkey, defined in handlers_by_role.items() if rkey != role and _defines(defined, name)}
        if owners:
            needed |= owners
        elif not any(_defines(d, name) for d in handlers_by_role.values()):
            uncertain.append(f"{'role ' + role if role else 'play ' + play} notifies {name!r}, "
                             f"which no role of play {play} defines")
    return Unit(key=play if role is None else f"{play}/{role}", play=play, role=role, order=order,
                inputs=dict(inputs), role_names=frozenset(names), exports=frozenset(scan.exports),
                scoped_exports=frozenset(scan.scoped_exports), unknown_exports=tuple(dict.fromkeys(scan.unknown_exports)),
                assigns=frozenset(scan.assigns), mentions=frozenset(scan.mentions),
                handler_units=frozenset(f"{play}/{r}" for r in needed), notifies=bool(scan.notifies),
                reads_remote_facts=scan.reads_remote_facts, fact_exports=tuple(dict.fromkeys(scan.fact_exports)),
                hostvars_reads=None if scan.hostvars_any else frozenset(scan.hostvars_reads),
                uncertain=tuple(dict.fromkeys(uncertain)))


def _defines(handlers: set[str], notify: str) -> bool:
    # A handler can be notified by its name, its listen topic, or "role : name".
    return notify in handlers or notify.split(" : ", 1)[-1] in handlers
