"""The production inventory as devbox sees it: groups, hosts and plain inventory-level variables.

It is read with Ansible's own loader (``InventoryManager`` with Ansible's ``ini`` and ``yaml`` plugins), so
every format detail (ranges, ``:children``, ``:vars``, directories) means exactly what it means to Ansible.
Three things differ from Ansible on purpose:

* devbox fails closed. Ansible warns on a source it cannot parse and carries on with an empty inventory;
  here every failure is an ``InventoryError`` naming the file, the problem and the line where known.
* Nothing runs. Executable inventory scripts and inventory plugin configs (``plugin: amazon.aws.aws_ec2``)
  are refused before any plugin looks at them, unless the user opted in (``allow_scripts``).
* Nothing is decrypted. Vars plugins (``group_vars``/``host_vars``) are not run at all (devbox reads
  ``group_vars`` itself, see ``devinventory``), and inline ``!vault`` values become ``VaultValue``.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from provisioner.errors import InventoryError
from provisioner.safeyaml import MAX_NODES

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# A file starting with `plugin:` under one of these names is an inventory plugin config (`.config`: the
# `constructed` plugin's own extension; YAML plugins accept the YAML ones).
PLUGIN_CONFIG_EXTENSIONS = YAML_EXTENSIONS + (".config", "")
SCRIPT_EXTENSIONS = (".py", ".sh", ".rb", ".pl", ".js", ".php", ".exe")
# Variables Ansible's loader adds to every host on its own; they describe the source, not the host.
LOADER_VARS = frozenset({"inventory_file", "inventory_dir"})
_PLUGIN_CONFIG = re.compile(r"^plugin\s*:", re.MULTILINE)
_PYTHON_INTERNAL = re.compile(r"^(not enough values to unpack|too many values to unpack|list index out of range|"
                              r"'\w+' object (has no attribute|is not))")
_YAML_LOOKING = re.compile(r"^(---|[\w.-]+:\s*(#.*)?$)")
OPT_IN_HINT = ("devbox never runs inventory code by default; if you trust it, set `allow_inventory_scripts: true` "
               "in devbox.yml or pass --allow-inventory-scripts")


@dataclass(frozen=True)
class VaultValue:
    """An inline ``!vault`` value: devbox knows it exists but never decrypts it."""

    def __repr__(self) -> str:
        return "<vault>"


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]      # groups that list the host directly, without all/ungrouped
    all_groups: frozenset[str]   # the same plus every ancestor group, without all/ungrouped
    vars: Mapping[str, Any]      # host-level inventory variables, plain Python values


@dataclass(frozen=True)
class Group:
    name: str
    children: tuple[str, ...]
    hosts: tuple[str, ...]       # hosts listed directly in this group
    vars: Mapping[str, Any]      # group-level inventory variables (``[group:vars]``), plain Python values


@dataclass(frozen=True)
class Inventory:
    source: Path
    hosts: Mapping[str, Host]    # in inventory order
    groups: Mapping[str, Group]  # in inventory order, including ``all`` and ``ungrouped``
    warnings: tuple[str, ...] = ()   # what Ansible's loader warned about while reading

    @property
    def vars_dir(self) -> Path:
        """Where Ansible looks for ``group_vars``/``host_vars`` of this source: beside a file, inside a directory."""
        return self.source if self.source.is_dir() else self.source.parent


def load_inventory(path: str | os.PathLike, *, allow_scripts: bool = False) -> Inventory:
    """Read ``path`` (INI or YAML file, or an inventory directory) with Ansible's loader, failing closed."""
    source = Path(path).absolute()
    if file_kind(source) is None:
        raise InventoryError(str(path), "does not exist",
                             hint="pass --inventory PATH, or set `inventory:` in devbox.yml")
    from ansible.parsing.dataloader import DataLoader  # imported late: ansible's import costs ~0.3 s

    manager = _fail_closed_manager_class()(DataLoader(), str(source), allow_scripts=allow_scripts)
    with _ansible_warnings() as warnings:
        manager.parse_sources()
    _check_host_names(source, manager._inventory)
    inventory = _to_model(source, manager._inventory, warnings)
    if not inventory.hosts:
        raise InventoryError(str(path), "defines no hosts",
                             hint="point --inventory at the production inventory (a file or directory with hosts)")
    return inventory


