"""devbox.yml's JSON Schema, for editors (the YAML language server completes and checks the file with it).

The schema ships as package data beside this module; ``schema.py`` stays the validator devbox itself runs.
tests/unit/test_editor_schema.py keeps the two in agreement on every devbox.yml in the repository and a set
of bad ones.
"""
from __future__ import annotations

import importlib.resources

SCHEMA_NAME = "devbox.schema.json"
# Where `devbox init` keeps a copy, and what the header of a generated devbox.yml points editors to.
PROJECT_SCHEMA = ".devbox/" + SCHEMA_NAME


def schema_text() -> str:
    """The JSON Schema of devbox.yml, as shipped with this devbox."""
    return (importlib.resources.files("provisioner.config") / SCHEMA_NAME).read_text(encoding="utf-8")
