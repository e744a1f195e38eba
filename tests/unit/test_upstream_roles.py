"""Issue 15, item 10 on upstream roles: DebOps' memcached and nginx roles (vendored unchanged, with the DebOps
roles they import and the collection plugins they use; tests/data/upstream-roles/debops/SOURCE.yml) in a team's
project (tests/data/incremental/debops-e2e). The planner loads them with Ansible's own loader, from the
`collections/` folder next to the playbook, as ansible-playbook does.

What the planner decides on a one-template edit, and why:
- the edited role runs again on its VMs, with its play's own content (no include_vars or uncertain name left);
- the other VM's role runs as well: nginx's upstream templates read `hostvars[host].ansible_fqdn` and
  `ansible_all_ipv4_addresses`, and every DebOps role imports global_handlers, whose "Refresh host facts" handler
  runs `setup`, which can set those facts. The templates only read hosts `in play_hosts` (nginx's own play), a
  guard the planner does not model, so it keeps both roles: more than needed, never less.
No VM converges this project yet: DebOps' nginx role needs community.general's `flattened` lookup at run time,
and devbox's controller has ansible-core alone.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import INCREMENTAL, TESTS, append, copy_project
from provisioner.incremental.changes import scan_project
from provisioner.incremental.ledger import record_run
from provisioner.incremental.subset import plan_incremental

FIXTURE = INCREMENTAL / "debops-e2e"
DEBOPS = TESTS / "data" / "upstream-roles" / "debops"
ROLES = "playbooks/collections/ansible_collections/debops/debops/roles"
MEMCACHED = "Manage memcached server"
NGINX = "Manage nginx webserver"
INVENTORY = """[web]
web-1 ansible_host=192.168.56.11

