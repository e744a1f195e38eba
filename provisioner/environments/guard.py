"""The production guard: before devbox connects to any host of an environment, none of them may be production.

Every path that reaches an environment's hosts (``provision --env``, ``trust``, ``status --env``, ``parity
--against``, ``parity --export --env``) gets its hosts from ``guarded_hosts``, and nowhere else.

Comparing the inventories' text is not enough: ``127.1``, ``2130706433``, ``0x7f000001``, ``127.0.0.01`` and
``::ffff:127.0.0.1`` are all 127.0.0.1 to ssh, a name may resolve to a production address, an ssh_config may map
a harmless-looking name to one, and a ``ProxyJump`` opens a connection to its jump host before the target. So
each host, on both sides, is resolved the way ssh will resolve it:

1. ``ssh -G`` with the inventory's own ssh arguments (``-F``, ``-J``, ``-o``) gives the ``hostname``, ``port``
   and ``proxyjump`` ssh would use (the user's ssh_config applies, as it does when Ansible connects);
2. that hostname is resolved with ``getaddrinfo`` (glibc reads the numeric spellings as ``inet_aton`` does, as
   ssh does), and every address is normalised with ``ipaddress`` (IPv4-mapped IPv6 becomes IPv4);
3. every jump host of the chain is resolved the same way and counts as a host the command connects to.

A target is refused when its name, its hostname or any of its addresses (or those of any hop) is also one of a
production host's or of one of its jump hosts. The production inventory must be configured (``inventory:`` in
devbox.yml) and readable: when it is not, nothing runs, because the guard could not tell.
"""
from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from provisioner.adapters import process
from provisioner.environments.model import Environment, TargetHost, normalize_address, read_target_hosts
from provisioner.errors import DevboxError, SafetyError

MAX_HOPS = 8          # a longer ProxyJump chain (or a loop in ssh_config) is refused rather than followed
SSH_G_TIMEOUT = 10.0
WORKERS = 8


@dataclass(frozen=True)
class Endpoint:
    """One machine a connection reaches: the name it was given, and what ssh will connect to."""

    spec: str                    # as written: inventory address, or a jump spec
    hostname: str                # after ssh_config
    port: int
    addresses: frozenset[str]    # resolved and normalised; empty when the name does not resolve here

    def identities(self) -> frozenset[str]:
        return frozenset({normalize_address(self.spec), normalize_address(self.hostname)}) | self.addresses

    def describe(self) -> str:
        """``10.0.0.1:22``, ``127.1 = 127.0.0.1:22``, ``db -> 127.0.0.5:22`` (ssh_config), ``name (unresolved):22``."""
        text = self.spec
        if normalize_address(self.hostname) != normalize_address(self.spec):
            text += f" -> {self.hostname}"
        if not self.addresses:
            text += " (unresolved)"
        elif self.addresses != {normalize_address(self.hostname)}:
            text += " = " + ", ".join(sorted(self.addresses))
        return f"{text}:{self.port}"


@dataclass(frozen=True)
class Reach:
    """How a host is reached: the target endpoint and the jump hosts on the way (first hop first)."""

    host: TargetHost
    target: Endpoint
    jumps: tuple[Endpoint, ...]

    def endpoints(self) -> tuple[Endpoint, ...]:
        return (*self.jumps, self.target)

    def identities(self) -> frozenset[str]:
        found = {normalize_address(self.host.name)}
        for endpoint in self.endpoints():
            found |= endpoint.identities()
        return frozenset(found)


# --- resolution -------------------------------------------------------------------------------------------

Resolver = Callable[[str], frozenset[str]]


def normalize_ip(text: str) -> str | None:
    """An address as one canonical string (IPv4-mapped IPv6 as IPv4), or None when ``text`` is no address."""
    try:
        address = ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def numeric_addresses(host: str) -> frozenset[str] | None:
    """The address(es) ``host`` is when read as a number the way glibc (and so ssh) reads it: ``127.1``,
    ``2130706433``, ``0x7f000001``, ``127.0.0.01`` (octal), ``::ffff:127.0.0.1``. None: not numeric. No DNS."""
    host = str(host).strip().strip("[]")
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return frozenset(filter(None, (normalize_ip(info[4][0]) for info in infos)))


