"""Rendering Vagrantfile.j2: golden output, strictness, and installing only what Vagrant accepts."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from provisioner.config.schema import parse_config
from provisioner.errors import ConfigError, RenderError
from provisioner.plan.inventory import load_inventory
from provisioner.adapters.vagrant_driver import validate_vagrantfile
from provisioner.plan.render import (DEFAULT_TEMPLATE, install_vagrantfile, render_template, render_vagrantfile,
                                ruby_string, template_for, write_if_changed)
from provisioner.plan.topology import derive_topology

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "tests" / "data" / "inventories"
GOLDEN = REPO / "tests" / "data" / "golden"
RULES = {"groups": {"db": {"keep_distinct": "pg_role", "memory": 1024, "cpus": 2}, "bastion": {"exclude": True}},
         "box": "devbox/debian12"}


def webapp(rules=None):
    config = parse_config({**RULES, **(rules or {})}, None)
    return derive_topology(load_inventory(INVENTORIES / "webapp" / "hosts.ini"), config), config


UPDATE_GOLDEN = "DEVBOX_UPDATE_GOLDEN"


def check_golden(name: str, text: str) -> None:
    """Compare with the golden file. Updating is a separate, explicit action: with DEVBOX_UPDATE_GOLDEN=1 the new
    output is written and the test FAILS, so a run can never pass by comparing a file with what it just wrote;
    the updated goldens are reviewed (git diff) and the tests run again without the variable."""
    path = GOLDEN / name
    if os.environ.get(UPDATE_GOLDEN):
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text() if path.exists() else None
        path.write_text(text)
        pytest.fail(f"{UPDATE_GOLDEN} is set: {path} was {'rewritten' if old is not None else 'created'}"
                    f"{' (unchanged)' if old == text else ''}. Review it (git diff {path.relative_to(REPO)}), then "
                    f"run the tests again without {UPDATE_GOLDEN}.", pytrace=False)
    assert path.exists(), f"golden file {path} is missing: create it with {UPDATE_GOLDEN}=1, then review it"
    assert text == path.read_text(), f"rendered output differs from {path}; {UPDATE_GOLDEN}=1 rewrites it " \
        "(and fails, for review)"


def test_the_golden_update_switch_writes_and_fails_and_a_normal_run_compares(tmp_path, monkeypatch):
    """The update switch never lets a test pass; without it the comparison is with the file on disk."""
    monkeypatch.setattr(sys.modules[__name__], "GOLDEN", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setenv(UPDATE_GOLDEN, "1")
    with pytest.raises(pytest.fail.Exception, match="was created.*Review it"):
        check_golden("x.Vagrantfile", "new\n")
    assert (tmp_path / "x.Vagrantfile").read_text() == "new\n"
    with pytest.raises(pytest.fail.Exception, match=r"rewritten \(unchanged\)"):
        check_golden("x.Vagrantfile", "new\n")   # even output equal to the golden fails while updating
    monkeypatch.delenv(UPDATE_GOLDEN)
    check_golden("x.Vagrantfile", "new\n")
    with pytest.raises(AssertionError, match="differs"):
        check_golden("x.Vagrantfile", "other\n")
    with pytest.raises(AssertionError, match="missing"):
        check_golden("absent.Vagrantfile", "new\n")


def test_golden_vagrantfile_libvirt():
    topology, config = webapp()
    check_golden("webapp.Vagrantfile", render_vagrantfile(topology, config, DEFAULT_TEMPLATE))


def test_golden_vagrantfile_remote_libvirt_uri():
    topology, config = webapp({"libvirt": {"uri": "qemu+ssh://ops@hypervisor.example/system"}})
    check_golden("webapp-remote-libvirt.Vagrantfile", render_vagrantfile(topology, config, DEFAULT_TEMPLATE))


def test_rendered_vagrantfile_has_no_provisioner_and_no_shared_folder():
    topology, config = webapp()
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE)
    assert ".provision" not in text
    assert 'synced_folder ".", "/vagrant", disabled: true' in text
    assert "insert_key" not in text
    assert text.count("config.vm.define") == len(topology.machines)
    assert "10.20." not in text and "203.0.113" not in text   # no production address


def test_virtualbox_provider_selected():
    topology, config = webapp({"provider": "virtualbox"})
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE)
    assert "ENV[\"VAGRANT_DEFAULT_PROVIDER\"] = 'virtualbox'" in text
    assert "virtualbox.memory = 1024" in text


def test_missing_variable_names_it_and_the_line(tmp_path):
    template = tmp_path / "Vagrantfile.j2"
    template.write_text("Vagrant.configure('2') do |config|\n  config.vm.box = {{ box }}\n  x = {{ disk_size }}\nend\n")
    with pytest.raises(RenderError) as info:
        render_template(template, {"box": "b"})
    assert "disk_size" in str(info.value) and f"{template}:3" in str(info.value)


def test_missing_attribute_is_an_error_not_an_empty_string(tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("{% for m in machines %}{{ m.disk }}{% endfor %}")
    with pytest.raises(RenderError, match="disk"):
        render_template(template, {"machines": [{"name": "a"}]})


def test_template_syntax_error(tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("line one\n{% if %}\n")
    with pytest.raises(RenderError, match=r"t.j2:2: template syntax error"):
        render_template(template, {})


def test_no_html_escaping_and_trailing_newline_kept(tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("a = {{ value }}\n")
    assert render_template(template, {"value": "<&>\"'"}) == "a = <&>\"'\n"


def test_ruby_string_cannot_interpolate_or_break_out():
    assert ruby_string("#{`rm -rf /`}") == "'#{`rm -rf /`}'"
    assert ruby_string("it's \\") == "'it\\'s \\\\'"


def test_project_template_overrides_the_shipped_one(tmp_path):
    assert template_for(tmp_path) == DEFAULT_TEMPLATE
    (tmp_path / "Vagrantfile.j2").write_text("custom\n")
    assert template_for(tmp_path) == tmp_path / "Vagrantfile.j2"


def test_write_if_changed_leaves_identical_files_alone(tmp_path):
    path = tmp_path / "f"
    assert write_if_changed(path, "x\n") is True
    os.utime(path, (1, 1))
    assert write_if_changed(path, "x\n") is False
    assert path.stat().st_mtime == 1
    assert write_if_changed(path, "x\n", mode=0o600) is True and (path.stat().st_mode & 0o777) == 0o600


def rejecting(project_dir):
    raise RenderError("vagrant said no")


def test_rejected_vagrantfile_restores_the_previous_one(tmp_path):
    (tmp_path / "Vagrantfile").write_text("old\n")
    with pytest.raises(RenderError, match="vagrant said no"):
        install_vagrantfile(tmp_path, "new\n", rejecting)
    assert (tmp_path / "Vagrantfile").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["Vagrantfile"]   # no temp file left behind


def test_rejected_first_vagrantfile_leaves_none(tmp_path):
    with pytest.raises(RenderError):
        install_vagrantfile(tmp_path, "new\n", rejecting)
    assert list(tmp_path.iterdir()) == []


def test_accepted_vagrantfile_installed(tmp_path):
    seen = []
    assert install_vagrantfile(tmp_path, "new\n", lambda d: seen.append((d / "Vagrantfile").read_text())) is True
    assert seen == ["new\n"]


# --- the real Vagrant ---------------------------------------------------------------------------------


@pytest.mark.vagrant
@pytest.mark.parametrize("rules", [{"libvirt": {"uri": "qemu+ssh://ops@hypervisor.example/system"}},
                                   {"provider": "virtualbox"}], ids=["libvirt-remote", "virtualbox"])
def test_vagrant_validate_accepts_the_rendered_vagrantfile(tmp_path, rules):
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    topology, config = webapp(rules)
    install_vagrantfile(tmp_path, render_vagrantfile(topology, config, DEFAULT_TEMPLATE), validate_vagrantfile)
    assert (tmp_path / "Vagrantfile").exists()
    assert not (tmp_path / ".vagrant").exists()   # validation leaves nothing in the project


@pytest.mark.vagrant
def test_vagrant_validate_rejects_a_bad_template_and_the_old_file_stays(tmp_path):
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    topology, config = webapp()
    good = render_vagrantfile(topology, config, DEFAULT_TEMPLATE)   # validated by the test above
    install_vagrantfile(tmp_path, good, None)
    bad = good.replace("libvirt.cpus = 2", "libvirt.cpus = 2\n      libvirt.no_such_setting = 1", 1)
    assert bad != good
    with pytest.raises(RenderError) as info:
        install_vagrantfile(tmp_path, bad, validate_vagrantfile)
    assert "no_such_setting" in str(info.value)   # Vagrant's own message reaches the user
    assert (tmp_path / "Vagrantfile").read_text() == good


# --- shared folders -----------------------------------------------------------------------------------


def shared(tmp_path, folders, rules=None):
    """The webapp topology with ``folders`` as devbox.yml's shared_folders, in a project at ``tmp_path``."""
    config = parse_config({**RULES, **(rules or {}), "shared_folders": folders}, tmp_path / "devbox.yml")
    return derive_topology(load_inventory(INVENTORIES / "webapp" / "hosts.ini"), config), config


