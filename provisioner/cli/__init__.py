"""The command line (click): options in, one app call, results out.

``main`` is the root group (``main.py``) with every command registered (``commands.py``); setup.cfg's entry point
is ``provisioner.cli:main``.
"""
from provisioner.cli.commands import main

__all__ = ["main"]
