"""Environments other than the throwaway development VMs: what they are, and when devbox may touch them.

``dev`` is implicit: the VMs devbox builds itself. Every other environment is named in ``devbox.yml``::

    environments:
      staging:
        inventory: playbooks/inventories/staging
        vault_password_file: ~/.config/devbox/staging.vault   # optional; prompted for when absent
        vault_id: staging                                     # optional; with it only this id decrypts
        check_first: true                                     # check-mode diff before applying
        known_hosts: environments/staging.known_hosts         # optional; this is the default

Production is never a target unless ``environments.production`` exists with ``allow_production: true``, and
even then the typed confirmation cannot be skipped. A non-production environment that reaches a production host
is refused (``guard.py``): a staging inventory that points at a production host is a classic accident.

This module is pure: it decides, the app asks and runs, the CLI prompts.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from provisioner.errors import SafetyError, UsageError
from provisioner.config.environments import DEV, PRODUCTION


@dataclass(frozen=True)
class Environment:
    name: str
    inventory: Path | None          # None for dev: the generated development inventory is used
    known_hosts: Path | None        # None for dev: the VMs are throwaway, Vagrant manages their keys
    vault_password_file: Path | None = None
    vault_id: str | None = None
    allow_production: bool = False
    check_first: bool = True
    is_production: bool = False

    @property
    def is_dev(self) -> bool:
        return self.name == DEV


DEV_ENVIRONMENT = Environment(name=DEV, inventory=None, known_hosts=None, check_first=False)


def parse_environments(raw: Mapping | None, base_dir: Path) -> dict[str, Environment]:
    """Environments from an already validated ``environments:`` mapping; paths relative to ``base_dir``."""
    envs: dict[str, Environment] = {DEV: DEV_ENVIRONMENT}
    for name, settings in (raw or {}).items():
        def path(key: str) -> Path | None:
            value = settings.get(key)
            return (base_dir / Path(value).expanduser()).resolve() if value else None

        envs[name] = Environment(
            name=name,
            inventory=path("inventory"),
            known_hosts=path("known_hosts") or (base_dir / "environments" / f"{name}.known_hosts").resolve(),
            vault_password_file=path("vault_password_file"),
            vault_id=settings.get("vault_id"),
            allow_production=bool(settings.get("allow_production", False)),
            check_first=bool(settings.get("check_first", True)),
            is_production=name == PRODUCTION,
        )
    return envs


def environments_of(config) -> dict[str, Environment]:
    """The environments of a loaded ``config.Config`` (validated with it), paths relative to devbox.yml."""
    base = config.path.parent if config.path else Path.cwd()
    return parse_environments(config.extensions.get("environments"), Path(base).resolve())


def select_environment(envs: Mapping[str, Environment], name: str | None) -> Environment:
    """The environment a command targets. Production only when devbox.yml explicitly allows it."""
    name = name or DEV
    env = envs.get(name)
    if env is None:
        known = ", ".join(sorted(envs))
        raise UsageError(f"unknown environment '{name}' (known: {known})",
                         "declare it under 'environments:' in devbox.yml")
    if env.is_production and not env.allow_production:
        raise SafetyError("production is not a target: environments.production in devbox.yml does not set "
                          "'allow_production: true'",
                          "use a staging environment; allowing production takes an explicit setting")
    return env


# --- the production guard -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TargetHost:
    """A host as Ansible would reach it: its inventory name and the address it connects to."""

    name: str
    address: str  # ansible_host, or the name itself when ansible_host is not set
    port: int = 22
    # how Ansible's ssh reaches it, for devbox's own handshake: a ProxyJump host ("user@host:port"), and the
    # login and key (used to log in to that jump host; the target itself is only asked for its key)
    jump: str | None = None
    user: str | None = None
    key_file: str | None = None
    # what the production guard needs to resolve it the way ssh will: the inventory's extra ssh arguments
    # (``-F``, ``-J``, ``-o ...``) and the inventory file that names the host (for messages)
    ssh_args: str = ""
    source: str | None = None
    # the inventory groups that list it directly (not their parents, not all/ungrouped), for reports; not part of
    # how it is reached
    groups: tuple[str, ...] = field(default=(), compare=False)


def normalize_address(value: str) -> str:
    """Compare addresses as addresses: '10.0.0.010'-style spellings and case must not hide a match."""
    text = str(value).strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


# the guard itself (both inventories resolved the way ssh reaches their hosts) is in guard.py


# --- the confirmation flow ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """What a run against an environment will do before it applies anything."""

    environment: Environment
    hosts: tuple[TargetHost, ...]
    check_first: bool        # run `--check --diff` and show it before applying
    ask_confirmation: bool   # ask for the environment's name to be typed

    @property
    def expected_answer(self) -> str:
        return self.environment.name


def plan_run(env: Environment, hosts: Iterable[TargetHost], *, env_explicit: bool, yes: bool,
             no_check_first: bool = False) -> RunPlan:
    """Decide the steps before applying. ``--yes`` counts only when ``--env`` was given on the command line,
    so a default or an environment variable can never silently turn into an unattended staging run; and it
    never skips the confirmation for production."""
    hosts = tuple(hosts)
    if env.is_dev:
        return RunPlan(env, hosts, check_first=False, ask_confirmation=False)
    if not hosts:
        raise SafetyError(f"environment '{env.name}' has no hosts in {env.inventory}",
                          "check the inventory path in devbox.yml")
    skip_prompt = yes and env_explicit and not env.is_production
    return RunPlan(env, hosts, check_first=env.check_first and not no_check_first,
                   ask_confirmation=not skip_prompt)


def check_confirmation(plan: RunPlan, typed: str | None) -> None:
    """Accept only the environment's exact name; anything else stops the run before it applies."""
    if not plan.ask_confirmation:
        return
    if (typed or "").strip() != plan.expected_answer:
        raise SafetyError(f"confirmation did not match: nothing was applied to '{plan.environment.name}'",
                          f"type the environment name '{plan.expected_answer}' exactly to apply")