def machine_block(text: str, name: str) -> str:
    start = text.index(f"config.vm.define '{name}'")
    return text[start:text.index("\n  end\n", start)]


def test_a_group_share_goes_to_every_vm_of_the_group_and_a_vm_share_to_that_vm(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "conf").mkdir()
    topology, config = shared(tmp_path, [{"host": "src", "guest": "/srv/app", "to": ["db"], "read_only": True,
                                          "type": "9p"},
                                         {"host": "conf", "guest": "/etc/app", "to": ["web-1"], "type": "9p"}])
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE, tmp_path)
    ninep_ro = "node.vm.synced_folder 'src', '/srv/app', type: \"9p\", accessmode: \"passthrough\", readonly: true"
    assert ninep_ro in machine_block(text, "db-primary") and ninep_ro in machine_block(text, "db-replica")
    web = machine_block(text, "web-1")
    assert "node.vm.synced_folder 'conf', '/etc/app', type: \"9p\", accessmode: \"passthrough\"" in \
        [line.strip() for line in web.splitlines()]   # read-write: no readonly
    assert "/srv/app" not in web and "synced_folder" not in machine_block(text, "lb-1")
    assert "memorybacking" not in text   # 9p needs no shared memory


def test_virtiofs_by_default_gets_shared_memory_and_a_read_only_mount_in_the_guest(tmp_path):
    (tmp_path / "src").mkdir()
    topology, config = shared(tmp_path, [{"host": "src", "guest": "/srv/app", "to": ["web"], "read_only": True}])
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE, tmp_path)   # auto: virtiofs on libvirt
    web = machine_block(text, "web-1")
    assert "node.vm.synced_folder 'src', '/srv/app', type: \"virtiofs\", mount_opts: \"ro\"" in web
    assert 'libvirt.memorybacking :source, :type => "memfd"' in web
    assert 'libvirt.memorybacking :access, :mode => "shared"' in web
    assert "readonly" not in web   # libvirt 9.0: "virtiofs does not yet support read-only mode"
    assert "memorybacking" not in machine_block(text, "lb-1")


