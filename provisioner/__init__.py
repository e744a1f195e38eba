"""devbox: a local, scaled-down copy of the live architecture."""
from pathlib import Path

__version__ = "0.1.0"

# Files that ship inside the package (the box's setup files, the parity facts playbook).
DATA_DIR = Path(__file__).resolve().parent / "data"
