"""The ``environments:`` section of devbox.yml: its schema (the logic is in ``provisioner.environments``)."""
from __future__ import annotations

import re
from typing import Mapping

DEV = "dev"
PRODUCTION = "production"
ENVIRONMENT_KEYS = {"inventory", "vault_password_file", "vault_id", "allow_production", "check_first",
                    "known_hosts"}
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
_VAULT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def validate_environments(raw: object) -> list[str]:
    """Every problem with the ``environments:`` value of devbox.yml, as messages for ``ConfigError``."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return ["`environments` must be a mapping of environment name to settings"]
    problems: list[str] = []
    for name, settings in raw.items():
        where = f"environments.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"`{where}`: environment names are lower-case letters, digits, '-' and '_' (e.g. staging)")
            continue
        if name == DEV:
            problems.append(f"`{where}`: 'dev' is built in (the development VMs) and cannot be redefined")
            continue
        if not isinstance(settings, Mapping):
            problems.append(f"`{where}` must be a mapping with at least `inventory`")
            continue
        for key in sorted(set(settings) - ENVIRONMENT_KEYS):
            problems.append(f"unknown key `{where}.{key}` (known: {', '.join(sorted(ENVIRONMENT_KEYS))})")
        if not isinstance(settings.get("inventory"), str) or not settings.get("inventory"):
            problems.append(f"`{where}.inventory` is required: the path of this environment's inventory")
        for key in ("vault_password_file", "known_hosts"):
            if key in settings and (not isinstance(settings[key], str) or not settings[key]):
                problems.append(f"`{where}.{key}` must be a path")
        if "vault_id" in settings and (not isinstance(settings["vault_id"], str)
                                       or not _VAULT_ID.match(settings["vault_id"])):
            problems.append(f"`{where}.vault_id` must be a vault id label such as 'staging'")
        for key in ("allow_production", "check_first"):
            if key in settings and not isinstance(settings[key], bool):
                problems.append(f"`{where}.{key}` must be true or false")
        if settings.get("allow_production") is True and name != PRODUCTION:
            problems.append(f"`{where}.allow_production`: only the environment named 'production' can allow "
                            f"production; the guard against production hosts always applies to '{name}'")
    return problems