def resolve_addresses(host: str) -> frozenset[str]:
    """Every address ``host`` resolves to here (empty when it does not resolve), normalised."""
    numeric = numeric_addresses(host)
    if numeric is not None:
        return numeric
    try:
        infos = socket.getaddrinfo(str(host).strip().rstrip("."), None)
    except (socket.gaierror, UnicodeError, ValueError):
        return frozenset()
    return frozenset(filter(None, (normalize_ip(info[4][0]) for info in infos)))


def parse_ssh_G(text: str) -> dict[str, str]:
    """The first value of each key of ``ssh -G`` output (lower-case keys)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key.lower() not in found:
            found[key.lower()] = value.strip()
    return found


def split_jumps(value: str | None) -> list[str]:
    """A ProxyJump value as its hops, first hop first; 'none' (or nothing) is no hop."""
    if not value or value.strip().lower() == "none":
        return []
    return [hop.strip() for hop in value.split(",") if hop.strip()]


def jump_spec(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (``[v6]:port`` too, as ssh -G prints it) -> (user, host, port or None)."""
    user, _, rest = spec.rpartition("@")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    return (user or None), host, (int(port) if port.isdigit() else None)


def config_file_arg(ssh_args: str) -> list[str]:
    """The ``-F FILE`` of the inventory's ssh arguments (also used for the jump hosts, as ssh does)."""
    import shlex

    try:
        words = shlex.split(ssh_args or "")
    except ValueError:
        return []
    found: list[str] = []
    for i, word in enumerate(words):
        if word == "-F" and i + 1 < len(words):
            found = ["-F", words[i + 1]]
        elif word.startswith("-F") and len(word) > 2:
            found = ["-F", word[2:]]
    return found


class SshConfigReader:
    """``ssh -G`` for one host with given arguments; falls back to the arguments alone when ssh is missing."""

    def __call__(self, host: str, port: int | None, args: Sequence[str]) -> dict[str, str]:
        argv = ["ssh", "-G", *args, *(["-p", str(port)] if port else []), "--", host]
        try:
            result = process.run(argv, timeout=SSH_G_TIMEOUT)
        except DevboxError:  # ssh is not installed: nothing rewrites the name
            return {}
        if not result.ok:
            raise SafetyError(f"`ssh -G` cannot read how ssh would reach {host}: {result.stderr.strip()[:300]}",
                              "fix the ssh configuration (or the inventory's ssh arguments) first")
        return parse_ssh_G(result.stdout)


def reach_of(host: TargetHost, *, ssh_config: Callable = SshConfigReader(),
             resolve: Resolver | None = None) -> Reach:
    """How ssh will reach ``host``: its endpoint and every jump host, resolved and normalised."""
    import shlex

    resolve = resolve or resolve_addresses
    try:
        args = shlex.split(host.ssh_args or "")
    except ValueError:
        args = []
    config = ssh_config(host.address, host.port, args)
    target = _endpoint(host.address, config, host.port, resolve)
    jumps: list[Endpoint] = []
    pending = split_jumps(config.get("proxyjump"))
    base_args = config_file_arg(host.ssh_args)
    seen = 0
    while pending:
        seen += 1
        if seen > MAX_HOPS:
            raise SafetyError(f"{host.name}: the ProxyJump chain has more than {MAX_HOPS} hops (a loop in ssh_config?)",
                              "fix the ssh configuration of this host")
        spec = pending.pop(0)
        _, hop_host, hop_port = jump_spec(spec)
        hop_config = ssh_config(hop_host, hop_port, base_args)
        jumps.append(_endpoint(spec, hop_config, hop_port or 22, resolve, name=hop_host))
        # a jump host reached through its own ProxyJump: those hops come first, but they are hops all the same
        pending = split_jumps(hop_config.get("proxyjump")) + pending
    return Reach(host, target, tuple(jumps))


