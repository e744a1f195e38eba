"""devbox: a local, scaled-down copy of the live architecture."""
from pathlib import Path

__version__ = "0.1.0"

# Files that ship inside the package (the box's setup files, the parity facts playbook).
DATA_DIR = Path(__file__).resolve().parent / "data"

# The version of every JSON document devbox prints (`"schema": 1` at the top level): raised when a key changes
# meaning or goes away; new keys may appear without a new version.
JSON_SCHEMA = 1
