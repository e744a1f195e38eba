"""The Vagrant adapter: pure parsers on captured output, and the real `vagrant` binary for the read commands
and failures (no VM is booted here; the lab tier does that)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from provisioner.errors import CommandFailed, DevboxError
from provisioner.adapters.vagrant_driver import (SSH_DETAILS_DIR, MachineState, PythonVagrantDriver, SshConfig, machine_readable_error,
                                        parse_machine_readable, parse_snapshot_list, parse_ssh_config,
                                        parse_status, snapshot_argv)

DATA = Path(__file__).resolve().parent.parent / "data" / "vagrant"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_parse_status_not_created_capture():
    states = parse_status(read("status-not-created.txt"))
    assert list(states) == ["web-1", "db-1"]  # Vagrantfile order, not the order of the first line mentioning them
    assert states["web-1"] == MachineState("web-1", "not_created", "libvirt")


def test_parse_status_normalises_libvirt_shutoff():
    states = parse_status(read("status-halted.txt"))
    assert {n: s.state for n, s in states.items()} == {"web-1": "poweroff", "db-1": "poweroff"}


def test_parse_status_ignores_non_machine_lines():
    text = "Vagrant failed to initialize a plugin, continuing\n" + read("status-not-created.txt")
    assert set(parse_status(text)) == {"web-1", "db-1"}


def test_machine_readable_unescapes_commas_and_newlines():
    rows = parse_machine_readable(read("status-not-created.txt"))
    ui = [data for target, kind, data in rows if kind == "ui"]
    assert "VM, run `vagrant status NAME`" in ui[0] and "\n" in ui[0]


def test_error_exit_is_found():
    assert "'nope' was not found" in machine_readable_error(read("status-machine-not-found.txt"))
    assert machine_readable_error(read("status-not-created.txt")) is None
    assert parse_status(read("status-machine-not-found.txt")) == {}


def test_parse_ssh_config_two_hosts():
    configs = parse_ssh_config(read("ssh-config-two.txt"))
    assert configs["web-1"] == SshConfig("web-1", "192.168.121.57", 22, "vagrant",
                                         "/home/dev/project/.vagrant/machines/web-1/libvirt/private_key",
                                         configs["web-1"].options)
    # quoted path with a space; the first IdentityFile wins, as for ssh
    assert configs["db-1"].identity_file == "/home/dev/my project/.vagrant/machines/db-1/libvirt/private_key"
    assert ("stricthostkeychecking", "no") in configs["db-1"].options


def test_parse_ssh_config_roundtrips_through_json():
    cfg = parse_ssh_config(read("ssh-config-two.txt"))["web-1"]
    assert SshConfig.from_json("web-1", cfg.to_json()) == SshConfig(cfg.name, cfg.host, cfg.port, cfg.user,
                                                                     cfg.identity_file)


def test_parse_ssh_config_without_port_is_an_error():
    with pytest.raises(DevboxError, match="no port for web-1"):
        parse_ssh_config("Host web-1\n  HostName 10.0.0.1\n  User vagrant\n")


def test_parse_ssh_config_error_text_gives_nothing():
    assert parse_ssh_config(read("ssh-config-not-created.txt")) == {}


def test_parse_ssh_config_skips_what_vagrant_prints_before_the_host_blocks():
    text = read("ssh-config-not-created.txt") + "\n" + read("ssh-config-two.txt")
    assert list(parse_ssh_config(text)) == ["web-1", "db-1"]


def test_parse_ssh_config_garbage_in_a_block_is_an_error_not_a_traceback():
    with pytest.raises(DevboxError, match="ssh_config cannot hold") as err:
        parse_ssh_config("Host web-1\n  HostName 10.0.0.1\n  you're using.\n")
    assert "vagrant ssh-config" in err.value.hint


# ------------------------------------------------------------------------- the real vagrant binary, no VMs

vagrant_bin = pytest.mark.vagrant


@pytest.fixture
def project(tmp_path):
    shutil.copy(DATA / "two-machines.Vagrantfile", tmp_path / "Vagrantfile")
    return tmp_path


@pytest.fixture
def driver(project):
    return PythonVagrantDriver(root=project, logs_dir=project / ".devbox" / "logs")


@vagrant_bin
def test_real_status_of_not_created_machines(driver):
    states = driver.status()
    assert {n: s.state for n, s in states.items()} == {"web-1": "not_created", "db-1": "not_created"}
    assert (driver.logs_dir / "vagrant-read.log").read_text().count("status --machine-readable") == 1


@vagrant_bin
def test_real_ssh_config_failure_raises_with_evidence(driver):
    # python-vagrant would return "" here; the driver must not
    with pytest.raises(CommandFailed) as err:
        driver.ssh_config()
    exc = err.value
    assert exc.argv == ["vagrant", "ssh-config"] and exc.returncode == 1
    assert "not yet ready for SSH" in exc.output_tail
    assert exc.log_path.endswith("vagrant-read.log") and Path(exc.log_path).exists()


@vagrant_bin
def test_real_up_of_unknown_machine_raises_with_log_tail(driver):
    with pytest.raises(CommandFailed) as err:
        driver.up(names=["nope"])
    exc = err.value
    assert exc.argv == ["vagrant", "up", "--no-provision", "--parallel", "nope"]
    assert "nope" in exc.output_tail and "was not found" in exc.output_tail
    assert exc.log_path.endswith("vagrant-up.log")
    assert "full log:" in str(exc)


@vagrant_bin
def test_real_validate(driver, project):
    driver.validate()
    (project / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\n  config.vm.nonsense = 1\nend\n')
    with pytest.raises(CommandFailed, match="Vagrant rejected the Vagrantfile"):
        driver.validate()


def test_recorded_ssh_config_takes_only_what_this_boot_wrote(project):
    driver = PythonVagrantDriver(root=project, logs_dir=project / "logs")
    folder = project / SSH_DETAILS_DIR
    folder.mkdir(parents=True)
    details = {"host": "192.168.121.7", "port": 22, "user": "vagrant", "identity_file": "/p/.vagrant/key"}
    (folder / "web-1.json").write_text(json.dumps(details))
    (folder / "db-1.json").write_text(json.dumps({**details, "host": "192.168.121.8"}))
    os.utime(folder / "db-1.json", (1000, 1000))  # from an earlier boot: its lease may have changed
    (folder / "cache-1.json").write_text("{not json")
    since = time.time() - 60
    found = driver.recorded_ssh_config(names=["web-1", "db-1", "cache-1", "lb-1"], since=since)
    assert found == {"web-1": SshConfig("web-1", "192.168.121.7", 22, "vagrant", "/p/.vagrant/key")}


def test_none_created_reads_vagrants_machine_folder(project, monkeypatch):
    monkeypatch.delenv("VAGRANT_DOTFILE_PATH", raising=False)
    driver = PythonVagrantDriver(root=project, logs_dir=project / "logs")
    assert driver.none_created(["web-1", "db-1"])
    (project / ".vagrant" / "machines" / "db-1" / "libvirt").mkdir(parents=True)
    assert driver.none_created(["web-1", "db-1"])  # a folder without an id: created and destroyed again
    (project / ".vagrant" / "machines" / "db-1" / "libvirt" / "id").write_text("3f1c")
    assert driver.none_created(["web-1"]) and not driver.none_created(["web-1", "db-1"])
    assert not driver.none_created([])  # "all machines": unknown which, so Vagrant is asked
    moved = PythonVagrantDriver(root=project, logs_dir=project / "logs", env={"VAGRANT_DOTFILE_PATH": "elsewhere"})
    assert moved.none_created(["db-1"])


@vagrant_bin
def test_real_status_without_vagrantfile_fails(tmp_path):
    with pytest.raises(CommandFailed):
        PythonVagrantDriver(root=tmp_path, logs_dir=tmp_path / "logs").status()


def test_ctrl_c_waits_for_vagrant_to_clean_up_then_interrupts(tmp_path, monkeypatch):
    """Our own signal handling, with a stand-in `vagrant` on PATH that takes a second to 'clean up'."""
    import os
    import signal
    import threading
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vagrant"
    fake.write_text(f"#!/bin/sh\necho booting\nsleep 1\necho cleaned up > {tmp_path}/cleaned\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    driver = PythonVagrantDriver(root=tmp_path, logs_dir=tmp_path / "logs")
    # whatever handler was there before (an earlier ansible-runner run in this process leaves its own)
    handler_before = signal.getsignal(signal.SIGINT)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        driver.up(names=["web-1"])
    assert time.monotonic() - started >= 0.9  # vagrant was not killed at the first Ctrl-C
    assert (tmp_path / "cleaned").exists()
    assert signal.getsignal(signal.SIGINT) is handler_before  # our handler is gone again


def test_parsers_on_output_captured_from_booted_lab_vms():
    states = parse_status(read("status-running.txt"))
    assert {n: (s.state, s.provider) for n, s in states.items()} == {"web-1": ("running", "libvirt"),
                                                                     "db-1": ("running", "libvirt")}
    configs = parse_ssh_config(read("ssh-config-running.txt"))
    assert list(configs) == ["web-1", "db-1"]
    web = configs["web-1"]
    assert (web.host, web.port, web.user) == ("192.168.121.198", 22, "vagrant")
    assert web.identity_file == "/home/dev/project/.vagrant/machines/web-1/libvirt/private_key"
    # Vagrant's own insecure settings are kept aside, never used by devbox's connections
    assert ("stricthostkeychecking", "no") in web.options and ("userknownhostsfile", "/dev/null") in web.options


# ------------------------------------------------------------------------------------------------ snapshots

def test_snapshot_argv_per_action():
    assert snapshot_argv("save", "web-1", "s1") == ["snapshot", "save", "--force", "web-1", "s1"]
    assert snapshot_argv("restore", "web-1", "s1") == ["snapshot", "restore", "--no-provision", "web-1", "s1"]
    assert snapshot_argv("delete", "db-1", "s1") == ["snapshot", "delete", "db-1", "s1"]


# Vagrant's machine-readable UI (lib/vagrant/ui.rb, MachineReadable#machine: `time,target,ui,LEVEL,message`) as
# `vagrant snapshot list` (plugins/commands/snapshot/command/list.rb) prints it for a machine with snapshots
# (an empty prefixed output line, then one detail line per snapshot), one without, and one not created.
SNAPSHOT_LIST = """\
1796083782,web-1,metadata,provider,libvirt
1796083782,db-1,metadata,provider,libvirt
1796083782,lb-1,metadata,provider,libvirt
1796083782,web-1,ui,output,==> web-1: 
1796083782,web-1,ui,detail,converged
1796083782,web-1,ui,detail,before-upgrade
1796083782,db-1,ui,output,==> db-1: No snapshots have been taken yet!
1796083782,db-1,ui,detail,You can take a snapshot using `vagrant snapshot save`. Note that\\nnot all providers
1796083782,lb-1,ui,info,==> lb-1: VM not created. Moving on...
"""


def test_parse_snapshot_list():
    assert parse_snapshot_list(SNAPSHOT_LIST) == {"web-1": ("converged", "before-upgrade"), "db-1": ()}


@vagrant_bin
def test_real_snapshot_list_of_machines_not_created(driver):
    assert driver.snapshot_list() == {}
    assert "snapshot list --machine-readable" in (driver.logs_dir / "vagrant-read.log").read_text()


@vagrant_bin
def test_real_vagrant_takes_the_snapshot_arguments_devbox_builds(driver):
    """Vagrant's own option parser accepts each command as devbox builds it (an unknown option or a wrong number
    of arguments stops there with its usage text); what follows needs a created machine, which only the lab
    has: `save` skips a machine not created with exit code 0 (so devbox checks first), `restore` and `delete`
    fail on it."""
    run = driver.snapshot_save(name="web-1", snapshot="s1")
    log = Path(run.log_path).read_text()
    assert "has not been created yet, and therefore cannot save snapshots" in log, log
    for action, call in (("restore", driver.snapshot_restore), ("delete", driver.snapshot_delete)):
        with pytest.raises(CommandFailed) as err:
            call(name="web-1", snapshot="s1")
        assert err.value.argv == ["vagrant", *snapshot_argv(action, "web-1", "s1")]
        assert "Usage: vagrant snapshot" not in err.value.output_tail and "invalid option" not in err.value.output_tail
    with pytest.raises(CommandFailed) as err:  # the check is worth something: a bad option is refused there
        driver._change("snapshot", ["snapshot", "restore", "--no-such-option", "web-1", "s1"], "x", "y")
    assert "invalid option" in err.value.output_tail or "Usage: vagrant snapshot" in err.value.output_tail
