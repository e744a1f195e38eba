"""The variables Ansible would give each production host, resolved without running or decrypting anything.

Ansible's ``host_group_vars`` plugin reads ``group_vars/`` and ``host_vars/`` beside the inventory and beside the
playbook; devbox does not run it (it would decrypt vault files), and reads the same files itself here instead,
each file once and only when a host needs it, with the project's size-limited YAML loader. A file that is
vault-encrypted as a whole stays opaque (its variable names are unknown, and devbox says so); an inline ``!vault``
value becomes a ``VaultValue``.

The merge follows Ansible's default precedence (``DEFAULT_VARIABLE_PRECEDENCE`` and ``sort_groups``), lowest first:

1. the inventory's own variables of ``all``, then of the host's groups (``[g:vars]``), in Ansible's group order:
   depth in the tree, then ``ansible_group_priority``, then name;
2. ``group_vars/all`` beside the inventory, then beside the playbook;
3. ``group_vars/GROUP`` beside the inventory for each group in that order, then the same beside the playbook
   (so a parent group's file beside the playbook beats a child group's file beside the inventory);
4. the host's inline inventory variables, then ``host_vars/HOST`` beside the inventory, then beside the playbook.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from provisioner.errors import InventoryError
from provisioner.plan.inventory import Host, Inventory, VaultValue, file_kind, read_bytes
from provisioner.safeyaml import MAX_NODES, LimitedSafeLoader, check_expanded_size

VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")   # what Ansible's host_group_vars plugin reads
VAULT_HEADER = b"$ANSIBLE_VAULT"
HOST_INLINE = "the host's own inventory variables"   # the origin of a host's inline variables


class VarsLoader(getattr(yaml, "CSafeLoader", LimitedSafeLoader)):
    """Reads vars files without Ansible: ``!vault`` becomes an opaque ``VaultValue``, ``!unsafe`` a string.

    libyaml's parser where PyYAML has it (as Ansible does): hundreds of host_vars files take a tenth of the time.
    The size limit of ``safeyaml`` applies all the same, before any value is built."""

    def construct_document(self, node):
        check_expanded_size(node)
        return super().construct_document(node)


class _AliasFreeVarsLoader(VarsLoader):
    """For a document without a single ``*``: with no alias it cannot stand for more nodes than it has bytes."""

    def construct_document(self, node):
        return super(VarsLoader, self).construct_document(node)


VarsLoader.add_constructor("!vault", lambda loader, node: VaultValue())
VarsLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_vars(raw: bytes, source: Path) -> dict[str, Any]:
    try:
        loader = _AliasFreeVarsLoader if b"*" not in raw and len(raw) < MAX_NODES else VarsLoader
        data = yaml.load(raw.decode("utf-8"), Loader=loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InventoryError(str(source), f"vars file is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                             line=mark.line + 1 if mark is not None else None,
                             hint="fix the file so `ansible-inventory --list` accepts it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(str(source), "vars file must hold a mapping of variable names to values")
    return data


def ignored_name(name: str) -> bool:
    """Files Ansible skips in a vars folder: hidden, backups, other extensions."""
    return name.startswith(".") or name.endswith("~") or Path(name).suffix not in VARS_EXTENSIONS


def entity_files(folder: Path, name: str, listing: frozenset[str] | None = None) -> list[Path]:
    """The files Ansible loads for one group or host in ``folder`` (``group_vars``/``host_vars``): the first of
    ``NAME`` (a file, or a folder read whole, sorted), ``NAME.yml``, ``NAME.yaml``, ``NAME.json``. ``listing``:
    the names in ``folder`` when the caller has listed it already (a name not there is not looked up)."""
    for ext in VARS_EXTENSIONS:
        if listing is not None and name + ext not in listing:
            continue
        candidate = folder / (name + ext)
        kind = file_kind(candidate)
        if kind == "dir":
            return [f for f in sorted(candidate.rglob("*"))
                    if not any(ignored_name(p) for p in f.relative_to(candidate).parts) and file_kind(f) == "file"]
        if kind == "file":
            return [candidate]
    return []


@dataclass(frozen=True)
class VarsFile:
    path: Path
    label: str                          # how messages name it: group_vars/web.yml (beside the playbook)
    data: Mapping[str, Any]             # empty when opaque
    opaque: bool = False                # vault-encrypted as a whole: its variable names are unknown


@dataclass(frozen=True)
class Resolved:
    """One host's variables as Ansible would merge them (values never decrypted)."""

    vars: Mapping[str, Any]
    layers: tuple[tuple[str, Mapping[str, Any]], ...] = ()   # (where, variables), lowest precedence first
    opaque: tuple[str, ...] = ()        # labels of vault-encrypted files that apply to the host
    host_level: Mapping[str, Any] = field(default_factory=dict)   # inline host vars and host_vars files only

    def where(self, name: str) -> str | None:
        """Where the value ``name`` has comes from (a file, or the inventory's own variables)."""
        return next((label for label, values in reversed(self.layers) if name in values), None)


