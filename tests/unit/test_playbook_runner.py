"""The Ansible adapter: real ansible-runner runs against localhost (two inventory names, local connection)."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import ansible.release
import pytest

from provisioner.errors import CommandFailed, DevboxError
from provisioner.adapters.playbook_runner import (AnsibleRunnerPlaybookRunner, HostSummary, TaskChange, TaskFailure,
                                                  ansible_env,
                                         failure_from_event, summarize)

DATA = Path(__file__).resolve().parent.parent / "data" / "ansible"
INVENTORY = DATA / "inventory"


# -------------------------------------------------------------------------------------------- pure parts

def test_summarize_stats():
    stats = {"ok": {"web-1": 5, "db-1": 3}, "changed": {"web-1": 2}, "failures": {"db-1": 1},
             "dark": {}, "skipped": {"web-1": 1}, "processed": {"web-1": 1, "db-1": 1, "lb-1": 1}}
    hosts = summarize(stats, {"web-1": 12.34})
    assert [h.host for h in hosts] == ["db-1", "lb-1", "web-1"]
    assert hosts[2] == HostSummary("web-1", ok=5, changed=2, skipped=1, duration=12.3)
    assert hosts[0].failed == 1 and not hosts[0].succeeded
    assert hosts[1] == HostSummary("lb-1")  # processed but no task counted (e.g. all hosts limited out)
    assert summarize(None) == ()


def test_failure_from_event_names_role_task_and_stderr():
    event = {"event": "runner_on_failed", "event_data": {
        "host": "web-1", "task": "start app", "role": "app", "ignore_errors": None,
        "res": {"msg": "non-zero return code", "stderr": "app: config missing"}}}
    assert failure_from_event(event) == TaskFailure("web-1", "app : start app",
                                                    "non-zero return code\napp: config missing")
    ignored = {"event": "runner_on_failed", "event_data": {**event["event_data"], "ignore_errors": True}}
    assert failure_from_event(ignored) is None
    assert failure_from_event({"event": "runner_on_ok", "event_data": {"host": "x"}}) is None
    unreachable = failure_from_event({"event": "runner_on_unreachable", "event_data": {
        "host": "db-1", "task": "Gathering Facts", "res": {"msg": "ssh: connect to host refused"}}})
    assert unreachable.unreachable and "unreachable" in str(unreachable)


def test_ansible_env_is_safe_and_uses_this_python(tmp_path):
    env = ansible_env(known_hosts=tmp_path / "known_hosts", log_path=tmp_path / "ansible.log")
    import sys
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "StrictHostKeyChecking=accept-new" in env["ANSIBLE_SSH_ARGS"]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in env["ANSIBLE_SSH_ARGS"]
    assert "ControlPersist" in env["ANSIBLE_SSH_ARGS"] and env["ANSIBLE_PIPELINING"] == "True"
    assert "=no" not in env["ANSIBLE_SSH_ARGS"]
    # the control socket path must fit a unix socket (108 bytes) with OpenSSH's 40-character %C
    cp = Path(env["ANSIBLE_SSH_CONTROL_PATH_DIR"])
    assert len(str(cp)) + 1 + 40 < 100
    assert stat.S_IMODE(cp.stat().st_mode) == 0o700


def test_control_folder_can_be_set_per_lab_and_must_stay_short(tmp_path, monkeypatch):
    short = Path(tempfile.mkdtemp(prefix="cp-"))  # pytest's tmp_path is itself too deep for a socket folder
    try:
        monkeypatch.setenv("DEVBOX_SSH_CONTROL_DIR", str(short / "lab" / "ssh"))
        env = ansible_env(known_hosts=tmp_path / "known_hosts", log_path=tmp_path / "ansible.log")
        assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(short / "lab" / "ssh")
        assert stat.S_IMODE((short / "lab" / "ssh").stat().st_mode) == 0o700
    finally:
        shutil.rmtree(short)
    monkeypatch.setenv("DEVBOX_SSH_CONTROL_DIR", "/" + "x" * 80)
    with pytest.raises(DevboxError, match="too long"):
        ansible_env(known_hosts=tmp_path / "known_hosts", log_path=tmp_path / "ansible.log")


# ------------------------------------------------------------------------------------ real ansible runs

@pytest.fixture
def runner(tmp_path):
    return AnsibleRunnerPlaybookRunner(runner_dir=tmp_path / "runner", logs_dir=tmp_path / "logs",
                                       known_hosts=tmp_path / "known_hosts")


@pytest.mark.ansible
def test_success_changed_counts_progress_and_venv_ansible(runner, tmp_path):
    progress = []
    result = runner.run(playbook=DATA / "ok.yml", inventory=INVENTORY, forks=2,
                        extravars={"marker_dir": str(tmp_path)}, on_progress=lambda h, m: progress.append((h, m)))
    assert result.ok and result.failures == ()
    assert {h.host: (h.ok, h.changed, h.skipped, h.failed) for h in result.hosts} == {
        "alpha": (2, 1, 1, 0), "beta": (2, 1, 1, 0)}
    assert ("alpha", "write a marker") in progress and ("beta", "always ok") in progress
    # the venv's ansible-core ran, not whatever else is on PATH
    assert (tmp_path / "alpha").read_text().strip() == ansible.release.__version__
    assert "write a marker" in Path(result.log_path).read_text()
    again = runner.run(playbook=DATA / "ok.yml", inventory=INVENTORY, forks=2, extravars={"marker_dir": str(tmp_path)})
    assert [h.changed for h in again.hosts] == [0, 0] and again.changes == ()  # idempotent second run


@pytest.mark.ansible
def test_failing_task_names_host_task_and_message(runner):
    result = runner.run(playbook=DATA / "fail.yml", inventory=INVENTORY, forks=2)
    assert not result.ok and result.status == "failed"
    assert result.failures == (TaskFailure("beta", "break on beta", "beta is broken on purpose"),)
    assert result.host("alpha").succeeded and result.host("alpha").ok == 2
    assert result.host("beta").failed == 1


@pytest.mark.ansible
def test_limit_and_check_mode(runner, tmp_path):
    result = runner.run(playbook=DATA / "ok.yml", inventory=INVENTORY, forks=2, limit="beta", check=True,
                        extravars={"marker_dir": str(tmp_path)})
    assert result.ok and [h.host for h in result.hosts] == ["beta"]
    assert result.host("beta").changed == 1
    assert not (tmp_path / "beta").exists()  # --check changed nothing


@pytest.mark.ansible
def test_broken_playbook_raises_with_ansible_error(runner):
    with pytest.raises(CommandFailed) as err:
        runner.run(playbook=DATA / "broken.yml", inventory=INVENTORY, forks=2)
    assert "no_such_module_anywhere" in err.value.output_tail
    assert err.value.log_path.endswith("ansible.log")


def test_missing_playbook_or_inventory(runner, tmp_path):
    with pytest.raises(DevboxError, match="does not exist"):
        runner.run(playbook=tmp_path / "nope.yml", inventory=INVENTORY, forks=1)
    with pytest.raises(DevboxError, match="inventory .*nope does not exist") as err:
        runner.run(playbook=DATA / "ok.yml", inventory=tmp_path / "nope", forks=1)
    assert "devbox init" in err.value.hint


@pytest.mark.ansible
def test_changed_tasks_are_named_with_host_and_role(runner, tmp_path):
    """What `devbox idempotence` reads: every task that reported changed, from ansible-runner's events."""
    first = runner.run(playbook=DATA / "not_idempotent.yml", inventory=INVENTORY, forks=2,
                       extravars={"marker_dir": str(tmp_path)})
    assert first.ok
    assert {str(c) for c in first.changes} == {"alpha: clock : read the clock", "beta: clock : read the clock",
                                               "alpha: write the greeting", "beta: write the greeting"}
    second = runner.run(playbook=DATA / "not_idempotent.yml", inventory=INVENTORY, forks=2,
                        extravars={"marker_dir": str(tmp_path)})
    assert sorted(second.changes, key=str) == [TaskChange("alpha", "read the clock", "clock"),
                                               TaskChange("beta", "read the clock", "clock")]