def test_virtualbox_uses_its_own_shared_folders(tmp_path):
    (tmp_path / "src").mkdir()
    topology, config = shared(tmp_path, [{"host": "src", "guest": "/srv/app", "to": ["web"], "read_only": True}],
                              {"provider": "virtualbox"})
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE, tmp_path)
    assert "node.vm.synced_folder 'src', '/srv/app', type: \"virtualbox\", mount_options: [\"ro\"]" in text


def test_an_absolute_host_folder_is_rendered_absolute(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "project").mkdir()
    topology, config = shared(tmp_path / "project", [{"host": str(elsewhere), "guest": "/srv/x", "to": ["web-1"]}])
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE, tmp_path / "project")
    assert f"node.vm.synced_folder '{elsewhere}', '/srv/x'" in text


@pytest.mark.parametrize("folders, rules, message", [
    ([{"host": "missing", "guest": "/srv/a", "to": ["web"]}], {},
     r"shared_folders\[0\]\.host` 'missing' does not exist"),
    ([{"host": "afile", "guest": "/srv/a", "to": ["web"]}], {}, r"shared_folders\[0\]\.host` 'afile' is not a folder"),
    ([{"host": "src", "guest": "/srv/a", "to": ["webs", "web-9"]}], {},
     r"shared_folders\[0\]\.to` names webs, web-9: neither a group of a VM nor a VM"),
    ([{"host": "src", "guest": "/srv/a", "to": ["web"], "type": "9p"}], {"provider": "virtualbox"},
     r"shared_folders\[0\]\.type` 9p is for libvirt"),
    ([{"host": "src", "guest": "/srv/a", "to": ["web"]}, {"host": "other", "guest": "/srv/a", "to": ["web-1"]}], {},
     r"shared_folders\[1\]\.guest` /srv/a is already shared into web-1 from src"),
    ([{"host": "src", "guest": "/srv/a", "to": ["web"]}, {"host": "src", "guest": "/srv/b", "to": ["web-1"]}], {},
     r"shared_folders\[1\]\.host` src is already shared into web-1"),
    ([{"host": "out", "guest": "/srv/a", "to": ["web"]}], {}, r"leads out of the project folder through a symlink"),
], ids=["missing", "a-file", "unknown-names", "9p-on-virtualbox", "guest-twice", "host-twice", "symlink-out"])
def test_shares_that_cannot_work_are_refused_naming_the_file_and_the_entry(tmp_path, folders, rules, message):
    project = tmp_path / "project"
    for name in ("src", "other"):
        (project / name).mkdir(parents=True)
    (project / "afile").write_text("x")
    (tmp_path / "outside").mkdir()
    (project / "out").symlink_to(tmp_path / "outside")
    topology, config = shared(project, folders, rules)
    with pytest.raises(ConfigError, match=message) as info:
        render_vagrantfile(topology, config, DEFAULT_TEMPLATE, project)
    assert str(project / "devbox.yml") in str(info.value)


