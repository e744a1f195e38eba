"""Issue 15, item 10 on real VMs with upstream roles: DebOps 3.3.2's memcached and nginx roles, vendored unchanged
(tests/data/upstream-roles/debops, licence and origin in its SOURCE.yml), in a team's project
(tests/data/incremental/debops-e2e) on two VMs: cache-1 (memcached) and web-1 (nginx).

`devbox up` converges it from Debian's packages (through the lab's apt proxy); nginx answers on web-1 and
memcached answers web-1 on cache-1's address; a one-template edit of DebOps' nginx role makes `devbox provision`
run the nginx role on web-1 (and, by the planner's rule, memcached on cache-1: nginx's templates read other hosts'
facts through hostvars, which memcached's fact-refresh handler can set; tests/unit/test_upstream_roles.py says
why), changing only web-1; `devbox provision --full` after it changes nothing anywhere.
"""
from __future__ import annotations

import re

import pytest

from helpers import INCREMENTAL, TESTS, append

pytestmark = pytest.mark.lab

DATA = INCREMENTAL / "debops-e2e"
DEBOPS = TESTS / "data" / "upstream-roles" / "debops"
NGINX_CONF = "playbooks/collections/ansible_collections/debops/debops/roles/nginx/templates/etc/nginx/nginx.conf.j2"
VMS = ("web-1", "cache-1")
ROW = re.compile(r"^\W*(web-1|cache-1)\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)", re.M)
FETCH = ("python3 -c \"import urllib.request; "
         "print(urllib.request.urlopen('http://127.0.0.1/', timeout=20).read().decode())\"")
PING = ("python3 -c \"import socket; s = socket.create_connection(('{host}', {port}), 10); "
        "s.sendall(b'{send}\\r\\n'); print(s.recv(100).decode())\"")


def recap(output: str) -> dict[str, dict[str, int]]:
    return {m[1]: dict(zip(("ok", "changed", "failed", "unreachable"), map(int, m.groups()[1:])))
            for m in ROW.finditer(output)}


def plan_rows(output: str) -> dict[str, str]:
    """VM -> what the plan table says it runs ("nothing", "everything" or role names)."""
    return {m[1]: m[2] for m in re.finditer(r"^\W*(web-1|cache-1)\s*│\s*(\w+)", output, re.M)}


def test_debops_nginx_template_edit_changes_only_web_1(devbox_project, timings):
    p = devbox_project
    p.copy_in(DATA / "prod", "prod")
    p.copy_in(DATA / "devbox.yml", "devbox.yml")
    p.copy_in(DATA / "playbooks", "playbooks")
    p.copy_in(DEBOPS / "ansible_collections", "playbooks/collections/ansible_collections")
    p.commit(".")
    p.devbox("init")

    with timings.measure("devbox up --mitogen (2 VMs, fresh, DebOps memcached and nginx converged)"):
        first = p.devbox("up", "--mitogen", timeout=2400)
    assert set(recap(first.stdout)) == set(VMS), first.stdout
    cache = re.search(r"192\.168\.56\.\d+", p.devbox("ssh", "cache-1", "-c", "hostname -I").stdout)
    assert cache, "cache-1 has no address on the devbox network"

    def healthy() -> None:
        page = p.devbox("ssh", "web-1", "-c", FETCH).stdout
        assert "nginx" in page.lower(), page  # DebOps' welcome page
        version = p.devbox("ssh", "web-1", "-c", PING.format(host=cache[0], port=11211, send="version")).stdout
        assert "VERSION" in version, version

    healthy()

    append(p.path / NGINX_CONF, "# tuned\n")
    dry = p.devbox("provision", "--dry-run")
    rows = plan_rows(dry.stdout)
    assert rows["web-1"] not in ("nothing", "everything"), dry.stdout
    assert "debops.debops.nginx" in dry.stdout and "nginx.conf.j2 changed" in dry.stdout, dry.stdout
    with timings.measure("devbox provision --mitogen (nginx template edited)"):
        out = p.devbox("provision", "--mitogen", timeout=2400)
    ran = recap(out.stdout)
    assert ran["web-1"]["changed"] >= 1 and ran["web-1"]["failed"] == 0, out.stdout
    assert ran.get("cache-1", {"changed": 0})["changed"] == 0, out.stdout
    healthy()

    with timings.measure("devbox provision --full --mitogen (check)"):
        full = p.devbox("provision", "--full", "--mitogen", timeout=2400)
    counts = recap(full.stdout)
    assert {h: c["changed"] for h, c in counts.items()} == {h: 0 for h in VMS}, full.stdout