[cache]
cache-1 ansible_host=192.168.56.12
"""


def debops_project(dest: Path) -> Path:
    """The fixture project with the vendored collection next to its playbook and a development inventory."""
    project = copy_project(FIXTURE, dest)
    shutil.copytree(DEBOPS / "ansible_collections", project / "playbooks/collections/ansible_collections")
    (project / "inventory").mkdir()
    (project / "inventory/hosts.ini").write_text(INVENTORY)
    shutil.copytree(project / "prod/group_vars", project / "inventory/group_vars")
    return project


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return debops_project(tmp_path_factory.mktemp("debops") / "project")


@pytest.fixture
def project(pristine, tmp_path):
    return copy_project(pristine, tmp_path / "project")


def scan(project: Path):
    return scan_project(project / "playbooks/site.yml", project / "inventory", project_dir=project, extra_vars={})


def plan_after(project: Path, change):
    before = scan(project)
    ledger = record_run({}, before, {vm: {u.key for u in before.units_for(vm)} for vm in before.vms})
    change(project)
    return plan_incremental(ledger, scan(project))


def selected(plan) -> dict[str, list[str]]:
    return {v.vm: sorted(plan.selected(v.vm)) for v in plan.vms if not v.nothing}


def test_ansible_playbook_parses_the_project_with_the_vendored_collection(pristine):
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    out = subprocess.run([str(ansible_playbook), "-i", "inventory", "playbooks/site.yml", "--list-tasks"],
                         cwd=pristine, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "debops.debops.memcached : Configure memcached" in out.stdout, out.stdout
    assert "debops.debops.nginx : Setup /etc/nginx/nginx.conf" in out.stdout, out.stdout


def test_collection_roles_and_the_roles_they_import_are_resolved(pristine):
    digests = scan(pristine)
    units = {u.key: u for u in digests.units_for("web-1")}
    nginx = units[f"{NGINX}/debops.debops.nginx"]
    assert nginx.uncertain == (), nginx.uncertain  # global_handlers, secret, ansible_plugins found by short name
    imported = {"debops.debops.global_handlers", "debops.debops.secret", "debops.debops.ansible_plugins"}
    assert imported <= nginx.role_names
    assert "role debops.debops.secret: tasks/main.yml" in digests.inputs_for("web-1", nginx)
    memcached = {u.key: u for u in digests.units_for("cache-1")}[f"{MEMCACHED}/debops.debops.memcached"]
    assert memcached.uncertain == () and "debops.debops.global_handlers" in memcached.role_names


def test_nginx_template_edit_runs_nginx_on_web_1_and_memcached_for_its_fact_handler(project):
    plan = plan_after(project, lambda p: append(p / ROLES / "nginx/templates/etc/nginx/nginx.conf.j2", "# tuned\n"))
    assert not any(v.everything for v in plan.vms), plan.to_json()
    assert selected(plan) == {"web-1": [NGINX, f"{NGINX}/debops.debops.nginx"],
                              "cache-1": [MEMCACHED, f"{MEMCACHED}/debops.debops.memcached"]}
    web = {c.unit: c.reasons for c in plan.vm("web-1").units}
    assert web[f"{NGINX}/debops.debops.nginx"] == (
        "role debops.debops.nginx: templates/etc/nginx/nginx.conf.j2 changed",)
    (why,) = {c.unit: c.reasons for c in plan.vm("cache-1").units}[f"{MEMCACHED}/debops.debops.memcached"]
    assert "setup in role debops.debops.global_handlers sets facts" in why and "ansible_fqdn" in why, why


def test_memcached_template_edit_runs_memcached_on_cache_1_and_nginx_reading_its_facts(project):
    plan = plan_after(project, lambda p: append(p / ROLES / "memcached/templates/etc/memcached.conf.j2", "# x\n"))
    assert not any(v.everything for v in plan.vms), plan.to_json()
    cache = {c.unit: c.reasons for c in plan.vm("cache-1").units}
    assert cache == {MEMCACHED: (f"runs with role debops.debops.memcached (play {MEMCACHED})",),
                     f"{MEMCACHED}/debops.debops.memcached":
                         ("role debops.debops.memcached: templates/etc/memcached.conf.j2 changed",)}
    assert selected(plan)["web-1"] == [NGINX, f"{NGINX}/debops.debops.nginx"]


def test_edit_of_a_role_nginx_imports_reruns_nginx_and_no_edit_runs_nothing(project):
    plan = plan_after(project, lambda p: append(p / ROLES / "secret/defaults/main.yml", "# x\n"))
    assert selected(plan)["web-1"] == [NGINX, f"{NGINX}/debops.debops.nginx"], plan.to_json()
    web = {c.unit: c.reasons for c in plan.vm("web-1").units}
    assert web[f"{NGINX}/debops.debops.nginx"] == ("role debops.debops.secret: defaults/main.yml changed",)
    assert plan_after(project, lambda p: None).nothing_to_do


def test_collection_plugin_edit_reruns_everything(project):
    plan = plan_after(project, lambda p: append(p / ROLES / "../plugins/lookup/template_src.py", "# x\n"))
    assert all(v.everything for v in plan.vms), plan.to_json()
    assert any("plugins/lookup/template_src.py" in r for r in plan.vm("web-1").reasons()), plan.to_json()


def test_devbox_chain_playbook_finds_the_collection_next_to_the_team_playbook(pristine, tmp_path):
    """devbox runs the team's playbook through a generated playbook importing it (then its own stamp playbook);
    ansible-playbook looks for collections only next to the playbook it is given, so the chain links them."""
    from provisioner.adapters.playbook_runner import _chain

    stamp = tmp_path / "stamp.yml"
    stamp.write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
    chain = _chain(tmp_path, pristine / "playbooks/site.yml", [stamp])
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    out = subprocess.run([str(ansible_playbook), "-i", str(pristine / "inventory"), str(chain), "--list-tasks"],
                         cwd=pristine / "playbooks", capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "debops.debops.nginx : Setup /etc/nginx/nginx.conf" in out.stdout, out.stdout
    _chain(tmp_path, stamp, [])  # a playbook with no collections next to it: the link goes
    assert not (tmp_path / "collections").exists()
