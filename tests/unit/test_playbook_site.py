"""The one reader of site.yml (provisioner.playbook.site) and its three users: the change planner (which builds
ansible-core's plays on the reader's data), the parity scan and the revision stamp."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from helpers import INCREMENTAL, copy_project
from provisioner.environments.stamp import plays_roles
from provisioner.errors import DevboxError
from provisioner.incremental.changes import ChangesError, scan_project
from provisioner.parity.scan import scan_playbook
from provisioner.playbook.site import PlaybookReadError, SitePlaybook, read_site

CIPHERTEXT = ("$ANSIBLE_VAULT;1.1;AES256",
              "62313365396662343061393464336163383764373764613633653634306231386433626436623361",
              "6134333665353966363534333632666535333761666131620a663537646436643839616331643135")


def play_vars(indent: str, *, vault: bool = True) -> str:
    """A ``vars:`` block with a vaulted (unless ``vault`` is false) and an unsafe value, indented for a play."""
    block = "".join(f"{indent}      {line}\n" for line in CIPHERTEXT)
    return (f"{indent}vars:\n" + (f"{indent}  secret: !vault |\n{block}" if vault else "")
            + f"{indent}  raw: !unsafe '{{{{ not_a_template }}}}'\n{indent}  http_port: 80\n")


@pytest.fixture
def parses(monkeypatch):
    """The texts YAML parsed so far (every parse, Ansible's loader included, goes through yaml.load)."""
    seen: list[str] = []
    real = yaml.load

    def counting(stream, *args, **kwargs):
        seen.append(str(stream))
        return real(stream, *args, **kwargs)

    monkeypatch.setattr(yaml, "load", counting)
    return seen


def test_imports_are_expanded_in_execution_order(tmp_path):
    (tmp_path / "site.yml").write_text("- hosts: all\n  roles: [common]\n"
                                       "- import_playbook: inner.yml\n"
                                       "- ansible.builtin.import_playbook: '{{ which }}.yml'\n"
                                       "- hosts: [web, lb]\n  roles: [{role: nginx, tags: x}, {name: tls}]\n")
    (tmp_path / "inner.yml").write_text("- name: db\n  hosts: db\n  vars_files: [db.yml]\n  roles: [postgresql]\n"
                                        "- import_playbook: site.yml\n")  # a loop: not followed again
    site = read_site(tmp_path / "site.yml")
    assert [(p.source.name, p.position, p.hosts) for p in site.plays] == [
        ("site.yml", 0, "all"), ("inner.yml", 0, "db"), ("site.yml", 3, ["web", "lb"])]
    assert [r.name for r in site.plays[2].roles] == ["nginx", "tls"]
    assert site.plays[1].vars_files == ("db.yml",) and site.plays[1].name == "db"
    assert [(i.target, i.path) for i in site.imports] == [
        ("inner.yml", (tmp_path / "inner.yml").resolve()), ("site.yml", (tmp_path / "site.yml").resolve()),
        ("{{ which }}.yml", None)]
    assert list(site.files) == [(tmp_path / "site.yml").resolve(), (tmp_path / "inner.yml").resolve()]
    assert site.problems == ()


def test_each_file_is_parsed_once_until_its_content_changes(tmp_path, parses):
    site_yml = tmp_path / "site.yml"
    site_yml.write_text("- hosts: all\n  roles: [aaaa]\n")
    first = read_site(site_yml)
    assert read_site(site_yml).root is first.root
    assert len([p for p in parses if "aaaa" in p]) == 1
    stat = site_yml.stat()
    site_yml.write_text("- hosts: all\n  roles: [bbbb]\n")  # same size, same time: still seen
    os.utime(site_yml, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert [r.name for r in read_site(site_yml).plays[0].roles] == ["bbbb"]
    assert len([p for p in parses if "bbbb" in p]) == 1


def test_ansible_view_and_plain_view_of_vault_and_unsafe_values(tmp_path):
    (tmp_path / "site.yml").write_text("- hosts: all\n" + play_vars("  ") + "  roles: [common]\n")
    play = read_site(tmp_path / "site.yml").plays[0]
    from ansible.parsing.vault import EncryptedString
    from ansible.template import is_trusted_as_template

    assert isinstance(play.data["vars"]["secret"], EncryptedString)  # what Ansible itself gets
    assert not is_trusted_as_template(play.data["vars"]["raw"]) and is_trusted_as_template(play.data["hosts"])
    assert play.vars == {"secret": None, "raw": None, "http_port": 80}  # what the static readers get
    assert type(play.hosts) is str and type(play.vars["http_port"]) is int
    # the stamp used to find no role at all in a playbook with a vaulted value (yaml.safe_load refused the tag)
    assert plays_roles(tmp_path / "site.yml") == [{"hosts": "all", "roles": ["common"]}]


def test_unreadable_files(tmp_path):
    with pytest.raises(PlaybookReadError, match="no such file"):
        read_site(tmp_path / "site.yml")
    (tmp_path / "site.yml").write_text("- hosts: all\n  roles: [common]\n- import_playbook: broken.yml\n"
                                       "- import_playbook: missing.yml\n")
    (tmp_path / "broken.yml").write_text("- hosts: all\n  tasks: [\n")
    site = read_site(tmp_path / "site.yml")
    assert [p.path.name for p in site.problems] == ["broken.yml", "missing.yml"]
    assert [p.hosts for p in site.plays] == ["all"]
    # the stamp records what it can read (the run reports the rest); the parity scan refuses to guess
    assert plays_roles(site) == [{"hosts": "all", "roles": ["common"]}]
    with pytest.raises(DevboxError, match="broken.yml"):
        scan_playbook(tmp_path / "site.yml")
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: [\n")
    with pytest.raises(PlaybookReadError, match="site.yml"):
        read_site(tmp_path / "site.yml")
    assert plays_roles(tmp_path / "site.yml") == []


# --- the change planner on the reader's data -----------------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    return copy_project(INCREMENTAL / "project", tmp_path / "project")


def _scan(project, site=None):
    return scan_project(project / "playbooks" / "site.yml", project / "inventory", project_dir=project,
                        extra_vars={"out_dir": "/nonexistent"}, site=site)


def test_the_planner_builds_ansible_plays_on_the_readers_data_without_parsing_again(project, parses):
    site_yml = project / "playbooks" / "site.yml"
    site_yml.write_text(site_yml.read_text() + "\n- import_playbook: more.yml\n")
    (project / "playbooks" / "more.yml").write_text("- name: more\n  hosts: db\n  gather_facts: false\n"
                                                    "  vars:\n    token: !unsafe '{{ x }}'\n  roles: [common]\n")
    texts = {site_yml.read_text(), (project / "playbooks" / "more.yml").read_text()}
    site = read_site(site_yml)
    assert len([p for p in parses if p in texts]) == 2
    digests = _scan(project, site)
    assert digests.site is site
    assert len([p for p in parses if p in texts]) == 2  # neither file parsed again
    assert [p.key for p in digests.plays] == ["common", "web", "db", "more"]
    assert digests.play("more").vms == ("db-1",)


def test_the_digests_are_those_of_ansibles_own_parse(project):
    """Ansible gets the very data its own loader makes: every digest stays as it was (a ledger stays valid).
    (No vaulted play variable here: the planner cannot digest one yet, whoever parses the playbook.)"""
    site_yml = project / "playbooks" / "site.yml"
    db_vars = play_vars("  ", vault=False)
    site_yml.write_text(site_yml.read_text().replace("  hosts: db\n", "  hosts: db\n" + db_vars, 1))
    shared = _scan(project)
    # an empty view: Ansible's loader finds nothing it was handed and parses the playbook itself, as before
    own = _scan(project, SitePlaybook(path=site_yml.resolve(), files={}, plays=(), imports=(), problems=()))
    assert [(u.key, dict(u.inputs)) for u in shared.units] == [(u.key, dict(u.inputs)) for u in own.units]
    assert [p.data for p in shared.plays] == [p.data for p in own.plays]


def test_an_unparsable_playbook_is_still_a_planner_error(project):
    (project / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: [\n")
    with pytest.raises(ChangesError, match="cannot parse playbook"):
        _scan(project)
