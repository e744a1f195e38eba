"""The ``smoke:`` section of devbox.yml: the checks `devbox integration` runs (run in ``provisioner.lab``)."""
from __future__ import annotations

import re

SMOKE_KEYS = {"name", "from", "http", "expect_status", "expect_json", "wait"}
# `{MACHINE}` in a check's URL stands for that machine's address on the development network
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9][A-Za-z0-9_.-]*)\}")


def validate_smoke(raw: object) -> list[str]:
    """Every problem with devbox.yml's ``smoke:`` list, for ``ConfigError``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return ["`smoke` must be a list of checks ({name, from, http, expect_status, expect_json, wait})"]
    problems, names = [], set()
    for i, check in enumerate(raw):
        where = f"smoke[{i}]"
        if not isinstance(check, dict):
            problems.append(f"`{where}` must be a mapping with name, from and http")
            continue
        for key in sorted(set(check) - SMOKE_KEYS):
            problems.append(f"unknown key `{where}.{key}` (known: {', '.join(sorted(SMOKE_KEYS))})")
        for key in ("name", "from", "http"):
            if not isinstance(check.get(key), str) or not check.get(key, "").strip():
                problems.append(f"`{where}.{key}` is required and must be a string")
        if isinstance(check.get("name"), str):
            if check["name"] in names:
                problems.append(f"`{where}.name` {check['name']!r} is used twice (names identify test cases)")
            names.add(check["name"])
        if isinstance(check.get("http"), str) and not re.match(r"^https?://", check["http"]):
            problems.append(f"`{where}.http` must be an http:// or https:// URL")
        status = check.get("expect_status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            problems.append(f"`{where}.expect_status` must be an HTTP status code")
        wait = check.get("wait", 60)
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or wait < 0:
            problems.append(f"`{where}.wait` must be a number of seconds")
    return problems
