"""up / provision / status / ssh / halt / destroy / doctor: our orchestration, with fake adapters.

The project is real (a real `devbox init` from a small production inventory, with a git-tracked playbook); only
Vagrant, Ansible and SSH are fakes, and they fail on any call a test did not allow, so the tests also pin
which external commands each devbox command starts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fakes import FakePlaybookRunner, FakeSshProbe, FakeVagrant, UnexpectedCall, playbook_failed, playbook_ok
from helpers import assert_handled, copy_project, git_head as head
from provisioner.machines import doctor
from provisioner.app import Devbox
from provisioner.cli.main import main
from provisioner.errors import LockHeld, UsageError
from provisioner.machines.lifecycle import ProvisionFailed, SshNotReady, forget_host_keys
from provisioner.project.paths import ProjectPaths
from provisioner.project.lock import ProjectLock
from provisioner.project.state import load_state

BOTH = ("web-1", "db-1")


@pytest.fixture
def project(two_vm_template, tmp_path):
    return copy_project(two_vm_template, tmp_path / "p")


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def __call__(self, subject, message):
        self.events.append((subject, message))


def make_app(project, vagrant, playbooks=None, probe=None):
    return Devbox(project_dir=project, progress=Recorder(), vagrant=vagrant,
                  playbooks=playbooks or FakePlaybookRunner(), ssh_probe=probe or FakeSshProbe())


def booted_project(project):
    """A project after a successful first `up` of both VMs."""
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("status", "up", "ssh_config"))
    make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH)), FakeSshProbe(ready=BOTH)).up()
    return project


# ---------------------------------------------------------------------------------------------------- up

def test_first_up_boots_all_in_one_call_then_one_ssh_config_one_ansible_run(project):
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("status", "up", "ssh_config"))
    runner = FakePlaybookRunner(playbook_ok(*BOTH))
    app = make_app(project, vagrant, runner, FakeSshProbe(ready=BOTH))
    result = app.up()
    assert vagrant.calls == [("status", ()), ("up", BOTH), ("ssh_config", BOTH)]
    assert result.booted == BOTH and not result.rendered and result.provision.playbook.ok
    [run] = runner.calls
    paths = ProjectPaths(project)
    assert run["inventory"] == paths.inventory and run["limit"] is None and run["forks"] >= 2
    assert run["playbook"] == project / "playbooks" / "site.yml"
    conn = yaml.safe_load(paths.connection_inventory.read_text())["all"]["hosts"]
    assert conn["web-1"] == {"ansible_connection": "ssh", "ansible_host": "192.168.121.110", "ansible_port": 22,
                             "ansible_user": "vagrant",
                             "ansible_ssh_private_key_file": "/keys/web-1/private_key"}
    state = load_state(paths.state)
    for n in BOTH:
        assert state.machines[n].provider_state == "running"
        assert state.machines[n].revision == head(project) and state.machines[n].last_provisioned
    events = app.progress.events
    assert events.index(("web-1", "booting")) < events.index(("web-1", "SSH ready")) < \
        events.index(("web-1", "provisioning: app : install packages"))


def test_first_up_skips_vagrant_status_when_no_machine_was_ever_created(project):
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("up", "ssh_config"), knows_created=True)
    result = make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH)), FakeSshProbe(ready=BOTH)).up()
    assert vagrant.calls == [("up", BOTH), ("ssh_config", BOTH)]
    assert result.booted == BOTH
    assert {n: m.provider_state for n, m in load_state(ProjectPaths(project).state).machines.items()} == {
        n: "running" for n in BOTH}


def test_first_up_takes_connections_vagrant_recorded_while_booting(project):
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("up",), knows_created=True, records_ssh=True)
    make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH)), FakeSshProbe(ready=BOTH)).up()
    assert vagrant.calls == [("up", BOTH)]  # neither `vagrant status` nor `vagrant ssh-config`
    conn = yaml.safe_load(ProjectPaths(project).connection_inventory.read_text())["all"]["hosts"]
    assert conn["db-1"]["ansible_host"] == vagrant.config_for("db-1").host


def test_up_asks_vagrant_for_states_once_any_machine_exists(project):
    vagrant = FakeVagrant({"web-1": "poweroff", "db-1": "not_created"}, allow=("status", "up", "ssh_config"),
                          knows_created=True)
    result = make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH)), FakeSshProbe(ready=BOTH)).up()
    assert vagrant.calls[0] == ("status", ()) and result.booted == BOTH


def test_second_up_boots_nothing_and_asks_vagrant_only_for_states(project):
    booted_project(project)
    vagrant = FakeVagrant({n: "running" for n in BOTH}, allow=("status",))  # no up, no ssh-config
    runner = FakePlaybookRunner(playbook_ok(*BOTH, changed=0))
    result = make_app(project, vagrant, runner, FakeSshProbe(ready=BOTH)).up()
    assert result.booted == () and result.already_running == BOTH
    assert len(runner.calls) == 1


def test_up_of_one_vm_limits_boot_and_ansible_to_it(project):
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("status", "up", "ssh_config"))
    runner = FakePlaybookRunner(playbook_ok("db-1"))
    make_app(project, vagrant, runner, FakeSshProbe(ready=["db-1"])).up(["db-1"])
    assert ("up", ("db-1",)) in vagrant.calls and ("ssh_config", ("db-1",)) in vagrant.calls
    assert runner.calls[0]["limit"] == "db-1"
    assert vagrant.machines["web-1"] == "not_created"


def test_up_renders_again_when_the_production_inventory_changed(project):
    booted_project(project)
    with open(project / "prod" / "hosts.ini", "a") as fh:
        fh.write("\n[cache]\ncache01.example.com\n")
    machines = {"web-1": "running", "db-1": "running", "cache-1": "not_created"}
    vagrant = FakeVagrant(machines, allow=("status", "up", "ssh_config"))
    runner = FakePlaybookRunner(playbook_ok("web-1", "db-1", "cache-1"))
    result = make_app(project, vagrant, runner, FakeSshProbe(ready=machines)).up()
    assert result.rendered and result.booted == ("cache-1",)
    assert "cache-1" in (project / "Vagrantfile").read_text()
    assert "cache-1" in (project / ".devbox" / "inventory" / "hosts.yml").read_text()
    assert ("ssh_config", ("cache-1",)) in vagrant.calls  # the running VMs kept their cached connection


def test_ssh_timeout_names_vm_and_console_log_and_provisions_nothing(project):
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("status", "up", "ssh_config"))
    app = make_app(project, vagrant, FakePlaybookRunner(), FakeSshProbe(ready=["web-1"]))
    with pytest.raises(SshNotReady) as err:
        app.up()
    message = str(err.value)
    assert "db-1 did not answer SSH" in message and "web-1" not in message
    assert str(ProjectPaths(project).logs / "vagrant-up.log") in message
    state = load_state(ProjectPaths(project).state)
    assert state.machines["db-1"].ssh and state.machines["db-1"].last_provisioned is None  # facts kept, nothing claimed


def test_ctrl_c_during_boot_leaves_state_the_next_up_converges_from(project):
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, allow=("status", "up"), fail={"up": KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        make_app(project, vagrant).up()
    state = load_state(ProjectPaths(project).state)
    assert {n: r.provider_state for n, r in state.machines.items()} == {n: "not_created" for n in BOTH}
    assert not any(r.ssh for r in state.machines.values())
    # the lock went with the interrupted command, and the next `up` boots and provisions everything
    vagrant = FakeVagrant({"web-1": "running", "db-1": "not_created"}, allow=("status", "up", "ssh_config"))
    result = make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH)), FakeSshProbe(ready=BOTH)).up()
    assert result.booted == ("db-1",) and result.provision.playbook.ok
    assert ("ssh_config", BOTH) in vagrant.calls  # web-1 had no cached connection yet


def test_recreated_vm_loses_its_old_host_key_before_the_probe(project):
    booted_project(project)
    paths = ProjectPaths(project)
    # an entry for the address the recreated VM will get (the fake gives a new one per boot from scratch)
    line = "192.168.121.210 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbqkAA3ZEr+6jZzQFZt5S3zIu6w0zJS3S5Oq3Oe1Q1x\n"
    paths.known_hosts.write_text(line)
    vagrant = FakeVagrant({"web-1": "not_created", "db-1": "running"}, allow=("status", "up", "ssh_config"))
    vagrant.boots["web-1"] = 1
    make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH)), FakeSshProbe(ready=BOTH)).up()
    assert "192.168.121.210" not in paths.known_hosts.read_text()


# ------------------------------------------------------------------------------------------- provision

def test_provision_failure_names_host_task_message_and_log(project):
    booted_project(project)
    before = load_state(ProjectPaths(project).state).machines["db-1"].last_provisioned
    time.sleep(1.1)  # provisioning times have one-second resolution
    runner = FakePlaybookRunner(playbook_failed(["web-1"], "db-1", "postgresql : start", "port 5432 in use"))
    with pytest.raises(ProvisionFailed) as err:
        make_app(project, FakeVagrant({}), runner).provision()
    message = str(err.value)
    assert "db-1" in message and "postgresql : start" in message and "port 5432 in use" in message
    assert "/fake/logs/ansible.log" in message
    state = load_state(ProjectPaths(project).state)
    assert state.machines["db-1"].last_provisioned == before  # the failed host keeps its previous record
    assert state.machines["web-1"].last_provisioned > before


def test_provision_options_reach_ansible_and_check_mode_records_nothing(project):
    booted_project(project)
    before = load_state(ProjectPaths(project).state).machines
    runner = FakePlaybookRunner(playbook_ok("web-1"))
    make_app(project, FakeVagrant({}), runner).provision(["web-1"], tags="nginx", limit="web", check=True)
    assert runner.calls[0]["limit"] == "web-1,&web"
    assert runner.calls[0]["tags"] == "nginx" and runner.calls[0]["check"] is True
    assert load_state(ProjectPaths(project).state).machines == before
    with pytest.raises(UsageError):
        make_app(project, FakeVagrant({}), FakePlaybookRunner(playbook_ok("web-1"))).provision(
            ["web-1"], limit="web,db")


def test_provision_without_cached_connection_asks_vagrant_once(project):
    vagrant = FakeVagrant({n: "running" for n in BOTH}, allow=("ssh_config",))
    make_app(project, vagrant, FakePlaybookRunner(playbook_ok(*BOTH))).provision()
    assert vagrant.calls == [("ssh_config", BOTH)]


def test_dirty_playbooks_are_recorded_as_such(project):
    booted_project(project)
    with open(project / "playbooks" / "site.yml", "a") as fh:
        fh.write("# local edit\n")
    make_app(project, FakeVagrant({}), FakePlaybookRunner(playbook_ok(*BOTH))).provision()
    assert load_state(ProjectPaths(project).state).machines["web-1"].revision == head(project) + "-dirty"


def test_a_provision_asks_git_once_and_parses_site_yml_once(project, monkeypatch):
    """The change planner, the state record and the stamp share one revision lookup and one read of site.yml."""
    from provisioner.adapters import process

    site = project / "playbooks" / "site.yml"
    site.write_text("- hosts: all\n  roles: []\n  tasks: []\n")  # a text no earlier test parsed in this process
    real_run, real_load = process.run, yaml.load
    argvs, parses = [], []

    def recording_run(argv, **kwargs):
        argvs.append(list(argv))
        return real_run(argv, **kwargs)

    def counting_load(stream, *args, **kwargs):  # every YAML parse: Ansible's loader and yaml.safe_load go here
        if isinstance(stream, str) and stream == site.read_text():
            parses.append(stream)
        return real_load(stream, *args, **kwargs)

    monkeypatch.setattr(process, "run", recording_run)
    monkeypatch.setattr(yaml, "load", counting_load)
    vagrant = FakeVagrant({n: "running" for n in BOTH}, allow=("ssh_config",))
    runner = FakePlaybookRunner(playbook_ok(*BOTH))
    result = make_app(project, vagrant, runner).provision()
    assert len(runner.calls) == 1 and runner.calls[0]["after"]  # a real run, stamped
    git = [argv[3] for argv in argvs if argv[0] == "git"]
    assert git == ["rev-parse", "status"]
    assert len(parses) == 1
    stamp = runner.calls[0]["extravars"]["devbox_applied"]
    assert result.revision == stamp["revision"] == head(project) + "-dirty"


# ---------------------------------------------------------------------------------------------- status

def test_status_json_from_cache_without_vagrant(project):
    booted_project(project)
    app = make_app(project, FakeVagrant({}), probe=FakeSshProbe(reachable=["web-1"]))
    started = time.monotonic()
    result = CliRunner().invoke(main, ["-C", str(project), "status", "--json"], obj=app)
    assert time.monotonic() - started < 1
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == 1 and data["pending_error"] is None
    assert [set(m) for m in data["machines"]] == [
        {"name", "state", "ssh", "address", "last_provisioned", "revision", "private_address", "fqdn", "urls",
         "pending"}] * 2
    web, db = data["machines"]
    assert (web["name"], web["state"], web["ssh"], web["revision"]) == ("web-1", "running", True, head(project))
    assert (db["name"], db["ssh"]) == ("db-1", False)
    # what the table shows: the address and the pending changes (the fake run's events recorded nothing)
    assert web["address"] == "vagrant@192.168.121.110:22" and db["address"] == "vagrant@192.168.121.111:22"
    assert web["pending"] == db["pending"] == {"runs": "everything", "why": ["never provisioned by devbox"]}
    table = CliRunner().invoke(main, ["status"], obj=app).output
    assert "192.168.121.110:22" in table and "never provisioned by devbox" in table


def test_status_before_any_boot_and_refresh_asks_vagrant_once(project):
    app = make_app(project, FakeVagrant({n: "not_created" for n in BOTH}, allow=("status",)),
                   probe=FakeSshProbe(reachable=[]))
    result = app.status()
    assert [(m.state, m.ssh) for m in result.machines] == [("unknown", None)] * 2  # Vagrant's folder unknown
    assert app.vagrant.calls == []
    refreshed = app.status(refresh=True)
    assert [m.state for m in refreshed.machines] == ["not_created"] * 2 and app.vagrant.calls == [("status", ())]
    out = CliRunner().invoke(main, ["status"], obj=app)
    assert out.exit_code == 0 and "web-1" in out.output and "never" in out.output


def test_status_says_not_created_when_vagrant_never_created_the_vm(project):
    """No state and no `.vagrant/machines/NAME/*/id` (the real driver's none_created): as Vagrant, `not created`."""
    vagrant = FakeVagrant({n: "not_created" for n in BOTH}, knows_created=True)  # status must not be called
    app = make_app(project, vagrant, probe=FakeSshProbe(reachable=[]))
    assert [(m.state, m.ssh) for m in app.status().machines] == [("not_created", None)] * 2
    out = CliRunner().invoke(main, ["status"], obj=app)
    assert_handled(out, 0)
    assert "not created" in out.output and "unknown" not in out.output
    assert vagrant.calls == [] and app.ssh_probe.calls == [("reachable", ())] * 2  # nothing to probe either


def test_status_does_not_probe_halted_vms(project):
    booted_project(project)
    make_app(project, FakeVagrant({n: "running" for n in BOTH}, allow=("halt",))).halt(["db-1"])
    probe = FakeSshProbe(reachable=["web-1"])
    result = make_app(project, FakeVagrant({}), probe=probe).status()
    assert [t.name for t in probe.calls[0][1]] == ["web-1"]
    assert [(m.name, m.state) for m in result.machines] == [("web-1", "running"), ("db-1", "poweroff")]


# ------------------------------------------------------------------------------------------------- ssh

def test_ssh_uses_cached_connection_and_project_known_hosts(project):
    booted_project(project)
    argv = make_app(project, FakeVagrant({})).ssh("web-1", ["uname", "-a"]).argv
    kh = ProjectPaths(project).known_hosts
    assert argv[0] == "ssh" and "vagrant@192.168.121.110" in argv
    assert f"UserKnownHostsFile={kh}" in argv and "StrictHostKeyChecking=accept-new" in argv
    assert "StrictHostKeyChecking=no" not in argv
    assert argv[-3:] == ("--", "uname", "-a")


def test_ssh_to_unknown_vm_is_a_usage_error(project):
    result = CliRunner().invoke(main, ["ssh", "nope"], obj=make_app(project, FakeVagrant({})))
    assert result.exit_code == 2 and "no VM named nope" in result.output


# ------------------------------------------------------------------------------------------ halt/destroy

def test_destroy_asks_and_does_nothing_on_no(project):
    booted_project(project)
    app = make_app(project, FakeVagrant({n: "running" for n in BOTH}))  # destroy not allowed: must not happen
    result = CliRunner().invoke(main, ["destroy", "web-1"], obj=app, input="n\n")
    assert_handled(result, 1)
    assert "Destroy web-1?" in result.output
    assert app.vagrant.calls == []


def test_destroy_drops_cached_connection_and_host_keys_of_that_vm_only(project):
    booted_project(project)
    paths = ProjectPaths(project)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbqkAA3ZEr+6jZzQFZt5S3zIu6w0zJS3S5Oq3Oe1Q1x"
    paths.known_hosts.write_text(f"192.168.121.110 {key}\n192.168.121.111 {key}\n")
    app = make_app(project, FakeVagrant({n: "running" for n in BOTH}, allow=("destroy",)))
    result = CliRunner().invoke(main, ["destroy", "--yes", "web-1"], obj=app)
    assert result.exit_code == 0, result.output
    assert app.vagrant.calls == [("destroy", ("web-1",))]
    assert paths.known_hosts.read_text().splitlines() == [f"192.168.121.111 {key}"]
    state = load_state(paths.state)
    assert state.machines["web-1"].ssh is None and state.machines["web-1"].provider_state == "not_created"
    assert state.machines["web-1"].last_provisioned is None and state.machines["db-1"].ssh
    conn = yaml.safe_load(paths.connection_inventory.read_text())["all"]["hosts"]
    assert list(conn) == ["db-1"]


def test_forget_host_keys_removes_both_forms_of_a_forwarded_port(tmp_path):
    paths = ProjectPaths(tmp_path)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbqkAA3ZEr+6jZzQFZt5S3zIu6w0zJS3S5Oq3Oe1Q1x"
    paths.known_hosts.parent.mkdir(parents=True)
    paths.known_hosts.write_text(f"127.0.0.1 {key}\n[127.0.0.1]:2222 {key}\n[127.0.0.1]:2200 {key}\n")
    forget_host_keys(paths, "127.0.0.1", 2222)
    assert paths.known_hosts.read_text().splitlines() == [f"[127.0.0.1]:2200 {key}"]


def test_halt_records_poweroff(project):
    booted_project(project)
    app = make_app(project, FakeVagrant({n: "running" for n in BOTH}, allow=("halt",)))
    result = CliRunner().invoke(main, ["halt"], obj=app)
    assert result.exit_code == 0 and app.vagrant.calls == [("halt", BOTH)]
    assert {r.provider_state for r in load_state(ProjectPaths(project).state).machines.values()} == {"poweroff"}


# ------------------------------------------------------------------------------------------ lock, errors

def test_second_command_fails_fast_naming_the_lock_holder(project):
    app = make_app(project, FakeVagrant({n: "running" for n in BOTH}))  # nothing may be called
    with ProjectLock(ProjectPaths(project).lock, "devbox up"):
        result = CliRunner().invoke(main, ["halt"], obj=app)
        assert_handled(result, 1)
        assert "devbox up" in result.output and "pid" in result.output
        with pytest.raises(LockHeld):
            app.provision()
    assert app.vagrant.calls == []


def test_unexpected_adapter_calls_fail_loudly(project):
    with pytest.raises(UnexpectedCall):
        make_app(project, FakeVagrant({n: "not_created" for n in BOTH})).up()


def test_provision_failure_on_the_cli_shows_table_then_error(project):
    booted_project(project)
    runner = FakePlaybookRunner(playbook_failed(["web-1"], "db-1", "app : migrate", "relation missing"))
    result = CliRunner().invoke(main, ["provision"], obj=make_app(project, FakeVagrant({}), runner))
    assert_handled(result, 1)
    assert "db-1" in result.output and "app : migrate" in result.output and "relation missing" in result.output


# ---------------------------------------------------------------------------------------------- doctor

def test_memory_check_against_planned_vms(project):
    app = make_app(project, FakeVagrant({})).project()
    plenty = doctor.check_memory(app, "MemTotal: 24000000 kB\nMemAvailable: 20000000 kB\n")
    short = doctor.check_memory(app, "MemAvailable: 1000000 kB\n")
    assert plenty.status == "ok" and short.status == "fail" and "count:" in short.hint
    assert "2 VMs need about 1536 MiB" in short.detail


@pytest.mark.vagrant
def test_doctor_checks_real_tools(project):
    app = make_app(project, FakeVagrant({})).project()
    assert doctor.check_vagrant(app).status == "ok"
    assert doctor.check_provider_plugin(app, "libvirt").status == "ok"
    missing = doctor.check_box(app, "no-such/box", "libvirt")
    assert missing.status == "fail" and "devbox box build" in missing.hint
    assert doctor.check_libvirtd(app, "test:///default").status == "ok"
    down = doctor.check_libvirtd(app, "qemu:///system?socket=/nonexistent/sock")
    assert down.status == "fail" and "start libvirtd" in down.hint
    assert doctor.check_ansible().status == "ok"


def test_box_list_parsing():
    sample = ("1,,box-name,devbox/bookworm\n1,,box-provider,libvirt\n1,,box-version,0\n"
              "1,,box-name,other\n1,,box-provider,virtualbox\n1,,box-version,0\n")
    rows = doctor.parse_box_list(sample)
    assert rows == [("devbox/bookworm", "libvirt"), ("other", "virtualbox")]
    empty = (Path(__file__).resolve().parent.parent / "data" / "vagrant" / "box-list-empty.txt").read_text()
    assert doctor.parse_box_list(empty) == []


def test_default_box_is_the_one_doctor_says_to_build():
    """`devbox init`'s box, doctor's advice for a missing one and what `devbox box build` makes are one box."""
    from provisioner.config.schema import Config
    from provisioner.lab.box import spec_for
    assert Config().box == spec_for().name == "devbox/debian12"
    assert doctor.box_hint("devbox/debian12", "libvirt").endswith("`devbox box build`")
    assert "--release" in doctor.box_hint("devbox/debian13", "libvirt")
    other = doctor.box_hint("acme/debian12", "libvirt")
    assert "vagrant box add acme/debian12 --provider libvirt" in other and "box: devbox/debian12" in other
    vbox = doctor.box_hint("devbox/debian12", "virtualbox")
    assert "libvirt boxes only" in vbox and "--provider virtualbox" in vbox
    assert doctor.box_hint("acme/debian12", "virtualbox") == "add it: `vagrant box add acme/debian12 --provider virtualbox`"


def _ssh_argv(project, *args):
    """The argv `devbox ssh ARGS` would exec (os.execvp recorded instead of replacing the test process)."""
    seen = {}
    import os
    real = os.execvp
    os.execvp = lambda file, argv: seen.update(file=file, argv=argv)
    try:
        result = CliRunner().invoke(main, ["ssh", *args], obj=make_app(project, FakeVagrant({})))
    finally:
        os.execvp = real
    return result, seen


def test_ssh_c_runs_a_command_and_args_after_double_dash_go_to_ssh(project):
    """As `vagrant ssh NAME -c CMD -- SSH_ARGS`: the command after the destination, ssh's options before it."""
    booted_project(project)
    result, seen = _ssh_argv(project, "db-1", "-c", "ls -la /etc")
    assert_handled(result, 0)
    assert seen["file"] == "ssh" and seen["argv"][-3:] == ["vagrant@192.168.121.111", "--", "ls -la /etc"]

    result, seen = _ssh_argv(project, "web-1", "--", "-L", "8080:localhost:80")
    assert_handled(result, 0)
    argv = seen["argv"]
    assert argv[-1] == "vagrant@192.168.121.110" and argv[-3:-1] == ["-L", "8080:localhost:80"]

    result, seen = _ssh_argv(project, "web-1", "-c", "uptime", "--", "-t")
    assert_handled(result, 0)
    assert seen["argv"][-4:] == ["-t", "vagrant@192.168.121.110", "--", "uptime"]


def test_ssh_without_c_refuses_a_command_word(project):
    """`devbox ssh web-1 ls` (the old `-- CMD` habit without --) would hand `ls` to ssh as its host: refused."""
    booted_project(project)
    result, seen = _ssh_argv(project, "web-1", "ls")
    assert_handled(result, 2)
    assert "-c" in result.output and seen == {}


# ------------------------------------------------------------------------------ what users of Vagrant expect

def test_provision_dry_run_needs_no_vm(project):
    """A dry run plans only: no VM created, no connection details, no vagrant call, no Ansible run."""
    vagrant = FakeVagrant({n: "not_created" for n in BOTH})  # any call fails: ssh-config would
    result = CliRunner().invoke(main, ["provision", "--dry-run"], obj=make_app(project, vagrant))
    assert_handled(result, 0)
    assert "dry run: nothing ran" in result.output and "never provisioned by devbox" in result.output
    assert vagrant.calls == []


def test_destroy_unknown_name_is_a_usage_error_before_the_question(project):
    app = make_app(project, FakeVagrant({n: "running" for n in BOTH}))  # destroy not allowed
    result = CliRunner().invoke(main, ["destroy", "NOSUCH"], obj=app, input="y\n")
    assert_handled(result, 2)
    assert "no VM named NOSUCH" in result.output and "web-1, db-1" in result.output
    assert "Destroy" not in result.output and app.vagrant.calls == []


def test_provision_pass_through_reaches_the_runner_and_records_nothing(project):
    booted_project(project)
    before = load_state(ProjectPaths(project).state)
    runner = FakePlaybookRunner(playbook_ok(*BOTH))
    result = CliRunner().invoke(main, ["provision", "--skip-tags", "slow", "-e", "a=1", "--extra-vars", '{"b": 2}',
                                       "--diff", "-vvv"], obj=make_app(project, FakeVagrant({}), runner))
    assert_handled(result, 0)
    [call] = runner.calls
    assert (call["skip_tags"], call["extra_vars"], call["diff"], call["verbosity"], call["check"]) == (
        "slow", ("a=1", '{"b": 2}'), True, 3, False)
    assert call["playbook"] == project / "playbooks" / "site.yml"  # the whole playbook, not a subset
    assert "partial run" in result.output and "nothing recorded in the change ledger" in result.output
    assert load_state(ProjectPaths(project).state).other == before.other  # the ledger is as it was
    assert call["extravars"]["devbox_applied"]["partial"] is True  # the hosts' stamp says so too


def test_ansible_verbosity_is_not_devbox_logging(project):
    """`devbox -v up` is devbox's own log; `devbox up -vv` reaches Ansible (capped at -vvvv)."""
    booted_project(project)
    vagrant = FakeVagrant({n: "running" for n in BOTH}, allow=("status",))
    runner = FakePlaybookRunner(playbook_ok(*BOTH), playbook_ok(*BOTH))
    app = make_app(project, vagrant, runner, FakeSshProbe(ready=BOTH))
    assert_handled(CliRunner().invoke(main, ["up", "-vv"], obj=app), 0)
    assert_handled(CliRunner().invoke(main, ["-v", "provision", "--full", "-vvvvvv"], obj=app), 0)
    assert [c["verbosity"] for c in runner.calls] == [2, 4]


def test_mitogen_is_an_argument_of_the_app_call(project, monkeypatch):
    from provisioner import app as app_module
    from provisioner.adapters.mitogen import Strategy

    booted_project(project)
    chosen = Strategy(name="mitogen_linear", requested=True)
    monkeypatch.setattr(app_module, "choose_strategy", lambda requested: chosen)
    runner = FakePlaybookRunner(playbook_ok(*BOTH), playbook_ok(*BOTH))
    app = make_app(project, FakeVagrant({}), runner, FakeSshProbe(ready=BOTH))
    app.provision(full=True)
    assert runner.strategy is not chosen and app.ssh_probe.calls == []
    app.provision(full=True, mitogen=True)
    # Mitogen's SSH needs known keys: the VMs' keys are learnt first (devbox's accept-new probe)
    assert runner.strategy is chosen and [c[0] for c in app.ssh_probe.calls] == ["wait_ready"]


def changed_twice(*hosts):
    """A full run where a role's task reports changed on every host (not idempotent)."""
    from provisioner.adapters.playbook_runner import TaskChange

    result = playbook_ok(*hosts)
    return type(result)(**{**result.__dict__, "changes": tuple(TaskChange(h, "read the clock", "clock")
                                                                 for h in hosts)})


def test_idempotence_names_every_task_changed_on_the_second_run(project):
    booted_project(project)
    runner = FakePlaybookRunner(playbook_ok(*BOTH), changed_twice(*BOTH))
    result = CliRunner().invoke(main, ["idempotence"], obj=make_app(project, FakeVagrant({}), runner))
    assert_handled(result, 1)
    assert "not idempotent: 2 task(s)" in result.output
    assert "web-1: clock : read the clock" in result.output and "db-1: clock : read the clock" in result.output
    assert "changed_when" in result.output  # the next step
    assert len(runner.calls) == 2 and all(c["limit"] is None and c["tags"] is None for c in runner.calls)


def test_idempotence_passes_with_one_run_when_already_converged(project, monkeypatch):
    from provisioner.incremental import reprovision
    from provisioner.incremental.subset import IncrementalPlan, VmPlan

    booted_project(project)
    converged = IncrementalPlan(vms=tuple(VmPlan(vm=n, everything=False, units=()) for n in BOTH))
    monkeypatch.setattr(reprovision, "pending", lambda **kwargs: converged)
    runner = FakePlaybookRunner(playbook_ok(*BOTH, changed=0))
    result = CliRunner().invoke(main, ["idempotence", "web-1"], obj=make_app(project, FakeVagrant({}), runner))
    assert_handled(result, 0)
    assert "idempotent" in result.output and "1 full run" in result.output
    [call] = runner.calls
    assert call["limit"] == "web-1"


# ------------------------------------------------------------------------------------------- completion

def completions(app, args, incomplete):
    """What click's own shell completion offers for `devbox ARGS INCOMPLETE` (as bash would ask it)."""
    from click.shell_completion import ShellComplete

    return [c.value for c in ShellComplete(main, {"obj": app} if app else {}, "devbox", "_DEVBOX_COMPLETE")
            .get_completions(list(args), incomplete)]


def test_completion_offers_planned_vm_names_without_reading_production(project):
    app = make_app(project, FakeVagrant({}))
    (project / "prod" / "hosts.ini").unlink()  # the plan is read from .devbox/plan.json only
    assert completions(app, ["destroy"], "") == ["web-1", "db-1"]
    assert completions(app, ["ssh"], "d") == ["db-1"]
    assert completions(app, ["halt", "web-1"], "") == ["db-1"]  # not twice
    # without a test's app: the project of -C, as in a real shell
    assert completions(None, ["-C", str(project), "up"], "w") == ["web-1"]
    assert completions(None, ["-C", str(project / "nowhere"), "up"], "") == []  # no plan: nothing, no error


def test_completion_offers_environment_names(project):
    (project / "devbox.yml").write_text((project / "devbox.yml").read_text() + (
        "environments:\n  staging:\n    inventory: prod/hosts.ini\n"))
    app = make_app(project, FakeVagrant({}))
    assert completions(app, ["status", "--env"], "") == ["dev", "staging"]
    assert completions(app, ["provision", "--env"], "st") == ["staging"]
    assert completions(app, ["parity", "--env"], "") == ["dev", "staging"]
    (project / "devbox.yml").write_text("environments: [\n")
    assert completions(app, ["status", "--env"], "") == []


# ------------------------------------------------------------------------------ doctor: shared folders

def _descriptor(folder: Path, name: str, binary: str, kind: str = "fs") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"description": "virtiofsd", "type": kind, "binary": binary}))


