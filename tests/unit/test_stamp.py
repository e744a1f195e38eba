"""Revision stamps: the git revision of the playbooks, and a real record/read-back round trip on localhost."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import pytest

from helpers import git, git_commit
from provisioner.adapters.playbook_runner import AnsibleRunnerPlaybookRunner
from provisioner.environments.stamp import (APPLIED_PATH, HostRevision, Revision, collect_fetched, make_stamp,
                               playbook_revision, plays_roles, read_extravars, stamp_extravars,
                               write_stamp_playbooks)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "playbooks").mkdir(parents=True)
    (repo / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    git_commit(repo, ".", message="site", author=("t", "t@example.invalid"))
    return repo


def test_clean_checkout_is_its_commit(repo):
    rev = playbook_revision(repo / "playbooks" / "site.yml")
    assert rev == Revision(git(repo, "rev-parse", "HEAD").strip(), False)
    assert rev.describe() == rev.commit[:12]


def test_changes_under_the_playbook_folder_make_it_dirty(repo):
    (repo / "playbooks" / "new_role.yml").write_text("x: 1\n")  # untracked counts
    rev = playbook_revision(repo / "playbooks" / "site.yml")
    assert rev.dirty and rev.describe().endswith("-dirty")


def test_changes_elsewhere_in_the_repository_do_not(repo):
    (repo / "notes.txt").write_text("unrelated\n")
    assert not playbook_revision(repo / "playbooks" / "site.yml").dirty


def test_no_git_repository_is_unversioned(tmp_path):
    (tmp_path / "site.yml").write_text("[]\n")
    rev = playbook_revision(tmp_path / "site.yml")
    assert rev.commit is None and rev.describe() == "unversioned"


def test_one_lookup_serves_the_state_record_and_the_stamp_and_can_log_git(repo, tmp_path):
    log = tmp_path / "logs" / "git.log"
    rev = playbook_revision(repo / "playbooks" / "site.yml", log_path=log)
    assert rev.recorded == rev.describe() == rev.commit[:12]  # what `devbox status` shows for a dev VM
    assert "rev-parse HEAD" in log.read_text() and "status --porcelain" in log.read_text()
    assert Revision(None, True).recorded is None  # outside git the state records no revision


def test_stamp_records_what_when_who():
    now = datetime(2026, 11, 26, 5, 0, 1, 123, tzinfo=timezone.utc)
    stamp = make_stamp(environment="staging", playbook="playbooks/site.yml", revision=Revision("a" * 40, True),
                       limit="web", user="ops@laptop", now=now)
    assert stamp["revision"] == "aaaaaaaaaaaa-dirty" and stamp["commit"] == "a" * 40 and stamp["dirty"]
    assert stamp["applied_at"] == "2026-11-26T05:00:01+00:00" and stamp["applied_by"] == "ops@laptop"
    assert stamp["partial"] and stamp["limit"] == "web" and stamp["environment"] == "staging"
    assert not make_stamp(environment="dev", playbook="p", revision=Revision(None, True))["partial"]


def test_collect_reports_missing_unreadable_and_unreachable(tmp_path):
    (tmp_path / "web-1.json").write_text(json.dumps({"revision": "abc"}))
    (tmp_path / "db-1.json").write_text("{not json")
    got = collect_fetched(tmp_path, ["web-1", "db-1", "lb-1", "cache-1"], {"cache-1": "unreachable"})
    assert got[0] == HostRevision("web-1", {"revision": "abc"}) and got[0].revision == "abc"
    assert "unreadable" in got[1].problem
    assert got[2].stamp is None and got[2].revision == "never provisioned by devbox"
    assert got[3].revision == "? (unreachable)"


SITE = """\
- hosts: all
  gather_facts: false
  roles: [common]
- hosts: db
  gather_facts: false
  roles: [{role: postgresql}]
  tasks:
    - ansible.builtin.fail: {msg: broken on purpose}
      when: inventory_hostname == "db-2"
"""


def test_plays_roles_follows_imports_and_skips_templated_patterns(tmp_path):
    (tmp_path / "site.yml").write_text("- import_playbook: inner.yml\n- hosts: '{{ target }}'\n  roles: [x]\n"
                                       "- hosts: [web, lb]\n  roles: [nginx]\n")
    (tmp_path / "inner.yml").write_text(SITE)
    assert plays_roles(tmp_path / "site.yml") == [{"hosts": "all", "roles": ["common"]},
                                                  {"hosts": "db", "roles": ["postgresql"]},
                                                  {"hosts": "web,lb", "roles": ["nginx"]}]
    assert plays_roles(tmp_path / "missing.yml") == []


@pytest.mark.ansible
def test_stamp_follows_the_playbook_and_skips_failed_hosts_then_reads_back(tmp_path):
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"web": {"hosts": {"web-1": local}},
                                                          "db": {"hosts": {"db-1": local, "db-2": local}}}}}))
    site = tmp_path / "playbooks" / "site.yml"
    for role in ("common", "postgresql"):
        (site.parent / "roles" / role / "tasks").mkdir(parents=True)
        (site.parent / "roles" / role / "tasks" / "main.yml").write_text("- ansible.builtin.debug: {msg: hi}\n")
    site.write_text(SITE)
    record, read = write_stamp_playbooks(tmp_path / ".devbox" / "stamp")
    runner = AnsibleRunnerPlaybookRunner(runner_dir=tmp_path / ".devbox" / "runner",
                                         logs_dir=tmp_path / ".devbox" / "logs",
                                         known_hosts=tmp_path / ".devbox" / "known_hosts")
    # each inventory name stands for a host of its own: its own "/etc/devbox"
    applied = str(tmp_path / "hosts" / "{{ inventory_hostname }}" / "applied.json")
    stamp = make_stamp(environment="dev", playbook="playbooks/site.yml", revision=Revision("b" * 40, False))
    result = runner.run(playbook=site, inventory=inventory, forks=3, after=(record,),
                        extravars=stamp_extravars(stamp, plays=plays_roles(site), become=False, path=applied))
    assert not result.ok and [f.host for f in result.failures] == ["db-2"]
    written = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "hosts").glob("*/applied.json")}
    assert sorted(written) == ["db-1", "web-1"]  # the failed host keeps no record of a run it did not finish
    assert written["web-1"] == {**stamp, "roles": ["common"]}
    assert written["db-1"]["roles"] == ["common", "postgresql"]

    fetched = tmp_path / ".devbox" / "stamp" / "fetched"
    result = runner.run(playbook=read, inventory=inventory, forks=3, extravars=read_extravars(fetched, path=applied))
    assert result.ok, result.failures  # a host devbox never stamped is not an error
    got = {h.host: h.revision for h in collect_fetched(fetched, ["web-1", "db-1", "db-2"])}
    assert got == {"web-1": "b" * 12, "db-1": "b" * 12, "db-2": "never provisioned by devbox"}


def test_default_location_is_etc_devbox():
    assert APPLIED_PATH == "/etc/devbox/applied.json"
    assert stamp_extravars({"a": 1})["devbox_applied_path"] == APPLIED_PATH
