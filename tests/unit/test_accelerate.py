"""Opt-in Mitogen: the choice and its fallbacks, then real ansible-runner runs over SSH to a loopback sshd showing
that the Mitogen run keeps one Python per host for the whole run while Ansible's default starts one per task."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from ansible import __version__ as ANSIBLE_VERSION
from ansible.errors import AnsibleError

from provisioner.adapters import mitogen as accelerate
from provisioner.adapters.mitogen import DEFAULT, MITOGEN_STRATEGY, choose
from provisioner.adapters.playbook_runner import AnsibleRunnerPlaybookRunner
from provisioner.adapters.ssh_probe import ParamikoSshProbe, ProjectKnownHosts, SshTarget


def test_not_requested_is_ansibles_default_with_no_environment():
    assert choose(False) is DEFAULT
    assert DEFAULT.name == "linear" and dict(DEFAULT.env) == {} and not DEFAULT.requested


def _raises(exc):
    def load():
        raise exc
    return load


def test_missing_mitogen_falls_back_and_says_how_to_install_it():
    s = choose(True, load=_raises(ImportError("No module named 'ansible_mitogen'")))
    assert s.name == "linear" and dict(s.env) == {} and s.requested
    assert "not installed" in s.fallback and accelerate.INSTALL_HINT in s.fallback
    assert s.describe().startswith("Mitogen not used (") and "Ansible's linear strategy" in s.describe()


def test_mitogen_refusing_this_ansible_core_falls_back_with_its_reason():
    refusal = AnsibleError("Your version of Ansible (2.99.0) is too recent. The most recent version\nsupported...")
    s = choose(True, load=_raises(refusal))
    assert s.name == "linear" and dict(s.env) == {}
    assert f"ansible-core {ANSIBLE_VERSION}" in s.fallback and "(2.99.0) is too recent" in s.fallback
    assert "supported..." not in s.fallback  # the first line only


MITOGEN_REQUIRED = "Mitogen is required for this test: pip install -e '.[test]' (it is in the test extra)"


def require_mitogen() -> None:
    """Tests of the Mitogen run itself fail (never skip) with the install command when Mitogen cannot load here,
    instead of an assertion about a strategy name that only the fallback explains."""
    problem = None
    try:
        accelerate._load_mitogen()
    except ImportError as exc:
        problem = f"{MITOGEN_REQUIRED}; import failed: {exc}"
    except Exception as exc:  # Mitogen's own check of the ansible-core version
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        problem = (f"the installed Mitogen does not support ansible-core {ANSIBLE_VERSION}: {first}; install a "
                   "release that does (pip install -e '.[test]' --upgrade)")
    if problem:   # outside the except: the message alone, no chained traceback
        pytest.fail(problem, pytrace=False)


def test_a_missing_mitogen_fails_the_tests_that_need_it_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ansible_mitogen", None)   # `import ansible_mitogen` raises ImportError
    with pytest.raises(pytest.fail.Exception) as failed:
        require_mitogen()
    assert str(failed.value).startswith(MITOGEN_REQUIRED)


def test_installed_mitogen_selects_its_linear_strategy_and_keeps_the_users_plugin_folders():
    require_mitogen()
    s = choose(True, environ={"ANSIBLE_STRATEGY_PLUGINS": "/team/strategies"})
    assert s.name == MITOGEN_STRATEGY and s.fallback is None and s.describe() == f"strategy: {MITOGEN_STRATEGY}"
    first, kept = s.env["ANSIBLE_STRATEGY_PLUGINS"].split(":")
    assert (Path(first) / f"{MITOGEN_STRATEGY}.py").is_file() and kept == "/team/strategies"
    assert s.env["ANSIBLE_STRATEGY"] == MITOGEN_STRATEGY


# Two tasks print the process that started their shell: a new Python per task with Ansible's default connection,
# the same Python for both under Mitogen.
SITE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: first
      ansible.builtin.shell: echo "$PPID"
    - name: second
      ansible.builtin.shell: echo "$PPID"
"""


@pytest.mark.ansible
@pytest.mark.parametrize("mitogen", [False, True], ids=["default", "mitogen"])
def test_real_run_over_ssh_uses_one_python_per_host_only_with_mitogen(tmp_path, sshd, mitogen):
    inventory = tmp_path / "hosts.yml"
    host = {**sshd.ansible_login, "ansible_python_interpreter": sys.executable}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"vm-1": host}}}))
    playbook = tmp_path / "site.yml"
    playbook.write_text(SITE)
    runner = AnsibleRunnerPlaybookRunner(runner_dir=tmp_path / "runner", logs_dir=tmp_path / "logs",
                                         known_hosts=tmp_path / "known_hosts")
    if mitogen:
        require_mitogen()
    runner.strategy = choose(mitogen)
    if runner.strategy.needs_known_host_keys:  # as `devbox up`/`provision` do first: devbox's accept-new probe
        target = SshTarget("vm-1", "127.0.0.1", sshd.port, "root", str(sshd.client_key))
        assert ParamikoSshProbe(known_hosts=tmp_path / "known_hosts").wait_ready(targets=[target], timeout=30)["vm-1"].ready
    parents = {}

    def on_event(event):
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok":
            parents[data["task"]] = data["res"]["stdout"].strip()

    result = runner.run(playbook=playbook, inventory=inventory, forks=1, on_event=on_event)
    assert result.ok, (result.failures, Path(result.log_path).read_text()[-3000:])
    assert result.strategy.name == (MITOGEN_STRATEGY if mitogen else "linear")
    assert set(parents) == {"first", "second"} and all(p.isdigit() for p in parents.values())
    assert (parents["first"] == parents["second"]) is mitogen, parents
    # the host key is in the project's known_hosts either way
    assert ProjectKnownHosts(tmp_path / "known_hosts").knows("127.0.0.1", sshd.port)