def test_virtiofsd_is_found_as_libvirt_finds_it(tmp_path):
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    virtiofsd = tmp_path / "virtiofsd"
    virtiofsd.write_text("#!/bin/sh\n")
    virtiofsd.chmod(0o755)
    _descriptor(usr, "50-qemu-virtiofsd.json", "/nonexistent/virtiofsd")
    _descriptor(usr, "40-gpu.json", "/usr/lib/qemu/vhost-user-gpu", kind="gpu")
    assert doctor.virtiofsd_binary((usr, etc))[0] == Path("/nonexistent/virtiofsd")
    missing = doctor.check_virtiofs(False, (usr, etc))
    assert missing.status == "fail" and "/nonexistent/virtiofsd" in missing.detail
    assert "qemu-system-common" in missing.hint and "type: 9p" in missing.hint
    _descriptor(etc, "50-qemu-virtiofsd.json", str(virtiofsd))   # /etc overrides the same name in /usr/share
    assert doctor.check_virtiofs(False, (usr, etc)) == doctor.Check("shared folders (virtiofs)", "ok",
                                                                     f"virtiofsd {virtiofsd}")
    none = doctor.check_virtiofs(False, (tmp_path / "empty",))
    assert none.status == "fail" and "no vhost-user descriptor of type fs" in none.detail
    assert doctor.check_virtiofs(True, (usr, etc)).status == "warn"   # a remote hypervisor is not looked into


