"""The team's playbook (``site.yml``), read once: the one reader of it for every part of devbox.

``read_site(path)`` reads the playbook and every playbook it imports with a static path, each file parsed once
by ansible-core's own loader (``DataLoader``, trusted as template, exactly as ``ansible-playbook`` parses a
playbook: ``!vault`` and ``!unsafe`` included), and gives a small immutable view of it:

* ``files``: each playbook file read, with its text and its data as Ansible's loader returned it;
* ``plays``: every play in execution order, imports expanded in place (a play keeps the file it is written in),
  each with its data both as Ansible loaded it and as plain Python data;
* ``imports``: every ``import_playbook`` entry, and ``problems``: the imported playbooks that could not be read.

Who reads it: the change planner (``incremental.changes`` builds ansible-core's ``Playbook``/``Play`` objects on
top of the loaded data instead of parsing again), the parity scan (``parity.scan``: roles, play vars and tasks)
and the revision stamp (``environments.stamp``: which roles each host pattern gets).

Parsed data is cached per file for the life of the process, keyed by the file's path and content: the text is
read again on each call (cheap, and never fooled by an edit that keeps the size within the file system's
timestamp resolution), the parse is not. Cached data is shared: never modify it (``copy.deepcopy`` first).

Importing this module does not import Ansible; reading a playbook does (function-local imports).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from provisioner.errors import DevboxError

IMPORT_KEYS = ("import_playbook", "ansible.builtin.import_playbook", "ansible.legacy.import_playbook")
TASK_SECTIONS = ("pre_tasks", "tasks", "post_tasks", "handlers")


class PlaybookReadError(DevboxError):
    """A playbook file is missing or is not valid YAML."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot read {path}: {reason}", "run `ansible-playbook --syntax-check` on the playbook")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class PlaybookFile:
    """One playbook file as read: ``data`` is what Ansible's loader returned (tagged values; shared, read-only)
    and ``plain`` the same as plain Python data (see ``plain``)."""

    path: Path   # resolved
    text: str
    data: Any
    plain: Any


@dataclass(frozen=True)
class RoleRef:
    """One entry of a play's ``roles:`` list."""

    name: str | None   # the role named (``role:``/``name:`` of a mapping), possibly templated; None if none
    entry: Any         # the entry as written, plain


@dataclass(frozen=True)
class SitePlay:
    source: Path               # the playbook file the play is written in
    position: int              # the entry's index in that file
    data: Mapping              # the play as Ansible's loader returned it (shared, read-only)
    plain: Mapping             # the same as plain Python data

    @property
    def name(self) -> Any:
        return self.plain.get("name")

    @property
    def hosts(self) -> Any:
        """The play's ``hosts`` as written (a pattern, a list, a template or None)."""
        return self.plain.get("hosts")

    @property
    def roles(self) -> tuple[RoleRef, ...]:
        entries = self.plain.get("roles")
        return tuple(RoleRef(_role_name(e), e) for e in entries) if isinstance(entries, list) else ()

    @property
    def vars(self) -> Mapping:
        found = self.plain.get("vars")
        return found if isinstance(found, Mapping) else {}

    @property
    def vars_files(self) -> tuple:
        found = self.plain.get("vars_files")
        return tuple(found) if isinstance(found, list) else (found,) if found else ()

    def tasks(self, section: str) -> Any:
        """``pre_tasks``, ``tasks``, ``post_tasks`` or ``handlers`` as written (plain)."""
        return self.plain.get(section)


@dataclass(frozen=True)
class PlaybookImport:
    source: Path           # the file holding the ``import_playbook`` entry
    target: Any            # the path as written
    path: Path | None      # the imported file; None when the path is templated (Ansible works it out at run time)