def _endpoint(spec: str, config: dict, port: int, resolve: Resolver, *, name: str | None = None) -> Endpoint:
    hostname = config.get("hostname") or name or spec
    try:
        port = int(config.get("port") or port)
    except ValueError:
        pass
    return Endpoint(spec=name or spec, hostname=hostname, port=port, addresses=frozenset(resolve(hostname)))


def reaches(hosts: Iterable[TargetHost], **kwargs) -> list[Reach]:
    hosts = list(hosts)
    if len(hosts) <= 1:
        return [reach_of(h, **kwargs) for h in hosts]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(hosts))) as pool:
        return list(pool.map(lambda h: reach_of(h, **kwargs), hosts))


# --- the comparison ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Collision:
    target: Reach
    production: Reach
    shared: frozenset[str]

    def describe(self, production_inventory: Path) -> str:
        t, p = self.target, self.production
        hops = [e for e in t.endpoints() if e.identities() & self.shared]
        how = "through jump host " if hops and hops[-1] is not t.target else ""
        where = p.host.source or str(production_inventory)
        return (f"{t.host.name} ({how}{', '.join(e.describe() for e in hops) or t.host.address}) reaches "
                f"production host {p.host.name} ({p.target.describe()}) of {where} [same: "
                f"{', '.join(sorted(self.shared))}]")


def collisions(targets: Sequence[Reach], production: Sequence[Reach]) -> list[Collision]:
    """Every target (itself or any jump host on its way) that is a production host or a production jump host."""
    found = []
    for target in targets:
        ids = target.identities()
        for prod in production:
            shared = ids & prod.identities()
            if shared:
                found.append(Collision(target, prod, frozenset(shared)))
                break
    return found


def guarded_hosts(env: Environment, *, production_inventory: Path | None, allow_scripts: bool,
                  limit: str | None = None, ssh_config: Callable | None = None,
                  resolve: Resolver | None = None) -> tuple[TargetHost, ...]:
    """The hosts of ``env``, once it is known that none of them (nor any jump host on the way) is a production
    host. THE gate: every command that connects to an environment takes its hosts from here.

    Reads both inventories without running any inventory code (unless ``allow_scripts``), resolves both sides
    the way ssh will (see the module's docstring). Raises ``SafetyError`` naming each production host reached
    and the file it is in; also when there is no production inventory to compare with.
    """
    if env.is_dev:
        raise DevboxError("the development VMs are not guarded here: they have no inventory of their own")
    hosts = read_target_hosts(env.inventory, limit=limit, allow_scripts=allow_scripts)
    if env.is_production:  # production itself, only when devbox.yml allows it (select_environment checked)
        return hosts
    if production_inventory is None:
        raise SafetyError(f"devbox cannot check that environment '{env.name}' is not production: devbox.yml names "
                          f"no production inventory; nothing was run",
                          "set `inventory:` in devbox.yml to the production inventory")
    production_inventory = Path(production_inventory)
    try:
        production = read_target_hosts(production_inventory, allow_scripts=allow_scripts)
    except DevboxError as exc:
        raise SafetyError(f"the production inventory {production_inventory} cannot be read, so devbox cannot check "
                          f"that environment '{env.name}' is not production; nothing was run:\n  {exc.message}",
                          exc.hint or "fix the production inventory (`inventory:` in devbox.yml)") from exc
    kwargs = {"ssh_config": ssh_config or SshConfigReader(), "resolve": resolve}
    found = collisions(reaches(hosts, **kwargs), reaches(production, **kwargs))
    if found:
        lines = "\n".join(f"  - {c.describe(production_inventory)}" for c in found)
        raise SafetyError(f"environment '{env.name}' reaches hosts of the production inventory; nothing was run:\n"
                          f"{lines}",
                          f"fix the inventory of '{env.name}' ({env.inventory}); devbox never runs another "
                          f"environment's commands against production")
    return hosts