def test_this_machines_qemu_has_virtiofsd_and_9p(project):
    """The real descriptors and qemu of this machine (Debian 12: qemu-system-common ships virtiofsd)."""
    app = make_app(project, FakeVagrant({})).project()
    assert doctor.check_virtiofs(False).status == "ok"
    assert doctor.check_9p(app, False) == doctor.Check("shared folders (9p)", "ok", "qemu has virtio-9p")


@pytest.fixture
def open_tmp():
    """A folder every user may enter (pytest's own temporary folders are private to root)."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="devbox-test-"))
    yield folder
    shutil.rmtree(folder)


def test_a_9p_folder_qemu_cannot_read_is_named(open_tmp):
    tmp_path = open_tmp
    closed = tmp_path / "closed"
    (closed / "src").mkdir(parents=True)
    tmp_path.chmod(0o755)
    closed.chmod(0o700)
    assert doctor.unreadable_by_others(closed / "src") == closed
    closed.chmod(0o755)
    (closed / "src").chmod(0o751)   # others may enter but not list
    assert doctor.unreadable_by_others(closed / "src") == closed / "src"
    (closed / "src").chmod(0o755)
    assert doctor.unreadable_by_others(closed / "src") is None


def test_doctor_checks_only_the_mechanisms_the_shares_use(project):
    (project / "src").mkdir()
    app = make_app(project, FakeVagrant({})).project()
    from provisioner.config.schema import parse_config

    def names(folders, provider="libvirt", uri="qemu:///system"):
        config = parse_config({"provider": provider, "shared_folders": folders}, project / "devbox.yml")
        return [job().name for job in doctor.share_jobs(app, config, uri)]

    share = {"host": "src", "guest": "/srv/app", "to": ["web"]}
    assert names([]) == []
    assert names([share]) == ["shared folders (virtiofs)"]   # auto is virtiofs on libvirt
    # pytest's folders are private to root, so qemu's user could not read this one over 9p
    assert names([{**share, "type": "9p"}]) == ["shared folders (9p)", "shared folders (9p)"]
    assert "chmod o+rx" in doctor.check_9p_folders(app, parse_config(
        {"shared_folders": [{**share, "type": "9p"}]}, project / "devbox.yml")).hint
    assert names([share], provider="virtualbox") == []
    remote = doctor.share_jobs(app, parse_config({"shared_folders": [{**share, "type": "9p"}]}, project / "devbox.yml"),
                               "qemu+ssh://ops@hv1/system")
    assert [job().status for job in remote] == ["warn"]
