"""The ``parity:`` section of devbox.yml: declared development differences (compared in ``provisioner.parity``)."""
from __future__ import annotations

from typing import Any, Mapping


def config_problems(value: Any) -> list[str]:
    """Problems in the ``parity:`` section of devbox.yml (config.py reports them with every other problem)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return ["parity: must be a mapping with an `expected:` list"]
    problems = [f"parity.{k}: unknown key (allowed: expected)" for k in value if k != "expected"]
    expected = value.get("expected") or []
    if not isinstance(expected, list):
        return problems + ["parity.expected: must be a list"]
    for i, entry in enumerate(expected):
        where = f"parity.expected[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a mapping with fact, reason and optionally machine or host_group")
            continue
        problems += [f"{where}.{k}: unknown key (allowed: fact, reason, machine, host_group)"
                     for k in entry if k not in ("fact", "reason", "machine", "host_group")]
        if not isinstance(entry.get("fact"), str) or not entry.get("fact"):
            problems.append(f"{where}.fact: required, e.g. `package:nginx`, `service:*`, `kernel`")
        if not isinstance(entry.get("reason"), str) or not entry.get("reason"):
            problems.append(f"{where}.reason: required: say why development differs here")
        if "machine" in entry and "host_group" in entry:
            problems.append(f"{where}: give machine or host_group, not both")
        for k in ("machine", "host_group"):
            if k in entry and not isinstance(entry[k], str):
                problems.append(f"{where}.{k}: must be a name")
    return problems
