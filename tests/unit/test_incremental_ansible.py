"""Real ansible-runner runs on localhost: after an incremental run, a full run changes nothing.

Three fake inventory hosts (web-1, web-2, db-1) all use the local connection and write under the project's
``out/<host>/``. For each kind of change: apply the whole playbook, record the ledger, change one thing, run what
devbox plans (the generated subset playbook), record, then run the whole playbook again and require changed=0 on
every host: nothing that should have run was skipped. A control proves the check can fail.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from helpers import INCREMENTAL, add_cache_role, append, copy_project, replace, write
from provisioner.incremental.reprovision import prepare, record

pytestmark = pytest.mark.ansible

FIXTURE = INCREMENTAL / "project"


def run_playbook(project: Path, playbook: Path, tmp: Path) -> tuple[dict, list[dict]]:
    import ansible_runner

    (tmp / "runner").mkdir(exist_ok=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    runner = ansible_runner.run(private_data_dir=str(tmp / "runner"), project_dir=str(playbook.parent),
                                playbook=str(playbook), inventory=str(project / "inventory"), envvars=env,
                                quiet=True, suppress_env_files=True, rotate_artifacts=1)
    events = list(runner.events)
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    return runner.stats, events


def incremental(project: Path, tmp: Path, **kw):
    devbox = project / ".devbox"
    run = prepare(devbox_dir=devbox, playbook=project / "playbooks" / "site.yml", inventory=project / "inventory",
                  project_dir=project, **kw)
    if run.nothing_to_do:
        return run, None
    stats, events = run_playbook(project, run.playbook, tmp)
    record(devbox_dir=devbox, run=run, events=events)
    return run, stats


def changed(stats: dict) -> dict[str, int]:
    return {h: n for h, n in (stats.get("changed") or {}).items() if n}


@pytest.fixture(scope="module")
def applied_project(tmp_path_factory):
    """The fixture project after a first devbox run (everything, recorded in the ledger)."""
    root = tmp_path_factory.mktemp("applied")
    project = copy_project(FIXTURE, root / "project")
    run, stats = incremental(project, root)
    assert run.plan.run_whole_playbook and run.playbook == (project / "playbooks" / "site.yml").resolve()
    assert set(changed(stats)) == {"web-1", "web-2", "db-1"}
    return project


@pytest.fixture
def project(applied_project, tmp_path):
    return copy_project(applied_project, tmp_path / "project")


CHANGES = {
    # change kind: (edit, VMs the incremental run must touch)
    "template edit": (lambda p: append(p / "playbooks/roles/webapp/templates/app.conf.j2", "# tuned\n"),
                      {"web-1", "web-2"}),
    "defaults change": (lambda p: write(p / "playbooks/roles/proxy/defaults/main.yml", "proxy_timeout: 45\n"),
                        {"web-1", "web-2"}),
    "group_vars change": (lambda p: write(p / "inventory/group_vars/db.yml", "db_name: other\n"), {"db-1"}),
    "change in a dependency": (lambda p: write(p / "playbooks/roles/base/files/base.txt", "base file v2\n"),
                               {"web-1", "web-2"}),
    "new role in a play": (add_cache_role, {"db-1"}),
    "play pre_tasks change": (lambda p: replace(p / "playbooks/site.yml", "where this host writes",
                                                "where this host writes to"), {"web-1", "web-2"}),
    "host_vars change": (lambda p: append(p / "inventory/host_vars/web-2.yml", "app_port: 9090\n"), {"web-2"}),
    "fact from an earlier role": (lambda p: (
        append(p / "playbooks/roles/common/defaults/main.yml", "common_banner: v2\n"),
        append(p / "playbooks/roles/common/tasks/main.yml",
               "\n- name: banner fact\n  ansible.builtin.set_fact:\n    motd_banner: \"{{ common_banner }}\"\n"),
        append(p / "playbooks/roles/proxy/tasks/main.yml",
               "\n- name: banner\n  ansible.builtin.copy:\n    content: \"{{ motd_banner }}\\n\"\n"
               "    dest: \"{{ host_dir }}/banner\"\n    mode: \"0644\"\n")), {"web-1", "web-2", "db-1"}),
}


@pytest.mark.parametrize("kind", list(CHANGES))
def test_full_run_after_incremental_run_changes_nothing(project, tmp_path, kind):
    edit, touched = CHANGES[kind]
    edit(project)
    run, stats = incremental(project, tmp_path)
    assert set(run.vms_to_run) == touched, run.plan.to_json()
    if touched:
        assert not run.plan.run_whole_playbook or kind == "fact from an earlier role"
        assert set((stats.get("processed") or {})) == touched  # no other VM was connected to
    full_stats, _ = run_playbook(project, project / "playbooks" / "site.yml", tmp_path)
    assert changed(full_stats) == {}, f"{kind}: the incremental run skipped work: {run.plan.to_json()}"
    # and the ledger now says there is nothing left to do
    again = prepare(devbox_dir=project / ".devbox", playbook=project / "playbooks" / "site.yml",
                    inventory=project / "inventory", project_dir=project, write=False)
    assert again.nothing_to_do, again.plan.to_json()


def test_handler_in_another_role_is_found_and_runs(project, tmp_path):
    append(project / "playbooks/roles/webapp/templates/app.conf.j2", "# reload me\n")
    (project / "out/web-1/proxy.reloaded").unlink()
    run, stats = incremental(project, tmp_path)
    assert "web/proxy" in run.plan.selected("web-1")
    assert (project / "out/web-1/proxy.reloaded").read_text() == "reloaded\n"


def test_control_skipping_the_changed_role_is_caught(project, tmp_path):
    """The check above can fail: run a plan that leaves out the edited role, and the full run reports changes."""
    append(project / "playbooks/roles/db/templates/db.conf.j2", "# tuned\n")
    (project / "playbooks/roles/db/tasks/main.yml").write_text("[]\n")  # the subset runs a role doing nothing
    run, _ = incremental(project, tmp_path)
    assert run.vms_to_run == ("db-1",)
    shutil.copytree(FIXTURE / "playbooks/roles/db/tasks", project / "playbooks/roles/db/tasks", dirs_exist_ok=True)
    full_stats, _ = run_playbook(project, project / "playbooks" / "site.yml", tmp_path)
    assert changed(full_stats) == {"db-1": 1}


def test_failed_run_leaves_the_failed_role_to_run_again(project, tmp_path):
    append(project / "playbooks/roles/db/templates/db.conf.j2", "{{ no_such_variable }}\n")
    devbox = project / ".devbox"
    run = prepare(devbox_dir=devbox, playbook=project / "playbooks" / "site.yml", inventory=project / "inventory",
                  project_dir=project)
    import ansible_runner
    (tmp_path / "r").mkdir()
    runner = ansible_runner.run(private_data_dir=str(tmp_path / "r"), project_dir=str(run.playbook.parent),
                                playbook=str(run.playbook), inventory=str(project / "inventory"), quiet=True,
                                envvars={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert runner.status == "failed"
    record(devbox_dir=devbox, run=run, events=list(runner.events))
    again = prepare(devbox_dir=devbox, playbook=project / "playbooks" / "site.yml", inventory=project / "inventory",
                    project_dir=project, write=False)
    assert "db/db" in again.plan.selected("db-1")


def test_another_vms_variable_read_through_hostvars(project, tmp_path):
    """The load-balancer pattern: web VMs render db-1's port; a change to db-1's variables re-runs them."""
    append(project / "playbooks/roles/proxy/templates/upstream.j2", "db {{ hostvars[groups['db'][0]]['db_port'] }}\n")
    append(project / "playbooks/roles/proxy/tasks/main.yml",
           "\n- name: upstream\n  ansible.builtin.template:\n    src: upstream.j2\n"
           "    dest: \"{{ host_dir }}/upstream\"\n    mode: \"0644\"\n")
    incremental(project, tmp_path)
    replace(project / "inventory/hosts.yml", "db_port: 5432", "db_port: 5433")
    run, _ = incremental(project, tmp_path)
    assert set(run.vms_to_run) == {"web-1", "web-2", "db-1"}
    assert "web/webapp" not in run.plan.selected("web-1")
    assert (project / "out/web-1/upstream").read_text() == "db 5433\n"
    full_stats, _ = run_playbook(project, project / "playbooks" / "site.yml", tmp_path)
    assert changed(full_stats) == {}


FOUR_ROLES = INCREMENTAL / "four-roles"


def _incremental_four(project: Path, tmp: Path):
    devbox = project / ".devbox"
    run = prepare(devbox_dir=devbox, playbook=project / "playbooks" / "site.yml", inventory=project / "inventory",
                  project_dir=project)
    if run.nothing_to_do:
        return run, None
    stats, events = run_playbook(project, run.playbook, tmp)
    record(devbox_dir=devbox, run=run, events=events)
    return run, stats


def test_load_balancer_template_edit_on_roles_with_templated_include_vars(tmp_path):
    """Issue 15, item 10: four roles each loading OS-specific variables with a templated include_vars, a load
    balancer reading the web hosts' variables through hostvars. A load-balancer template edit runs that role on
    the load balancer alone; a full run after it changes nothing. (When the load balancer reads a fact the web
    role sets, the planner adds the web role: test_changes.py.)"""
    project = copy_project(FOUR_ROLES, tmp_path / "project")
    run, stats = _incremental_four(project, tmp_path)
    assert run.plan.run_whole_playbook and set(changed(stats)) == {"lb-1", "web-1", "web-2", "cache-1"}
    assert "web-2 web-2:8081 check" in (project / "out/lb-1/haproxy.conf").read_text()

    append(project / "playbooks/roles/haproxy/templates/haproxy.conf.j2", "# tuned\n")
    run, stats = _incremental_four(project, tmp_path)
    assert run.vms_to_run == ("lb-1",), run.plan.to_json()
    assert run.plan.vm("lb-1").roles() == ["play Load balancer", "role haproxy (play Load balancer)"]
    assert set(stats.get("processed") or {}) == {"lb-1"}  # no other VM was even connected to
    assert changed(stats) == {"lb-1": 1}  # the template (its handler writes what it wrote before)
    assert (project / "out/lb-1/haproxy.conf").read_text().endswith("# tuned\n")
    assert "web-2 web-2:8081 check" in (project / "out/lb-1/haproxy.conf").read_text()

    full_stats, _ = run_playbook(project, project / "playbooks" / "site.yml", tmp_path)
    assert changed(full_stats) == {}, run.plan.to_json()
