"""Options and arguments that more than one command takes, each defined once.

Where commands describe the same option differently, the help text is the command's (``help=``); the flag, its
destination and its behaviour are the same everywhere.
"""
from __future__ import annotations

from pathlib import Path

import click

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


# -v/-vv/-vvv/-vvvv on up, provision, idempotence: Ansible's verbosity (ansible-runner's ``verbosity``). devbox's own
# logging is the root group's -v, before the command: `devbox -v provision -vvv`.
ansible_verbosity_option = click.option(
    "-v", "--verbose", "ansible_verbosity", count=True, type=click.IntRange(0, 4, clamp=True),
    help="Ansible's verbosity, as ansible-playbook -v ... -vvvv (repeat). devbox's own log: `devbox -v COMMAND`.")


# --- shell completion (click's `shell_complete`): names read from the project's files, nothing else -------------

def _app_for_completion(ctx: click.Context):
    """The app of the command being completed: the one a test passed as ``obj``, else one for ``-C`` (no adapter
    is used: completion reads `.devbox/plan.json` and devbox.yml only, never production)."""
    from provisioner.app import Devbox

    app = ctx.find_object(Devbox)
    if app is None:
        app = Devbox(project_dir=Path(ctx.find_root().params.get("project_dir") or "."))
    return app


def complete_vm_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """VM names of the saved plan (`.devbox/plan.json`) that start with what was typed; none without a plan."""
    try:
        names = [m.name for m in _app_for_completion(ctx).load_topology().machines]
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    chosen = set(ctx.params.get(param.name) or ()) if param.multiple or param.nargs == -1 else set()
    return [n for n in names if n.startswith(incomplete) and n not in chosen]


def complete_env_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Environment names of devbox.yml (dev included) that start with what was typed."""
    try:
        names = _app_for_completion(ctx).environment_names()
    except Exception:  # an invalid devbox.yml: no completion rather than an error in the shell
        return []
    return [n for n in names if n.startswith(incomplete)]


# VM names: up, provision, idempotence, halt, destroy (several); ssh (one)
names_argument = click.argument("names", nargs=-1, shell_complete=complete_vm_names)
vm_name_argument = click.argument("name", shell_complete=complete_vm_names)

# --env NAME, also from DEVBOX_ENV: provision, status, trust. Only the command line counts as "explicit" for
# --yes (see environments.env_given_explicitly). `parity --env` is its own option: no DEVBOX_ENV.
env_option = click.option(
    "--env", "env", envvar="DEVBOX_ENV", metavar="NAME", shell_complete=complete_env_names,
    help="Target environment from devbox.yml (default: dev, the local VMs; also DEVBOX_ENV).")
