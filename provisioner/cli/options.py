"""Options and arguments that more than one command takes, each defined once.

Where commands describe the same option differently, the help text is the command's (``help=``); the flag, its
destination and its behaviour are the same everywhere.
"""
from __future__ import annotations

from pathlib import Path

import click

# VM names: up, provision, halt, destroy
names_argument = click.argument("names", nargs=-1)

# --env NAME, also from DEVBOX_ENV: provision, status, trust. Only the command line counts as "explicit" for
# --yes (see environments.env_given_explicitly). `parity --env` is its own option: no DEVBOX_ENV, --export only.
env_option = click.option(
    "--env", "env", envvar="DEVBOX_ENV", metavar="NAME",
    help="Target environment from devbox.yml (default: dev, the local VMs; also DEVBOX_ENV).")

# --mitogen: up, provision, integration
mitogen_option = click.option(
    "--mitogen", is_flag=True, envvar="DEVBOX_MITOGEN",
    help="Development VMs only, opt-in: run Ansible with Mitogen's strategy (one Python per VM for the whole run; "
         "much faster on emulated VMs). Falls back to Ansible's own strategy, saying why, when Mitogen is missing "
         "or does not support the installed ansible-core. Also DEVBOX_MITOGEN=1.")

# --inventory / --allow-inventory-scripts: plan, init
inventory_option = click.option(
    "--inventory", "-i", "inventory", type=click.Path(path_type=Path),
    help="Production inventory (INI or YAML file, or a directory); default: `inventory` in devbox.yml.")
inventory_scripts_option = click.option(
    "--allow-inventory-scripts", is_flag=True,
    help="Let Ansible run executable inventory scripts and inventory plugins (off: devbox refuses them).")

# --name: every `lab` subcommand
lab_name_option = click.option("--name", default=None, help="Lab name (network namespace); default: devbox-lab.")


def json_option(help: str):
    """--json: plan, status, parity."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def yes_option(help: str, *, short: bool = True):
    """--yes (and -y, except where a command never had it): provision, destroy, parity."""
    return click.option("--yes", *(("-y",) if short else ()), "yes", is_flag=True, help=help)


def force_option(help: str):
    """--force: init, box build."""
    return click.option("--force", is_flag=True, help=help)