def file_kind(path: str | os.PathLike) -> str | None:
    """``file``, ``dir`` or None (nothing there); anything else devbox could hang on or misread is an error.

    A FIFO, socket or device would block or never end when read (Ansible's loader blocks on a FIFO in an
    inventory folder); a broken symlink or a loop is a mistake worth naming rather than skipping.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InventoryError(str(path), f"is a broken symlink (to {os.readlink(path)})",
                                 hint="remove the link or restore its target") from None
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InventoryError(str(path), "is a symlink loop", hint="remove the link") from None
        raise InventoryError(str(path), f"cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    raise InventoryError(str(path), "is not a regular file (a FIFO, socket or device); devbox reads only regular "
                         "files and folders in an inventory", hint="remove it from the inventory folder")


def read_bytes(path: str | os.PathLike, limit: int = -1) -> bytes:
    """A file of the inventory, or an ``InventoryError`` naming it (permissions, a folder, I/O errors)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError as exc:
        raise InventoryError(str(path), f"cannot be read: {exc.strerror}") from None


def classify_source(path: Path) -> str:
    """``script``, ``plugin``, ``toml``, ``binary``, ``vault`` or ``static``, from the file alone, running nothing."""
    head = read_bytes(path, 65536)
    if head.startswith(b"#!") or path.suffix.lower() in SCRIPT_EXTENSIONS:
        return "script"
    if b"\x00" in head:
        return "binary"
    if head.lstrip().startswith(b"$ANSIBLE_VAULT"):
        return "vault"
    if path.suffix.lower() == ".toml":
        return "toml"
    if path.suffix.lower() in PLUGIN_CONFIG_EXTENSIONS and _PLUGIN_CONFIG.search(head.decode("utf-8", "replace")):
        return "plugin"
    return "static"


def _fail_closed_manager_class():
    from ansible.inventory.manager import InventoryManager
    from ansible.plugins.loader import inventory_loader

    class FailClosedInventoryManager(InventoryManager):
        """Ansible's manager with only the static ``yaml`` and ``ini`` plugins, raising on the first failure."""

        def __init__(self, loader, source: str, *, allow_scripts: bool):
            self._devbox_allow_scripts = allow_scripts
            super().__init__(loader, sources=[source], parse=False)

        def parse_sources(self, cache=False):
            # Unlike Ansible's, no vars plugins run here: they would read (and try to decrypt) group_vars.
            for source in self._sources:
                self.parse_source(source, cache=cache)
            self._inventory.reconcile_inventory()

        def parse_source(self, source, cache=False):
            if file_kind(source) == "dir":
                return super().parse_source(source, cache=cache)  # walks the entries back through this method
            path = Path(source)
            kind = classify_source(path)
            if kind in ("script", "plugin"):
                what = "an executable inventory script" if kind == "script" else "an inventory plugin config"
                if not self._devbox_allow_scripts:
                    raise InventoryError(source, f"is {what}; devbox refuses to run it", hint=OPT_IN_HINT)
                if kind == "plugin":
                    self._inventory.current_source = source
                    _parse_plugin_config(self._inventory, self._loader, path)
                    self._inventory.processed_sources.append(source)
                    return True
                if not super().parse_source(source, cache=cache):
                    raise InventoryError(source, f"Ansible could not use {what} (see Ansible's warnings above)")
                return True
            if kind == "binary":
                raise InventoryError(source, "is a binary file, not an INI or YAML inventory",
                                     hint="point --inventory at the inventory file or directory")
            if kind == "vault":
                raise InventoryError(source, "is vault-encrypted as a whole; devbox reads inventories without "
                                     "decrypting anything", hint="keep hosts and groups in plain text and move "
                                     "secrets to vault-encrypted group_vars files")
            if kind == "toml":
                raise InventoryError(source, "TOML inventories are not supported",
                                     hint="convert it to YAML (ansible-inventory -i FILE --list -y)")
            self._inventory.current_source = source
            _parse_static(self._inventory, self._loader, path)
            self._inventory.processed_sources.append(source)
            return True

    def _parse_static(data, loader, path: Path) -> None:
        text = read_bytes(path).decode("utf-8", "replace")
        looks_yaml = _looks_like_yaml(text)
        failures: list[tuple[str, int | None]] = []
        for name in ("yaml", "ini"):
            plugin = _line_tracking(inventory_loader.get(name))
            try:
                wants = plugin.verify_file(str(path))
            except Exception:
                wants = False
            if not wants or (name == "ini" and failures and path.suffix.lower() in YAML_EXTENSIONS):
                continue
            try:
                plugin.parse(data, loader, str(path), cache=False)
                return
            except Exception as exc:  # Ansible's plugins raise assorted types; all mean "not parseable"
                failures.append((_cause_message(exc), getattr(plugin, "devbox_failed_line", None) or _error_line(exc)))
        if not failures:
            raise InventoryError(str(path), "is not an INI or YAML inventory")
        # Report the failure of the format the file most likely is: YAML errors for YAML-looking files.
        message, line = failures[0] if (looks_yaml and len(failures) > 1) else failures[-1]
        hint = "fix the file so `ansible-inventory -i FILE --graph` accepts it"
        if looks_yaml and path.suffix.lower() not in YAML_EXTENSIONS:
            hint = "this looks like YAML fed to the INI parser: give the file a .yml extension"
        raise InventoryError(str(path), message, line=line, hint=hint)

    return FailClosedInventoryManager