# --- reading an environment's hosts ---------------------------------------------------------------------

def read_target_hosts(inventory: Path, *, limit: str | None = None,
                      allow_scripts: bool = False) -> tuple[TargetHost, ...]:
    """The hosts of ``inventory`` with the address and port Ansible would connect to.

    Read with Ansible's own loader and variable manager (so ``ansible_host`` set in group_vars, host_vars or
    the inventory file are all seen). Vault-encrypted variable files are skipped, never decrypted: devbox has
    no business reading production secrets to find an address, and addresses are not secrets. Like ``plan``,
    it fails closed and runs nothing: an inventory script or plugin config is refused unless ``allow_scripts``
    (``allow_inventory_scripts: true`` in devbox.yml), and a file Ansible cannot parse is an error, not a
    warning (a production host missed here would be a host the guard cannot see).
    """
    from ansible.errors import AnsibleError
    from ansible.template import Templar
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager

    inventory = Path(inventory)
    if not inventory.exists():
        raise UsageError(f"inventory {inventory} does not exist", "check the inventory path in devbox.yml")
    loader = _VaultSkippingLoader()
    try:
        manager = _fail_closed_manager_class()(loader=loader, sources=[str(inventory)], allow_scripts=allow_scripts)
        variables = VariableManager(loader=loader, inventory=manager)
        if limit:
            manager.subset(limit)
        hosts = []
        all_hostvars = HostVars(inventory=manager, variable_manager=variables, loader=loader)
        for host in manager.get_hosts():
            hostvars = variables.get_vars(host=host)
            hostvars["hostvars"] = all_hostvars  # e.g. a ProxyJump through `hostvars[groups['bastion'][0]]`
            templar = Templar(loader=loader, variables=hostvars)

            def value(*names: str, default=None):
                for name in names:
                    if hostvars.get(name) is not None:
                        return templar.template(hostvars[name])
                return default

            address = value("ansible_host", "ansible_ssh_host", default=host.name)
            port = value("ansible_port", "ansible_ssh_port", default=22)
            ssh_args = " ".join(str(value(k, default="")) for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args"))
            key = value("ansible_ssh_private_key_file", "ansible_private_key_file")
            user = value("ansible_user", "ansible_ssh_user")
            hosts.append(TargetHost(str(host.name), str(address), int(port), jump=proxy_jump(ssh_args),
                                    user=str(user) if user else None, key_file=str(key) if key else None,
                                    ssh_args=ssh_args.strip(), source=str(hostvars.get("inventory_file") or inventory),
                                    groups=tuple(sorted(g.name for g in host.get_groups()
                                                        if host in g.hosts and g.name not in ("all", "ungrouped")))))
    except AnsibleError as exc:
        from provisioner.errors import InventoryError
        raise InventoryError(str(inventory), f"Ansible could not read it: {exc.message}") from exc
    return tuple(hosts)


def _fail_closed_manager_class():
    """Ansible's inventory manager (vars plugins included, for ``ansible_host`` in group_vars) that runs no
    inventory code unless allowed and raises on a source it cannot parse instead of warning."""
    from ansible.inventory.manager import InventoryManager
    from ansible.plugins.loader import inventory_loader

    from provisioner.errors import InventoryError
    from provisioner.plan.inventory import OPT_IN_HINT, classify_source

    class FailClosedTargetManager(InventoryManager):
        def __init__(self, *, loader, sources, allow_scripts: bool):
            self._devbox_allow_scripts = allow_scripts
            super().__init__(loader=loader, sources=sources)

        def _fetch_inventory_plugins(self):
            if self._devbox_allow_scripts:
                return super()._fetch_inventory_plugins()
            # only the static parsers: an executable file never reaches the `script` plugin, whatever it holds
            return [inventory_loader.get(name) for name in ("yaml", "ini")]

        def parse_source(self, source, cache=False):
            if os.path.isdir(source):
                return super().parse_source(source, cache=cache)
            path = Path(source)
            if path.exists():
                kind = classify_source(path)
                if kind in ("script", "plugin") and not self._devbox_allow_scripts:
                    what = "an executable inventory script" if kind == "script" else "an inventory plugin config"
                    raise InventoryError(str(path), f"is {what}; devbox refuses to run it", hint=OPT_IN_HINT)
                if not self._devbox_allow_scripts and os.access(path, os.X_OK):
                    raise InventoryError(str(path), "is executable, so Ansible would run it as an inventory script; "
                                         "devbox refuses to run it", hint=f"remove the execute bit if it is a "
                                         f"static file; {OPT_IN_HINT}")
            if not super().parse_source(source, cache=cache):
                raise InventoryError(str(source), "Ansible could not parse it as an inventory",
                                     hint="fix the file so `ansible-inventory -i FILE --graph` accepts it")
            return True

    return FailClosedTargetManager


def proxy_jump(ssh_args: str) -> str | None:
    """The ProxyJump of an ssh command line (``-J X``, ``-o ProxyJump=X``, ``-oProxyJump X``); 'none' is none."""
    import shlex

    try:
        words = shlex.split(ssh_args or "")
    except ValueError:
        return None
    found = None
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word == "-J":
            found = nxt
        elif word.startswith("-J") and len(word) > 2:
            found = word[2:]
        else:
            option = nxt if word == "-o" else word[2:] if word.startswith("-o") else ""
            key, _, val = option.replace(" ", "=", 1).partition("=")
            if key.lower() == "proxyjump":
                found = val
    if found is None or found.strip().lower() in ("", "none"):
        return None
    return found.split(",")[-1].strip()  # a chain: devbox reaches the target through the last hop only


def _vault_skipping_loader_class():
    from ansible.parsing.dataloader import DataLoader

    class VaultSkippingLoader(DataLoader):
        def load_from_file(self, file_name, *args, **kwargs):
            with open(file_name, "rb") as fh:
                if fh.read(14) == b"$ANSIBLE_VAULT":
                    return {}
            return super().load_from_file(file_name, *args, **kwargs)

    return VaultSkippingLoader


def _VaultSkippingLoader():
    return _vault_skipping_loader_class()()


# --- vault passwords ------------------------------------------------------------------------------------

VAULT_HEADER = b"$ANSIBLE_VAULT"
# Where Ansible would find a vault password without being given one on the command line.
VAULT_ENV_VARS = ("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST")
VAULT_CFG_KEYS = ("vault_password_file", "vault_identity_list")


def vault_labels(inventory: Path) -> dict[str, list[Path]]:
    """Vault-encrypted files under ``inventory`` by vault id label ('default' for unlabelled 1.1 files)."""
    inventory = Path(inventory)
    files = [inventory] if inventory.is_file() else sorted(p for p in inventory.rglob("*") if p.is_file())
    labels: dict[str, list[Path]] = {}
    for path in files:
        with open(path, "rb") as fh:
            header = fh.readline().strip()
        if header.startswith(VAULT_HEADER):
            parts = header.decode(errors="replace").split(";")
            labels.setdefault(parts[3] if len(parts) > 3 and parts[3] else "default", []).append(path)
    return labels


def vault_run_settings(env: Environment, password_file: Path | None,
                       labels: Mapping[str, list[Path]]) -> tuple[tuple[str, ...], dict[str, str]]:
    """(extra ansible-playbook arguments, extra environment) for one run against ``env``.

    Only the password FILE's path is ever on a command line (ansible-runner records command lines in its
    artifacts, and every user can read the process list). With several vault ids in the inventory the
    environment must name its own, and ``vault_id_match`` keeps Ansible from trying that password on the
    others' files.
    """
    if env.is_dev or not labels:
        return (), {}
    if password_file is None:
        raise UsageError(f"environment '{env.name}' has vault-encrypted files but no vault password was given",
                         "set vault_password_file in devbox.yml or answer the prompt")
    if len(labels) > 1 and not env.vault_id:
        raise UsageError(f"the inventory of '{env.name}' holds files of several vault ids "
                         f"({', '.join(sorted(labels))}): devbox will not guess which password is whose",
                         f"set `environments.{env.name}.vault_id` in devbox.yml")
    label = env.vault_id or next(iter(labels))
    # vault_id_match only where files carry the label: Ansible would otherwise refuse the unlabelled
    # (format 1.1) files, which any id may decrypt
    settings = {"ANSIBLE_VAULT_ID_MATCH": "True"} if env.vault_id and env.vault_id in labels else {}
    return ("--vault-id", f"{label}@{password_file}"), settings


def dev_vault_sources(environ: Mapping[str, str], cfg_files: Iterable[Path]) -> list[str]:
    """Every place a development run would pick a vault password up from (it must get none)."""
    import configparser

    found = [f"environment variable {name}" for name in VAULT_ENV_VARS if environ.get(name)]
    for path in cfg_files:
        path = Path(path).expanduser()
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for key in VAULT_CFG_KEYS:
            if parser.has_option("defaults", key) and parser.get("defaults", key).strip():
                found.append(f"{path}: [defaults] {key}")
    return found


def ansible_cfg_candidates(environ: Mapping[str, str], playbook_dir: Path) -> list[Path]:
    """The ansible.cfg files a run from ``playbook_dir`` may read, in Ansible's order."""
    paths = [Path(environ["ANSIBLE_CONFIG"])] if environ.get("ANSIBLE_CONFIG") else []
    return paths + [Path(playbook_dir) / "ansible.cfg", Path("~/.ansible.cfg"), Path("/etc/ansible/ansible.cfg")]


def ensure_dev_gets_no_vault_password(environ: Mapping[str, str], playbook_dir: Path) -> None:
    """Development runs never get a vault password: refuse to start one that would."""
    sources = dev_vault_sources(environ, ansible_cfg_candidates(environ, playbook_dir))
    if sources:
        lines = "\n".join(f"  - {s}" for s in sources)
        raise SafetyError(f"a development run would be given a vault password:\n{lines}",
                          "development runs use generated values, never real secrets: unset these for devbox "
                          "and name the password file per environment in devbox.yml (environments.NAME."
                          "vault_password_file)")