@dataclass(frozen=True)
class SitePlaybook:
    path: Path                                # the playbook, resolved
    files: Mapping[Path, PlaybookFile]        # the playbook and every file it imports statically, in read order
    plays: tuple[SitePlay, ...]               # execution order, imports expanded in place
    imports: tuple[PlaybookImport, ...]
    problems: tuple[PlaybookReadError, ...]   # imported playbooks that could not be read

    @property
    def root(self) -> PlaybookFile:
        return self.files[self.path]

    def file(self, path: str | Path) -> PlaybookFile | None:
        """The file read at ``path`` (any spelling of it), or None if this playbook does not import it."""
        found = self.files.get(Path(path))
        return found if found is not None else self.files.get(Path(path).resolve())


def read_site(path: str | Path) -> SitePlaybook:
    """``path`` and the playbooks it imports, each parsed once per process (see the module's docstring).

    Raises ``PlaybookReadError`` when ``path`` itself is missing or unparsable; an imported playbook that cannot
    be read is listed in ``problems`` (its plays are left out) and the rest is still read."""
    root = Path(path).resolve()
    files: dict[Path, PlaybookFile] = {root: read_playbook_file(root)}
    plays: list[SitePlay] = []
    imports: list[PlaybookImport] = []
    problems: list[PlaybookReadError] = []

    def expand(file: PlaybookFile, chain: tuple[Path, ...]) -> None:
        entries = file.data if isinstance(file.data, list) else []
        for position, (data, plain_entry) in enumerate(zip(entries, file.plain)):
            if not isinstance(data, Mapping):
                continue
            key = next((k for k in IMPORT_KEYS if k in data), None)
            if key is None:
                plays.append(SitePlay(source=file.path, position=position, data=data, plain=plain_entry))
                continue
            target = plain_entry.get(key)
            static = isinstance(target, str) and "{{" not in target and "{%" not in target
            imported = (file.path.parent / target).resolve() if static else None
            imports.append(PlaybookImport(source=file.path, target=target, path=imported))
            if imported is None or imported in chain:  # templated, or a loop Ansible would never finish either
                continue
            if imported not in files:
                try:
                    files[imported] = read_playbook_file(imported)
                except PlaybookReadError as exc:
                    problems.append(exc)
                    continue
            expand(files[imported], (*chain, imported))

    expand(files[root], (root,))
    return SitePlaybook(path=root, files=MappingProxyType(files), plays=tuple(plays), imports=tuple(imports),
                        problems=tuple(problems))


# ------------------------------------------------------------------------------------------------ one file

_CACHE: dict[Path, PlaybookFile] = {}


def read_playbook_file(path: str | Path) -> PlaybookFile:
    """One playbook file, parsed by Ansible's loader unless this process already parsed the same content."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise PlaybookReadError(path, "no such file") from None
    except OSError as exc:
        raise PlaybookReadError(path, exc.strerror or str(exc)) from exc
    cached = _CACHE.get(path)
    if cached is not None and cached.text == text:
        return cached
    data = _parse(path)
    read = PlaybookFile(path=path, text=text, data=data, plain=plain(data))
    _CACHE[path] = read
    return read


def _parse(path: Path) -> Any:
    from ansible.parsing.dataloader import DataLoader

    try:
        # as Playbook.load does; no loader cache (ours is above), no defensive copy (nobody modifies it)
        return DataLoader().load_from_file(str(path), cache="none", unsafe=True, trusted_as_template=True)
    except Exception as exc:  # noqa: BLE001 - AnsibleParserError, UnicodeDecodeError...: the file is unreadable
        raise PlaybookReadError(path, str(exc)) from exc


def plain(data: Any) -> Any:
    """Ansible-loaded data as plain Python data (dict, list, str, int...), for code that does not template.

    Values Ansible would not template or cannot read without the vault password (``!unsafe``, ``!vault``)
    become None: the static readers never need them, and read them so since before this module existed.
    """
    from ansible.parsing.vault import EncryptedString
    from ansible.template import is_trusted_as_template

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return str(value) if is_trusted_as_template(value) else None
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, EncryptedString):
            return None
        if isinstance(value, Mapping):
            return {convert(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [convert(v) for v in value]
        return value  # dates and other YAML scalars

    return convert(data)


def _role_name(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        name = entry.get("role") or entry.get("name")
        return name if isinstance(name, str) else None
    return None