def plugin_name(path: Path) -> str:
    """The ``plugin:`` a plugin config names (read as plain YAML, nothing run)."""
    from provisioner.safeyaml import load

    try:
        data = load(read_bytes(path).decode("utf-8", "replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InventoryError(str(path), f"inventory plugin config is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                             line=mark.line + 1 if mark is not None else None) from None
    name = data.get("plugin") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise InventoryError(str(path), "inventory plugin config has no `plugin:` name",
                             hint="start the file with `plugin: NAMESPACE.COLLECTION.PLUGIN`")
    return name.strip()


def _collection_loader_ready() -> None:
    """Ansible resolves fully qualified plugin names (``ansible.builtin.constructed``, ``amazon.aws.aws_ec2``) through
    its collection loader, which only its own CLI installs; install it once, as ``ansible-inventory`` does."""
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if AnsibleCollectionConfig.collection_finder is None:
        from ansible.plugins.loader import init_plugin_loader
        init_plugin_loader()


def _parse_plugin_config(data, loader, path: Path) -> None:
    """Run the inventory plugin a config names (the user opted in), as Ansible's ``auto`` plugin would, with
    errors that name the plugin and, for a plugin of a collection that is not installed, the collection."""
    from ansible.plugins.loader import inventory_loader

    name = plugin_name(path)
    _collection_loader_ready()
    from ansible.utils.display import Display

    display = Display()   # a plugin that cannot be loaded is only a warning of Ansible's ("Error loading plugin")
    display.error_as_warning = lambda *args, **kwargs: None   # said below instead, with the next step
    try:
        plugin = inventory_loader.get(name)
    except Exception:
        plugin = None
    finally:
        del display.error_as_warning
    if plugin is None:
        parts = name.split(".")
        if len(parts) >= 3:
            collection = ".".join(parts[:2])
            raise InventoryError(str(path), f"names the inventory plugin {name} of the collection {collection}, "
                                 "which is not installed", hint=f"install it: ansible-galaxy collection install "
                                 f"{collection} (then run the command again)")
        raise InventoryError(str(path), f"names an inventory plugin Ansible does not know ({name})",
                             hint="name the plugin in full (NAMESPACE.COLLECTION.PLUGIN, e.g. ansible.builtin.constructed) "
                                  "and install its collection")
    if not plugin.verify_file(str(path)):
        raise InventoryError(str(path), f"is not accepted by the inventory plugin {name} (it checks the file name: "
                             "most plugins want a name ending as their documentation says, e.g. aws_ec2.yml)",
                             hint=f"rename the file as `ansible-doc -t inventory {name}` says")
    target = data
    try:
        from ansible._internal._datatag._tags import Origin
        from ansible.inventory.manager import _InventoryDataWrapper
        target = _InventoryDataWrapper(data, target_plugin=plugin,
                                       origin=Origin(description=f"<inventory plugin {name!r} with source {str(path)!r}>"))
    except ImportError:   # an ansible-core before 2.19: plugins write into the inventory itself
        pass
    try:
        plugin.parse(target, loader, str(path), cache=False)
    except Exception as exc:   # plugins raise assorted types
        raise InventoryError(str(path), f"the inventory plugin {name} failed: {_cause_message(exc)}",
                             hint=f"check the config with `ansible-inventory -i {path} --graph`") from None


def _line_tracking(plugin):
    """Remember the line the ``ini`` plugin was on when it failed (Ansible clears it before re-raising)."""
    if hasattr(plugin, "_parse") and hasattr(plugin, "_origin"):
        original = plugin._parse

        def _parse(lines):
            try:
                return original(lines)
            except Exception:
                origin = getattr(plugin, "_origin", None)
                plugin.devbox_failed_line = getattr(origin, "line_num", None) or None
                raise

        plugin._parse = _parse
    return plugin


def _cause_message(exc: BaseException) -> str:
    """The innermost useful message: Ansible wraps the real problem in 'Failed to parse inventory'."""
    messages = []
    seen = exc
    while seen is not None and len(messages) < 5:
        messages.append(str(getattr(seen, "message", None) or seen).strip())
        seen = seen.__cause__
    useful = [m for m in messages if m and not m.startswith("Failed to parse inventory")]
    message = (useful[-1] if useful else messages[0]).splitlines()[0]
    if _PYTHON_INTERNAL.match(message):   # a crash inside the parser, not a message meant for people
        message = "cannot parse this line"
    message = message.encode("ascii", "backslashreplace").decode()
    return message[:300]


def _error_line(exc: BaseException) -> int | None:
    """The line Ansible's YAML loader recorded on an error somewhere in the exception chain."""
    seen = exc
    for _ in range(6):
        if seen is None:
            return None
        line = getattr(getattr(seen, "obj", None), "line_num", None)
        if isinstance(line, int) and line > 0:
            return line
        seen = seen.__cause__ or seen.__context__
    return None


def _looks_like_yaml(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            return bool(_YAML_LOOKING.match(line))
    return False


@contextmanager
def _ansible_warnings():
    """Collect what Ansible's loader would print as warnings, so devbox reports them in its own output."""
    from ansible.utils.display import Display

    display = Display()   # a singleton: the plugins' module-level `display` is this object
    collected: list[str] = []
    display.warning = lambda msg, *args, **kwargs: collected.append(" ".join(str(msg).split()))
    try:
        yield collected
    finally:
        del display.warning


# What Ansible accepts for a real host: a DNS-style name (letters, digits, `-`, `.`, `_`; ranges are already
# expanded) or an IPv4/IPv6 literal. Anything else (newlines, spaces, `$(`, a leading `-`, control characters)
# would reach the Vagrantfile, the dev inventory or a command line as more than a name.
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")


def valid_host_name(name: str) -> bool:
    if _HOST_NAME.match(name) and len(name) <= 253:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _check_host_names(source: Path, data) -> None:
    for host in data.hosts.values():
        if not valid_host_name(str(host.name)):
            path, line = _origin(host.name)
            raise InventoryError(path or str(source), f"host name {_shown(str(host.name))} is not a valid host name",
                                 line=line, hint="host names may hold letters, digits, `-`, `.` and `_` (not first "
                                 "`-`), or be an IPv4/IPv6 address")


def _origin(value) -> tuple[str | None, int | None]:
    """The file and line Ansible 2.19+ tagged a value with while loading it (None, None when it did not)."""
    try:
        from ansible._internal._datatag._tags import Origin
        tag = Origin.get_tag(value)
    except Exception:   # older ansible-core, or a value without a tag
        return None, None
    if tag is None:
        return None, None
    return getattr(tag, "path", None), getattr(tag, "line_num", None)


def _shown(text: str, limit: int = 80) -> str:
    """A name quoted for a message, control characters made visible (never a raw newline on the terminal)."""
    shown = text.encode("unicode_escape").decode("ascii")
    return "'" + shown[:limit] + ("..." if len(shown) > limit else "") + "'"


def _to_model(source: Path, data, warnings: list[str]) -> Inventory:
    # Ansible 2.19 tags names and values with their origin (str subclasses); devbox keeps plain values only.
    groups: dict[str, Group] = {}
    direct: dict[str, list[str]] = {}
    for group in data.groups.values():
        name = str(group.name)
        hosts = tuple(str(h.name) for h in group.hosts)
        _check_expanded_size(source, group.vars, group.name)
        groups[name] = Group(name=name, children=tuple(str(c.name) for c in group.child_groups),
                             hosts=hosts, vars=plain(group.vars))
        if name not in ("all", "ungrouped"):
            for h in hosts:
                direct.setdefault(h, []).append(name)
    hosts: dict[str, Host] = {}
    for host in data.hosts.values():
        name = str(host.name)
        ancestors = frozenset(str(g.name) for g in host.groups) - {"all", "ungrouped"}
        _check_expanded_size(source, host.vars, host.name)
        host_vars = {k: v for k, v in plain(host.vars).items() if k not in LOADER_VARS}
        hosts[name] = Host(name=name, groups=tuple(direct.get(name, ())), all_groups=ancestors, vars=host_vars)
    return Inventory(source=source, hosts=hosts, groups=groups, warnings=_readable_warnings(warnings, groups))


def _check_expanded_size(source: Path, variables: Mapping[str, Any], owner: Any) -> None:
    """Ansible's YAML loader shares aliased values; copying them (as ``plain`` does) would expand a "billion
    laughs" without bound. Count what the variables stand for first, each shared value once."""
    memo: dict[int, int] = {}

    def size(value: Any) -> int:
        if not isinstance(value, (Mapping, list, tuple)):
            return 1
        if id(value) not in memo:
            memo[id(value)] = 0   # a value that contains itself counts once
            items = [x for kv in value.items() for x in kv] if isinstance(value, Mapping) else value
            memo[id(value)] = 1 + sum(size(x) for x in items)
        return memo[id(value)]

    for name, value in variables.items():
        if size(value) > MAX_NODES:
            path, line = _origin(value)
            if path is None:
                path, line = _origin(owner)
            raise InventoryError(path or str(source), f"variable {name} of {owner}: aliases expand to more than "
                                 f"{MAX_NODES:,} values (a \"billion laughs\" document?); devbox refuses it",
                                 line=line)


_VALID_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _readable_warnings(warnings: list[str], groups: Mapping[str, Group]) -> tuple[str, ...]:
    """Ansible's warnings without advice about its own flags, naming the groups where it only counts them."""
    result = []
    for warning in dict.fromkeys(warnings):
        warning = warning.replace(", use -vvvv to see details", "")
        if warning.startswith("Invalid characters were found in group names"):
            bad = [g for g in groups if not _VALID_GROUP.match(g)]
            warning = f"{warning}: {', '.join(bad)}"
        result.append(warning)
    return tuple(result)


def plain(value: Any) -> Any:
    """Ansible's tagged values as plain Python values (YAML/JSON-safe); inline vault stays opaque."""
    if isinstance(value, bool) or value is None:
        return value
    if type(value).__name__ == "EncryptedString":
        return VaultValue()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)
