"""devbox.yml: the team's rules for turning the production inventory into development VMs.

Loaded and validated here; unknown keys are rejected and every problem is reported at once, so one edit-run
cycle fixes the whole file.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from provisioner.config.entries import Key, check_entries, is_int, is_text
from provisioner.config.environments import validate_environments
from provisioner.config.hypervisors import Hypervisor, parse_hypervisors
from provisioner.config.parity import config_problems as parity_problems
from provisioner.config.smoke import validate_smoke
from provisioner.errors import ConfigError
from provisioner.safeyaml import StrictSafeLoader

CONFIG_NAME = "devbox.yml"
PROVIDERS = ("libvirt", "virtualbox")
# The libvirt box `devbox box build` makes from Debian packages (the advice `devbox doctor` gives leads to it).
DEFAULT_BOX = "devbox/debian12"
DEFAULT_NETWORK = "192.168.56.0/24"
# The VMs' names on the host are `<vm>.<domain>` (`devbox hosts`); .test is reserved for testing (RFC 6761), so
# the names can never be someone else's on the internet.
DEFAULT_DOMAIN = "devbox.test"
# A DNS name: dot-separated labels of letters, digits and inner hyphens, 63 characters at most each (the JSON
# Schema carries the same pattern, and maxLength 253)
DOMAIN_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
DEFAULT_MEMORY = 512
DEFAULT_CPUS = 1
MIN_MEMORY = 128
# Keys other features own; validated by them, carried here untouched so this module does not reject them.
EXTENSION_KEYS = ("environments", "smoke", "parity")
GROUP_RULE_KEYS = ("count", "keep_distinct", "memory", "cpus", "exclude")
# Folders shared from the host into VMs: `auto` is virtiofs on libvirt (9p the fallback) and VirtualBox's own shared
# folders there (see provisioner.plan.shares).
SHARE_TYPES = ("auto", "virtiofs", "9p")
SHARE_KEYS = (
    Key("host", "a folder on this machine, relative to devbox.yml", is_text, required=True),
    Key("guest", "an absolute path in the VM other than /",
        lambda v: is_text(v) and v.startswith("/") and bool(v.strip("/")), required=True),
    Key("to", "a list of group names or VM names (e.g. [web] or [web-1])",
        lambda v: isinstance(v, list) and bool(v) and all(is_text(n) for n in v), required=True),
    Key("read_only", "true or false", lambda v: isinstance(v, bool), default=False),
    Key("type", f"one of {', '.join(SHARE_TYPES)}", lambda v: v in SHARE_TYPES, default="auto"),
)
SHARE_EXAMPLE = "e.g. `- {host: src, guest: /srv/app, to: [web]}`"


@dataclass(frozen=True)
class GroupRule:
    count: int | None = None
    keep_distinct: str | None = None
    memory: int | None = None
    cpus: int | None = None
    exclude: bool = False


@dataclass(frozen=True)
class SharedFolder:
    """One `shared_folders` entry: ``host`` as written (relative to devbox.yml unless absolute), ``to`` the
    groups or VM names it goes to."""
    host: str
    guest: str
    to: tuple[str, ...]
    read_only: bool = False
    type: str = "auto"
    index: int = 0                            # its place in the list, for messages (`shared_folders[0].host`)

    @property
    def where(self) -> str:
        return f"shared_folders[{self.index}]"


@dataclass(frozen=True)
class Config:
    path: Path | None = None                  # None: no devbox.yml, defaults only
    inventory: str | None = None              # as written, relative to devbox.yml
    playbook: str = "playbooks/site.yml"
    provider: str = "libvirt"
    box: str = DEFAULT_BOX
    libvirt_uri: str | None = None            # a remote hypervisor; None means the local default
    network: str = DEFAULT_NETWORK
    memory: int = DEFAULT_MEMORY
    cpus: int = DEFAULT_CPUS
    ignore_groups: tuple[str, ...] = ()
    groups: Mapping[str, GroupRule] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    allow_inventory_scripts: bool = False
    not_secret: tuple[str, ...] = ()          # secret-like variable names whose production values are kept
    include_hosts: tuple[str, ...] = ()       # host names/patterns that get a VM whatever their connection type
    keep_host_vars: tuple[str, ...] = ()      # `host_vars: keep:`: host-level variables copied to the VM
    keep_environment_groups: tuple[str, ...] = ()   # `environment_groups: keep:`: environment groups VMs join
    converged_snapshot: bool = True           # `snapshots: {converged: ...}`: keep a snapshot after full runs
    budget_memory: int | None = None          # MiB the VMs may take together; None: this machine's memory decides
    shared_folders: tuple[SharedFolder, ...] = ()
    domain: str = DEFAULT_DOMAIN              # `names: {domain: ...}`: the VMs are `<vm>.<domain>` on the host
    hypervisors: tuple[Hypervisor, ...] = ()  # libvirt hosts the VMs are spread over; (): one, as `libvirt.uri` says
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def inventory_path(self) -> Path | None:
        """The production inventory, resolved against the folder of devbox.yml."""
        if self.inventory is None:
            return None
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.inventory)

    def rule(self, group: str) -> GroupRule:
        return self.groups.get(group, GroupRule())


def load_config(path: str | Path, *, required: bool = False) -> Config:
    """Load devbox.yml; a missing file means the defaults unless ``required``."""
    path = Path(path)
    if os.path.islink(path) and not path.exists():
        try:
            os.stat(path)
        except OSError as exc:
            what = "a symlink loop" if exc.errno == errno.ELOOP else f"a broken symlink (to {os.readlink(path)})"
            raise ConfigError(str(path), [f"is {what}"]) from None
    if path.is_dir():
        raise ConfigError(str(path), ["is a directory, not a file"])
    if not path.exists():
        if required:
            raise ConfigError(str(path), ["file not found"], hint="run `devbox init --inventory PATH` to create it")
        return Config(path=None)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(str(path), [f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["not a UTF-8 text file"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read: {exc.strerror}"]) from None
    return parse_config(data, path)


def parse_config(data: Any, path: Path | None) -> Config:
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["the top level must be a mapping of settings"])

    known = {"inventory", "playbook", "provider", "box", "libvirt", "network", "defaults", "ignore_groups",
             "groups", "vars", "allow_inventory_scripts", "not_secret", "include_hosts", "host_vars",
             "environment_groups", "snapshots", "budget", "shared_folders", "names", "hypervisors", *EXTENSION_KEYS}
    for key in data:
        if key not in known:
            problems.append(f"unknown key `{key}` (known: {', '.join(sorted(known))})")

    values: dict[str, Any] = {}
    for key in ("inventory", "playbook", "box"):
        if key in data:
            if is_text(data[key]):
                values[key] = data[key]
            else:
                problems.append(f"`{key}` must be a non-empty string")
    if "provider" in data:
        if data["provider"] in PROVIDERS:
            values["provider"] = data["provider"]
        else:
            problems.append(f"`provider` must be one of {', '.join(PROVIDERS)} (got {data['provider']!r})")
    if "libvirt" in data:
        libvirt = data["libvirt"]
        if not isinstance(libvirt, dict):
            problems.append("`libvirt` must be a mapping (e.g. `uri: qemu+ssh://user@hypervisor/system`)")
        else:
            for key in libvirt:
                if key != "uri":
                    problems.append(f"unknown key `libvirt.{key}` (known: uri)")
            if "uri" in libvirt:
                if libvirt["uri"] is None or is_text(libvirt["uri"]):
                    values["libvirt_uri"] = libvirt["uri"]
                else:
                    problems.append("`libvirt.uri` must be a libvirt connection URI string")
    if "network" in data:
        problem = _network_problem(data["network"])
        if problem:
            problems.append(problem)
        else:
            values["network"] = str(ipaddress.IPv4Network(data["network"], strict=False))
    if "defaults" in data:
        defaults = data["defaults"]
        if not isinstance(defaults, dict):
            problems.append("`defaults` must be a mapping with `memory` and/or `cpus`")
        else:
            for key in defaults:
                if key not in ("memory", "cpus"):
                    problems.append(f"unknown key `defaults.{key}` (known: cpus, memory)")
            for key in ("memory", "cpus"):
                if key in defaults:
                    problem = _resource_problem(f"defaults.{key}", key, defaults[key])
                    if problem:
                        problems.append(problem)
                    else:
                        values[key] = defaults[key]
    if "ignore_groups" in data:
        ignore = data["ignore_groups"]
        if isinstance(ignore, list) and all(is_text(g) for g in ignore):
            values["ignore_groups"] = tuple(ignore)
        else:
            problems.append("`ignore_groups` must be a list of group names")
    if "groups" in data:
        rules, rule_problems = _parse_group_rules(data["groups"])
        problems.extend(rule_problems)
        values["groups"] = rules
    if "vars" in data:
        if isinstance(data["vars"], dict) and all(isinstance(k, str) for k in data["vars"]):
            values["vars"] = dict(data["vars"])
        elif data["vars"] is not None:
            problems.append("`vars` must be a mapping of variable names to development values")
    if "allow_inventory_scripts" in data:
        if isinstance(data["allow_inventory_scripts"], bool):
            values["allow_inventory_scripts"] = data["allow_inventory_scripts"]
        else:
            problems.append("`allow_inventory_scripts` must be true or false")
    if "not_secret" in data:
        names = data["not_secret"]
        if isinstance(names, list) and all(is_text(n) for n in names):
            values["not_secret"] = tuple(names)
        elif names is not None:
            problems.append("`not_secret` must be a list of variable names (their production values are kept)")
    if "include_hosts" in data:
        names = data["include_hosts"]
        if isinstance(names, list) and all(is_text(n) for n in names):
            values["include_hosts"] = tuple(names)
        elif names is not None:
            problems.append("`include_hosts` must be a list of host names or patterns (web*, db[12]) that get a VM "
                            "whatever their connection type")
    for key, field_name, what in (("host_vars", "keep_host_vars", "host-level variable names copied to the VM"),
                                  ("environment_groups", "keep_environment_groups",
                                   "environment groups the VMs join")):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            problems.append(f"`{key}` must be a mapping with `keep:` (a list of {what})")
            continue
        for sub in section:
            if sub != "keep":
                problems.append(f"unknown key `{key}.{sub}` (known: keep)")
        keep = section.get("keep")
        if isinstance(keep, list) and all(is_text(n) for n in keep):
            values[field_name] = tuple(keep)
        elif keep is not None:
            problems.append(f"`{key}.keep` must be a list of {what}")
    if "snapshots" in data:
        snapshots = data["snapshots"]
        if snapshots is None:
            pass
        elif not isinstance(snapshots, dict):
            problems.append("`snapshots` must be a mapping (e.g. `converged: false`)")
        else:
            for key in snapshots:
                if key != "converged":
                    problems.append(f"unknown key `snapshots.{key}` (known: converged)")
            if "converged" in snapshots:
                if isinstance(snapshots["converged"], bool):
                    values["converged_snapshot"] = snapshots["converged"]
                else:
                    problems.append("`snapshots.converged` must be true or false")
    if "budget" in data:
        budget = data["budget"]
        if not isinstance(budget, dict):
            problems.append("`budget` must be a mapping (e.g. `memory_mb: 16384`)")
        else:
            for key in budget:
                if key != "memory_mb":
                    problems.append(f"unknown key `budget.{key}` (known: memory_mb)")
            if "memory_mb" in budget:
                problem = _resource_problem("budget.memory_mb", "memory", budget["memory_mb"])
                if problem:
                    problems.append(problem)
                else:
                    values["budget_memory"] = budget["memory_mb"]
    if "shared_folders" in data:
        folders, folder_problems = _parse_shared_folders(data["shared_folders"])
        problems.extend(folder_problems)
        values["shared_folders"] = folders
    if "names" in data:
        names_section = data["names"]
        if names_section is None:
            pass
        elif not isinstance(names_section, dict):
            problems.append(f"`names` must be a mapping (e.g. `domain: {DEFAULT_DOMAIN}`)")
        else:
            for key in names_section:
                if key != "domain":
                    problems.append(f"unknown key `names.{key}` (known: domain)")
            if "domain" in names_section:
                domain = names_section["domain"]
                if isinstance(domain, str) and len(domain) <= 253 and re.fullmatch(DOMAIN_PATTERN, domain):
                    values["domain"] = domain.lower()
                else:
                    problems.append(f"`names.domain` must be a DNS domain like {DEFAULT_DOMAIN} (labels of letters, "
                                    f"digits and inner hyphens, no trailing dot; got {domain!r})")
    if "hypervisors" in data:
        found, hv_problems = parse_hypervisors(data["hypervisors"], values.get("network", DEFAULT_NETWORK))
        problems.extend(hv_problems)
        values["hypervisors"] = found
        if found and values.get("libvirt_uri"):
            problems.append("`libvirt.uri` and `hypervisors` both say where the VMs run: list the hypervisor "
                            "under `hypervisors` and remove `libvirt.uri`")
    values["extensions"] = {k: data[k] for k in EXTENSION_KEYS if k in data}
    if "environments" in data:
        problems.extend(validate_environments(data["environments"]))
    if "smoke" in data:
        problems.extend(validate_smoke(data["smoke"]))
    if "parity" in data:
        problems.extend(parity_problems(data["parity"]))

    if problems:
        raise ConfigError(str(path or CONFIG_NAME), problems)
    return Config(path=path, **values)


def _parse_group_rules(groups: Any) -> tuple[dict[str, GroupRule], list[str]]:
    if groups is None:
        return {}, []
    if not isinstance(groups, dict):
        return {}, ["`groups` must be a mapping of group name to rules (count, keep_distinct, memory, cpus, exclude)"]
    rules: dict[str, GroupRule] = {}
    problems: list[str] = []
    for name, rule in groups.items():
        where = f"groups.{name}"
        if rule is None:
            rules[str(name)] = GroupRule()
            continue
        if not isinstance(rule, dict):
            problems.append(f"`{where}` must be a mapping (keys: {', '.join(GROUP_RULE_KEYS)})")
            continue
        values: dict[str, Any] = {}
        for key, value in rule.items():
            if key not in GROUP_RULE_KEYS:
                problems.append(f"unknown key `{where}.{key}` (known: {', '.join(GROUP_RULE_KEYS)})")
            elif key == "count":
                if is_int(value) and value >= 1:
                    values[key] = value
                else:
                    problems.append(f"`{where}.count` must be a whole number of VMs, at least 1 (got {value!r})")
            elif key == "keep_distinct":
                if is_text(value):
                    values[key] = value
                else:
                    problems.append(f"`{where}.keep_distinct` must be the name of a host variable")
            elif key == "exclude":
                if isinstance(value, bool):
                    values[key] = value
                else:
                    problems.append(f"`{where}.exclude` must be true or false")
            else:
                problem = _resource_problem(f"{where}.{key}", key, value)
                if problem:
                    problems.append(problem)
                else:
                    values[key] = value
        rules[str(name)] = GroupRule(**values)
    return rules, problems


def _parse_shared_folders(entries: Any) -> tuple[tuple[SharedFolder, ...], list[str]]:
    """The structure of `shared_folders`; whether each host folder exists is checked when the Vagrantfile is
    rendered (see provisioner.plan.shares), where the project folder is known."""
    checked, problems = check_entries(entries, "shared_folders", SHARE_KEYS, what="folders to share",
                                      example=SHARE_EXAMPLE)
    folders: list[SharedFolder] = []
    for entry in checked:
        where, before = entry.where, len(problems)
        host, guest = entry.get("host"), entry.get("guest")
        if entry.ok("host") and not os.path.isabs(host) and os.path.normpath(host).split(os.sep)[0] == os.pardir:
            problems.append(f"`{where}.host` {host!r} leads out of the project folder: write a path inside it, "
                            f"or an absolute path to share a folder from elsewhere on purpose")
        if entry.ok("guest") and ("'" in guest or "\n" in guest):
            problems.append(f"`{where}.guest` must not contain quotes or line breaks (got {guest!r})")
        if entry.clean and len(problems) == before:
            folders.append(SharedFolder(host=host, guest=guest.rstrip("/"), to=tuple(entry.get("to")),
                                        read_only=entry.get("read_only"), type=entry.get("type"), index=entry.index))
    return tuple(folders), problems


def _resource_problem(where: str, kind: str, value: Any) -> str | None:
    if kind == "memory" and not (is_int(value) and value >= MIN_MEMORY):
        return f"`{where}` must be a whole number of MiB, at least {MIN_MEMORY} (got {value!r})"
    if kind == "cpus" and not (is_int(value) and value >= 1):
        return f"`{where}` must be a whole number of CPUs, at least 1 (got {value!r})"
    return None


def _network_problem(value: Any) -> str | None:
    try:
        net = ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return f"`network` must be an IPv4 network in CIDR form like {DEFAULT_NETWORK} (got {value!r})"
    if net.num_addresses < 16:
        return f"`network` {value} is too small: use a /28 or larger"
    return None
