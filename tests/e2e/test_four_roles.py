"""Issue 15, item 10 on real VMs: four service roles (web server, key-value cache, memory cache, load balancer),
each loading OS-specific variables with a templated include_vars, on three VMs (lb-1, web-1, cache-1).

The project is tests/data/incremental/four-roles-e2e: nginx, redis, memcached and haproxy from Debian's packages
(through the lab's apt proxy), the load-balancer play reading the web hosts' variables through hostvars.
`devbox up` converges it; the service answers through haproxy; a one-template edit of the load-balancer role makes
`devbox provision` run that role on lb-1 only (not every role on every VM, as before the fix); the service still
answers; `devbox provision --full` after it changes nothing anywhere. Every run uses --mitogen: which roles run
is devbox's decision, whatever the strategy, and the emulated VMs are slow.
"""
from __future__ import annotations

import re

import pytest

from helpers import INCREMENTAL, append

pytestmark = pytest.mark.lab

DATA = INCREMENTAL / "four-roles-e2e"
VMS = ("lb-1", "web-1", "cache-1")
ROW = re.compile(r"^\W*(lb-1|web-1|cache-1)\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)", re.M)
FETCH = ("python3 -c \"import urllib.request; "
         "print(urllib.request.urlopen('http://127.0.0.1/', timeout=20).read().decode())\"")
PING = ("python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', {port}), 10); "
        "s.sendall(b'{send}\\r\\n'); print(s.recv(100).decode())\"")


def recap(output: str) -> dict[str, dict[str, int]]:
    return {m[1]: dict(zip(("ok", "changed", "failed", "unreachable"), map(int, m.groups()[1:])))
            for m in ROW.finditer(output)}


def plan_rows(output: str) -> dict[str, str]:
    """VM -> what the plan table says it runs ("nothing", "everything" or role names)."""
    return {m[1]: m[2] for m in re.finditer(r"^\W*(lb-1|web-1|cache-1)\s*│\s*(\w+)", output, re.M)}


def test_load_balancer_template_edit_runs_only_the_load_balancer_role(devbox_project, timings):
    p = devbox_project
    p.copy_in(DATA / "prod", "prod")
    p.copy_in(DATA / "devbox.yml", "devbox.yml")
    p.copy_in(DATA / "playbooks", "playbooks")
    p.commit(".")
    p.devbox("init")

    with timings.measure("devbox up --mitogen (3 VMs, fresh, four roles converged)"):
        first = p.devbox("up", "--mitogen", timeout=2400)
    assert set(recap(first.stdout)) == set(VMS), first.stdout

    def healthy() -> None:
        page = p.devbox("ssh", "lb-1", "-c", FETCH).stdout
        assert "served by web-1" in page, page  # haproxy on lb-1 -> nginx on web-1
        assert "+PONG" in p.devbox("ssh", "cache-1", "-c", PING.format(port=6379, send="PING")).stdout
        assert "VERSION" in p.devbox("ssh", "cache-1", "-c", PING.format(port=11211, send="version")).stdout

    healthy()

    append(p.path / "playbooks/roles/haproxy/templates/haproxy.cfg.j2", "# tuned\n")
    dry = p.devbox("provision", "--dry-run")
    rows = plan_rows(dry.stdout)
    assert (rows["web-1"], rows["cache-1"]) == ("nothing", "nothing") and rows["lb-1"] != "nothing", dry.stdout
    assert "role haproxy" in dry.stdout and not re.search(r"role (nginx|redis|memcached)", dry.stdout), dry.stdout
    assert "include_vars" not in dry.stdout, dry.stdout  # the old reason for running every role everywhere
    with timings.measure("devbox provision --mitogen (haproxy template edited)"):
        out = p.devbox("provision", "--mitogen")
    ran = recap(out.stdout)
    assert set(ran) == {"lb-1"}, out.stdout
    assert ran["lb-1"]["changed"] >= 1 and ran["lb-1"]["failed"] == 0, out.stdout
    healthy()

    with timings.measure("devbox provision --full --mitogen (check)"):
        full = p.devbox("provision", "--full", "--mitogen", timeout=2400)
    counts = recap(full.stdout)
    assert {h: c["changed"] for h, c in counts.items()} == {h: 0 for h in VMS}, full.stdout