@pytest.mark.ansible
def test_pass_through_options_reach_ansible_playbook(runner, tmp_path):
    """--skip-tags, -e (repeated, as typed), --diff and -vvv as ansible-playbook gets them."""
    result = runner.run(playbook=DATA / "not_idempotent.yml", inventory=INVENTORY, forks=2, limit="alpha",
                        extravars={"marker_dir": str(tmp_path)}, extra_vars=("greeting=hello", '{"unused": 1}'),
                        diff=True, verbosity=3)
    assert result.ok and (tmp_path / "alpha").read_text() == "hello\n"
    assert result.argv[-6:] == ("-vvv", "--diff", "-e", "greeting=hello", "-e", '{"unused": 1}')
    log = Path(result.log_path).read_text()
    assert "ESTABLISH LOCAL CONNECTION" in log  # -vvv reached Ansible (its connection plugin's -vvv message)
    (tmp_path / "alpha").unlink()
    skipped = runner.run(playbook=DATA / "not_idempotent.yml", inventory=INVENTORY, forks=2, limit="alpha",
                         extravars={"marker_dir": str(tmp_path)}, skip_tags="marker")
    assert skipped.ok and not (tmp_path / "alpha").exists()
    assert [str(c) for c in skipped.changes] == ["alpha: clock : read the clock"]


def test_close_connections_asks_ssh_to_stop_the_master_and_is_fine_without_one(tmp_path, monkeypatch):
    """The real ssh: `-O exit` on a ControlPath with no master answers 255 and devbox carries on."""
    short = Path(tempfile.mkdtemp(prefix="dbx-cp-"))   # a unix socket path must stay short
    monkeypatch.setenv("DEVBOX_SSH_CONTROL_DIR", str(short / "cp"))
    runner = AnsibleRunnerPlaybookRunner(runner_dir=tmp_path / "runner", logs_dir=tmp_path / "logs",
                                         known_hosts=tmp_path / "known_hosts")
    runner.close_connections(targets=[("192.0.2.1", 2222, "vagrant")])
    log = (tmp_path / "logs" / "ssh-control.log").read_text()
    shutil.rmtree(short)
    assert f"ControlPath={short / 'cp'}/%C -O exit -p 2222 vagrant@192.0.2.1" in log
    assert "Control socket connect" in log and "No such file or directory" in log
