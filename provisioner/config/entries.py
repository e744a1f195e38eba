"""The checks every list of mappings in devbox.yml shares (`hypervisors:`, `shared_folders:`).

A section such as ``shared_folders: [{host: src, guest: /srv/app, to: [web]}]`` is checked here for its shape:
a list, each item a mapping, no unknown key (the known ones named), every required key present, each value of the
right kind. Problems name the item by its place (`shared_folders[1].guest`) and say what the value must be; the
caller adds its own checks (a path leaving the project, overlapping subnets) and raises ``ConfigError`` with
devbox.yml's path, like every other section's validator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class Key:
    """One key an item may have: ``must`` completes "`section[i].key` must be ..." (or "is missing: it must be
    ..."), ``valid`` says whether a value is right, ``default`` stands in when an optional key is not given."""
    name: str
    must: str
    valid: Callable[[Any], bool]
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Entry:
    """One item of the list as written, with what the shared checks found wrong with it."""
    section: str
    index: int
    values: Mapping[str, Any]
    keys: Mapping[str, Key]
    bad: frozenset[str]        # keys that are missing or of the wrong kind
    unknown: tuple[str, ...]   # keys nobody knows

    @property
    def where(self) -> str:
        """The item in messages: `shared_folders[1]`."""
        return f"{self.section}[{self.index}]"

    def get(self, key: str) -> Any:
        """The value as written, or the key's default."""
        return self.values.get(key, self.keys[key].default)

    def ok(self, key: str) -> bool:
        """Whether ``key`` passed the shared checks (given and right, or optional and not given)."""
        return key not in self.bad

    @property
    def clean(self) -> bool:
        return not self.bad and not self.unknown


def check_entries(value: Any, section: str, keys: Sequence[Key], *, what: str, example: str,
                  non_empty: bool = False) -> tuple[list[Entry], list[str]]:
    """The items of devbox.yml's ``section`` that are mappings, and every problem the shared checks found.

    ``what`` names the items in messages ("folders to share"); ``example`` is one item as YAML
    ("e.g. `- {host: src, ...}`"). ``None`` (the key given with no value) is an empty list; an empty list is a
    problem only with ``non_empty``."""
    if value is None:
        return [], []
    known = {key.name: key for key in keys}
    required = [key.name for key in keys if key.required]
    with_keys = f"mappings with {_and(required)}" if required else "mappings"
    if not isinstance(value, list) or (non_empty and not value):
        article = "a non-empty" if non_empty else "a"
        return [], [f"`{section}` must be {article} list of {what}, {with_keys} ({example}; got {_short(value)})"]
    entries: list[Entry] = []
    problems: list[str] = []
    for index, item in enumerate(value):
        where = f"{section}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"`{where}` must be a mapping with {_and(required) or 'the keys'} (known: "
                            f"{', '.join(known)}; {example}; got {_short(item)})")
            continue
        unknown = tuple(str(key) for key in item if key not in known)
        for key in unknown:
            problems.append(f"unknown key `{where}.{key}` (known: {', '.join(known)})")
        bad = set()
        for key in keys:
            if key.name not in item:
                if key.required:
                    bad.add(key.name)
                    problems.append(f"`{where}.{key.name}` is missing: it must be {key.must} ({example})")
            elif not key.valid(item[key.name]):
                bad.add(key.name)
                problems.append(f"`{where}.{key.name}` must be {key.must} (got {_short(item[key.name])})")
        entries.append(Entry(section=section, index=index, values=item, keys=known, bad=frozenset(bad),
                             unknown=unknown))
    return entries, problems


def is_int(value: Any, least: int | None = None) -> bool:
    """A whole number (not a boolean), at least ``least`` when given."""
    return isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)


def is_text(value: Any) -> bool:
    """A string with something other than blanks in it."""
    return isinstance(value, str) and bool(value.strip())


def _and(names: Sequence[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return ", ".join(quoted[:-1]) + f" and {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