@pytest.mark.vagrant
@pytest.mark.parametrize("kind, rules", [("9p", {}), ("virtiofs", {}), ("auto", {"provider": "virtualbox"})],
                         ids=["9p", "virtiofs", "virtualbox"])
def test_vagrant_validate_accepts_shared_folders(tmp_path, kind, rules):
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    (tmp_path / "src").mkdir()
    topology, config = shared(tmp_path, [{"host": "src", "guest": "/srv/app", "to": ["web"], "read_only": True,
                                          "type": kind}], rules)
    install_vagrantfile(tmp_path, render_vagrantfile(topology, config, DEFAULT_TEMPLATE, tmp_path),
                        validate_vagrantfile)
    assert "synced_folder 'src', '/srv/app'" in (tmp_path / "Vagrantfile").read_text()


@pytest.mark.vagrant
def test_vagrant_validate_rejects_a_share_whose_folder_went_missing(tmp_path):
    """What devbox checks before rendering, Vagrant checks too: the Vagrantfile is never left pointing nowhere."""
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    (tmp_path / "src").mkdir()
    topology, config = shared(tmp_path, [{"host": "src", "guest": "/srv/app", "to": ["web"]}])
    text = render_vagrantfile(topology, config, DEFAULT_TEMPLATE, tmp_path)
    (tmp_path / "src").rmdir()
    with pytest.raises(RenderError):
        install_vagrantfile(tmp_path, text, validate_vagrantfile)
    assert not (tmp_path / "Vagrantfile").exists()