class HostVariables:
    """Resolves hosts' variables lazily; each vars file is read once (``reads`` counts them, for tests)."""

    def __init__(self, inventory: Inventory, playbook_dir: Path | None = None):
        self.inventory = inventory
        self.dirs: list[tuple[Path, str]] = []
        seen: set[Path] = set()
        for folder, side in ((inventory.vars_dir, "inventory"), (playbook_dir, "playbook")):
            if folder is None:
                continue
            real = Path(folder).resolve()
            if real not in seen and ((real / "group_vars").is_dir() or (real / "host_vars").is_dir()):
                seen.add(real)
                self.dirs.append((Path(folder), side))
        self._files: dict[tuple[str, str, int], tuple[VarsFile, ...]] = {}
        self._listings: dict[tuple[str, int], frozenset[str] | None] = {}   # names in each group_vars/host_vars
        self._resolved: dict[str, Resolved] = {}
        self._order = _group_order(inventory)
        self._ungrouped = frozenset(inventory.groups["ungrouped"].hosts if "ungrouped" in inventory.groups else ())
        self.reads = 0

    def files(self, kind: str, name: str) -> list[VarsFile]:
        """``kind`` is ``group_vars`` or ``host_vars``: the files for ``name``, inventory side first."""
        return [f for index in range(len(self.dirs)) for f in self._side_files(kind, name, index)]

    def _side_files(self, kind: str, name: str, index: int) -> tuple[VarsFile, ...]:
        if "/" in name or name.startswith("."):   # a group named like a path: nothing outside the folder is read
            return ()
        key = (kind, name, index)
        if key not in self._files:
            self._files[key] = tuple(self._read(index, kind, name))
        return self._files[key]

    def _listing(self, kind: str, index: int) -> frozenset[str] | None:
        """The names in the side's ``kind`` folder, listed once; None when it cannot be listed (each name is then
        looked up, and its error named, as before)."""
        key = (kind, index)
        if key not in self._listings:
            try:
                self._listings[key] = frozenset(os.listdir(self.dirs[index][0] / kind))
            except OSError:
                self._listings[key] = None
        return self._listings[key]

    def _read(self, index: int, kind: str, name: str) -> Iterable[VarsFile]:
        folder, side = self.dirs[index]
        where = folder / kind
        listing = self._listing(kind, index)
        if listing is None and not where.is_dir():
            return
        for path in entity_files(where, name, listing):
            self.reads += 1
            raw = read_bytes(path)
            label = f"{path.relative_to(folder).as_posix()} (beside the {side})"
            if raw.lstrip().startswith(VAULT_HEADER):
                yield VarsFile(path, label, {}, opaque=True)
            else:
                yield VarsFile(path, label, load_vars(raw, path))

    def host_groups(self, host: Host) -> list[str]:
        """The host's groups (``ungrouped`` included when it is there, ``all`` not) in Ansible's merge order."""
        groups = set(host.all_groups)
        if host.name in self._ungrouped:
            groups.add("ungrouped")
        return sorted(groups, key=lambda g: self._order.get(g, (0, 1, g)))

    def resolve(self, host: Host) -> Resolved:
        if host.name in self._resolved:
            return self._resolved[host.name]
        merged: dict[str, Any] = {}
        layers: list[tuple[str, Mapping[str, Any]]] = []
        opaque: list[str] = []

        def add(values: Mapping[str, Any], label: str) -> None:
            if values:
                merged.update(values)
                layers.append((label, values))

        groups = self.host_groups(host)
        inventory_groups = self.inventory.groups
        add(inventory_groups["all"].vars if "all" in inventory_groups else {}, "the inventory's vars of all")
        for g in groups:
            if g in inventory_groups:
                add(inventory_groups[g].vars, f"the inventory's vars of group {g}")
        # Ansible's stages: group_vars/all of each side, then every group's group_vars of the inventory side, then
        # of the playbook side (a parent's file beside the playbook beats a child's beside the inventory)
        stages = [("group_vars", ["all"], side) for side in range(len(self.dirs))]
        stages += [("group_vars", groups, side) for side in range(len(self.dirs))]
        for kind, names, side in stages:
            for g in names:
                for f in self._side_files(kind, g, side):
                    if f.opaque:
                        opaque.append(f.label)
                    add(f.data, f.label)
        add(host.vars, HOST_INLINE)
        host_level = dict(host.vars)
        for f in self.files("host_vars", host.name):
            if f.opaque:
                opaque.append(f.label)
            add(f.data, f.label)
            host_level.update(f.data)
        resolved = Resolved(vars=merged, layers=tuple(layers), opaque=tuple(opaque), host_level=host_level)
        self._resolved[host.name] = resolved
        return resolved


def _group_order(inventory: Inventory) -> dict[str, tuple[int, int, str]]:
    """Ansible's ``sort_groups`` key per group: (depth below ``all``, ``ansible_group_priority``, name)."""
    depth: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    for name, group in inventory.groups.items():
        for child in group.children:
            parents.setdefault(child, []).append(name)

    def depth_of(name: str, trail: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        above = [p for p in parents.get(name, ()) if p not in trail]
        value = 0 if name == "all" else (1 + max((depth_of(p, trail | {name}) for p in above), default=0))
        depth[name] = value
        return value

    order = {}
    for name, group in inventory.groups.items():
        try:
            priority = int(group.vars.get("ansible_group_priority", 1))
        except (TypeError, ValueError):
            priority = 1
        order[name] = (depth_of(name), priority, name)
    return order


def differing(hosts: Sequence[Host], variables: HostVariables,
              skip: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Names of the variables whose resolved values differ between ``hosts`` (never their values); ``skip``
    leaves some out (connection settings differ on every host and never reach a VM)."""
    if len(hosts) < 2:
        return []
    values = [variables.resolve(h).vars for h in hosts]
    first, others = values[0], values[1:]
    missing = object()
    names = set()
    for key in set().union(*values):
        if skip(key):
            continue
        value = first.get(key, missing)
        if any(other.get(key, missing) != value for other in others):
            names.add(key)
    return sorted(names)
