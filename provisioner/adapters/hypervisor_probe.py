"""Asking a hypervisor whether it answers, and this machine whether it routes to a subnet (`devbox doctor`).

Behind a small interface so the doctor's logic is unit-tested with a fake; the real probe runs `virsh` and `ip`,
optionally inside a network namespace (``enter``: e.g. ``ip netns exec NS``, for the lab).
"""
from __future__ import annotations

import ipaddress
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from provisioner.adapters import process
from provisioner.errors import DevboxError


@dataclass(frozen=True)
class Answer:
    ok: bool
    detail: str     # the hypervisor's version line, or the tail of the error


@dataclass(frozen=True)
class Route:
    destination: str   # e.g. 10.231.1.0/24
    via: str | None    # the gateway, None for a directly connected network
    device: str | None


class HypervisorProbe(ABC):
    @abstractmethod
    def libvirt_version(self, uri: str, *, timeout: float = 30) -> Answer:
        """`virsh -c URI version`: does libvirt answer at ``uri``?"""

    @abstractmethod
    def routes_to(self, address: str) -> list[Route]:
        """This machine's routes that cover ``address``, the default route left out."""

    @abstractmethod
    def resolve(self, host: str) -> str | None:
        """``host``'s IPv4 address (itself if it is one); None if it does not resolve."""


def parse_routes(text: str) -> list[Route]:
    """``ip -4 -o route show match ADDRESS`` -> routes, without the default route."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] == "default":
            continue
        try:
            destination = str(ipaddress.IPv4Network(words[0], strict=False))
        except ValueError:
            continue
        if destination == "0.0.0.0/0":
            continue

        def after(key: str) -> str | None:
            return words[words.index(key) + 1] if key in words[:-1] else None

        routes.append(Route(destination, after("via"), after("dev")))
    return routes


class RealHypervisorProbe(HypervisorProbe):
    def __init__(self, *, enter: Sequence[str] = (), log_path: Path | None = None):
        self.enter = list(enter)
        self.log_path = log_path

    def _run(self, argv: list[str], timeout: float) -> process.ProcessResult | None:
        try:
            return process.run([*self.enter, *argv], timeout=timeout, log_path=self.log_path)
        except DevboxError:   # not installed, or timed out
            return None

    def libvirt_version(self, uri, *, timeout=30):
        result = self._run(["virsh", "-c", uri, "version"], timeout)
        if result is None:
            return Answer(False, f"`virsh -c {uri} version` did not answer within {timeout:.0f} s (or virsh is missing)")
        if not result.ok:
            return Answer(False, result.tail(3))
        line = next((l for l in result.stdout.splitlines() if l.startswith("Running hypervisor")), "answers")
        return Answer(True, line.strip())

    def routes_to(self, address):
        result = self._run(["ip", "-4", "-o", "route", "show", "match", address], 10)
        return parse_routes(result.stdout) if result is not None and result.ok else []

    def resolve(self, host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            pass
        try:
            return socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
        except (OSError, IndexError):
            return None
