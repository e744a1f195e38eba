"""A staging run end to end against a REAL sshd on loopback, with real ansible-runner runs over SSH.

"staging" here is two inventory hosts reached at 127.0.0.1:<port>, with its own vault (canary value, test-only
password). The project also has a production inventory (with its own vault) that must never be touched.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from provisioner.environments.runs import EnvironmentRuns, private_secret_file, real_runner
from provisioner.environments.model import DEV_ENVIRONMENT
from provisioner.errors import SafetyError, UsageError
from helpers import assert_handled
from sshd_server import Sshd, free_port  # tests/unit/sshd_server.py

ENVS = Path(__file__).resolve().parents[1] / "data" / "envs"
STAGING_PASSWORD = (ENVS / "staging-vault-password.txt").read_text().strip()
CANARIES = ("CANARY-STAGING-4b8a2e60", "CANARY-PROD-7f3e9c1d", "CANARY-PROD-TOKEN-91ac55e2", STAGING_PASSWORD,
            (ENVS / "production-vault-password.txt").read_text().strip())

SITE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: the staging secret decrypts (never shown)
      ansible.builtin.assert:
        that: vault_db_password | length > 10
      no_log: true
    - name: deploy
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.txt"
        content: "release for {{ inventory_hostname }}\\n"
"""

pytestmark = pytest.mark.ansible


@pytest.fixture
def project(tmp_path, sshd):
    root = tmp_path / "project"
    shutil.copytree(ENVS / "production", root / "inventories" / "production")
    staging = root / "inventories" / "staging"
    (staging / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(ENVS / "staging" / "group_vars" / "all" / "vault.yml", staging / "group_vars" / "all" / "vault.yml")
    host = {**sshd.ansible_login, "ansible_python_interpreter": sys.executable, "ansible_become": False,
            "out_dir": str(tmp_path / "deployed")}
    (staging / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"web": {"hosts": {"web-s1": host}},
                                                                           "db": {"hosts": {"db-s1": host}}}}}))
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text(SITE)
    (root / "devbox.yml").write_text(yaml.safe_dump({
        "inventory": "inventories/production", "playbook": "playbooks/site.yml",
        "environments": {"staging": {"inventory": "inventories/staging", "vault_id": "staging"}}}))
    (tmp_path / "deployed").mkdir()
    return root


class CountingFactory:
    def __init__(self):
        self.calls = 0

    def __call__(self, settings):
        self.calls += 1
        return real_runner(settings)


def runs(project, factory=None):
    # the stamp goes to a file of the test, not this machine's /etc
    return EnvironmentRuns(project, runner_factory=factory or real_runner,
                           applied_path=str(project.parent / "host-etc" / "applied.json"))


def ask_password(env):
    assert env.name == "staging"
    return STAGING_PASSWORD


def files_written(root: Path):
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_unknown_host_key_stops_the_run_before_any_ansible(project, tmp_path):
    factory = CountingFactory()
    r = runs(project, factory)
    plan = r.plan("staging", env_explicit=True, yes=True)
    with pytest.raises(SafetyError, match="not trusted; nothing was run") as err:
        r.provision(plan, confirm=lambda *a: pytest.fail("no confirmation before trust"), ask_password=ask_password)
    assert "web-s1" in str(err.value) and "db-s1" in str(err.value)
    assert factory.calls == 0 and not list((tmp_path / "deployed").iterdir())


def test_staging_run_confirms_applies_stamps_and_reports(project, tmp_path, sshd):
    # other devbox processes on the machine hold their own password folders (named with their pid): only this
    # process's count, compared with before
    mine = f"devbox-vault-{os.getpid()}-*"
    shm_before = set(Path("/dev/shm").glob(mine))  # empty where /dev/shm does not exist
    r = runs(project)
    env, checks = r.scan_keys("staging")
    assert {c.status for c in checks} == {"unknown"} and len(checks) == 2
    recorded = r.record_keys(env, checks)
    assert env.known_hosts == project / "environments" / "staging.known_hosts" and env.known_hosts.exists()
    assert len(recorded) == 2

    plan = r.plan("staging", env_explicit=True, yes=False)
    assert plan.check_first and plan.ask_confirmation
    assert sorted(h.name for h in plan.hosts) == ["db-s1", "web-s1"]

    # a wrong answer: the check ran (and showed the change), nothing was applied
    shown = []
    with pytest.raises(SafetyError, match="nothing was applied"):
        r.provision(plan, confirm=lambda p, check: shown.append(check) or "yes", ask_password=ask_password)
    assert shown[0].result.ok and all(h.changed == 1 for h in shown[0].result.hosts)
    deploy = {c.host: c for c in shown[0].changes}
    assert sorted(deploy) == ["db-s1", "web-s1"] and deploy["web-s1"].task == "deploy"
    assert "+release for web-s1" in deploy["web-s1"].diff
    assert not list((tmp_path / "deployed").iterdir())

    # the right answer
    result = r.provision(plan, confirm=lambda p, check: "staging", ask_password=ask_password)
    assert result.ok and sorted(result.stamped) == ["db-s1", "web-s1"]
    assert sorted(p.name for p in (tmp_path / "deployed").iterdir()) == ["db-s1.txt", "web-s1.txt"]
    stamp = json.loads((tmp_path / "host-etc" / "applied.json").read_text())
    assert stamp["environment"] == "staging" and stamp["playbook"] == "playbooks/site.yml"
    assert stamp["revision"] == "unversioned"  # the test project is not a git checkout

    revisions = r.revisions("staging", ask_password=ask_password)
    assert {h.host: h.revision for h in revisions} == {"web-s1": "unversioned", "db-s1": "unversioned"}

    # the prompted password existed only as a temp file during the runs, and no secret reached any file
    leftovers = set(Path("/dev/shm").glob(mine)) - shm_before
    assert leftovers == set()
    for path in files_written(project):
        text = path.read_bytes()
        for canary in CANARIES:
            assert canary.encode() not in text, f"{canary} leaked into {path}"

    # the host is rebuilt (or impersonated): the next run stops before any task
    sshd.restart(new_keys=True)
    with pytest.raises(SafetyError, match="changed"):
        r.provision(plan, confirm=lambda *a: "staging", ask_password=ask_password)


def test_yes_with_explicit_env_skips_the_prompt_and_no_check_first_skips_the_check(project, tmp_path):
    r = runs(project)
    env, checks = r.scan_keys("staging")
    r.record_keys(env, checks)
    plan = r.plan("staging", env_explicit=True, yes=True, no_check_first=True)
    assert not plan.ask_confirmation and not plan.check_first
    result = r.provision(plan, confirm=lambda *a: pytest.fail("--yes --env staging asks nothing"),
                         ask_password=ask_password)
    assert result.ok and result.check is None


def test_a_staging_inventory_pointing_at_production_is_refused(project):
    hosts = project / "inventories" / "staging" / "hosts.yml"
    data = yaml.safe_load(hosts.read_text())
    data["all"]["children"]["db"]["hosts"]["db-s1"]["ansible_host"] = "10.20.0.11"  # production web1
    hosts.write_text(yaml.safe_dump(data))
    with pytest.raises(SafetyError, match=r"db-s1 \(10.20.0.11:\d+\) reaches production host web1 \(10.20.0.11:22\)"):
        runs(project).plan("staging", env_explicit=True, yes=True)


def test_dev_and_unknown_environments_are_not_run_here(project):
    with pytest.raises(UsageError, match="without --env"):
        runs(project).plan(None, env_explicit=False)
    with pytest.raises(UsageError, match="unknown environment 'qa'"):
        runs(project).plan("qa", env_explicit=True)


def test_a_prompted_secret_lives_in_a_private_file_only_while_used():
    with private_secret_file("s3cret") as path:
        assert path.read_text() == "s3cret\n"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert not path.exists() and not path.parent.exists()


# --- through the command line ----------------------------------------------------------------------------

def cli(project, args, input=None, env=None):
    from click.testing import CliRunner

    from provisioner.app import Devbox
    from provisioner.cli.main import main

    app = Devbox(project_dir=project)
    app.environment_runs = lambda: runs(project)  # the stamp goes to the test's file, not /etc
    return CliRunner().invoke(main, ["-C", str(project), *args], obj=app, input=input, env=env)


def test_cli_trust_then_provision_with_typed_name_then_status(project, tmp_path):
    refused = cli(project, ["trust", "--env", "staging"], input="n\n")
    assert_handled(refused, 1)
    assert not (project / "environments" / "staging.known_hosts").exists()
    trusted = cli(project, ["trust", "--env", "staging"], input="y\n")
    assert trusted.exit_code == 0, trusted.output
    assert "SHA256:" in trusted.output and "recorded db-s1, web-s1" in trusted.output
    assert "already pinned" in cli(project, ["trust", "--env", "staging"]).output

    # DEVBOX_ENV is not "explicit": --yes does not skip the prompt, and an empty answer applies nothing
    implicit = cli(project, ["provision", "--yes", "--no-check-first"], input="\n", env={"DEVBOX_ENV": "staging"})
    assert_handled(implicit, 1)
    assert "nothing was applied" in implicit.output, implicit.output
    assert "Type the environment name (staging)" in implicit.output
    assert not list((tmp_path / "deployed").iterdir())

    applied = cli(project, ["provision", "--env", "staging", "--no-check-first"],
                  input=f"staging\n{STAGING_PASSWORD}\n")
    assert applied.exit_code == 0, applied.output
    assert "web-s1" in applied.output and "revision recorded on 2 hosts" in applied.output

    status = cli(project, ["status", "--env", "staging", "--json"], input=f"{STAGING_PASSWORD}\n")
    assert status.exit_code == 0, status.output
    report = json.loads(status.output[status.output.index("{"):])
    assert report["schema"] == 1 and report["environment"] == "staging"
    assert {h["host"]: h["revision"] for h in report["hosts"]} == {"web-s1": "unversioned", "db-s1": "unversioned"}
    assert report["hosts"][0]["applied"]["environment"] == "staging"


def test_cli_refuses_production_and_names_with_env(project):
    result = cli(project, ["provision", "--env", "production", "--yes"])
    assert result.exit_code == 2 and "unknown environment 'production'" in result.output
    result = cli(project, ["provision", "web-s1", "--env", "staging"])
    assert result.exit_code == 2 and "--limit" in result.output


def test_cli_trust_pins_a_bastion_then_the_hosts_behind_it(project, sshd, tmp_path):
    bastion = Sshd(tmp_path / "bastion", free_port())
    bastion.start()
    try:
        staging = project / "inventories" / "staging" / "hosts.yml"
        data = yaml.safe_load(staging.read_text())
        jump = f"-o ProxyJump=root@127.0.0.1:{bastion.port}"
        for group in ("web", "db"):
            for host in data["all"]["children"][group]["hosts"].values():
                host["ansible_ssh_common_args"] = jump
                host["ansible_ssh_private_key_file"] = str(bastion.client_key)  # also logs in to the bastion
        data["all"]["children"]["bastion"] = {"hosts": {"stg-bastion": {"ansible_host": "127.0.0.1",
                                                                        "ansible_port": bastion.port}}}
        staging.write_text(yaml.safe_dump(data))

        result = cli(project, ["trust", "--env", "staging"], input="y\ny\n")
        assert result.exit_code == 0, result.output
        assert "recorded stg-bastion;" in result.output and "recorded db-s1, web-s1;" in result.output
        r = runs(project)
        env = r.environment("staging")
        checks = r.host_key_checker(list(r.plan("staging", env_explicit=True, yes=True).hosts), env.known_hosts)
        assert [c.status for c in checks] == ["trusted"] * 3
        assert "Accepted publickey for root" in (bastion.root / "sshd.log").read_text()
    finally:
        bastion.stop()


def test_cli_extra_vars_with_env_are_shown_confirmed_and_reach_both_runs(project, tmp_path):
    """-e with --env: listed before the typed confirmation (never skipped silently), in the check and the apply."""
    from click.testing import CliRunner

    from provisioner.app import Devbox
    from provisioner.cli.main import main

    r = runs(project)
    env, checks = r.scan_keys("staging")
    r.record_keys(env, checks)
    seen = []

    class Recording:
        def __init__(self, settings):
            self.runner = real_runner(settings)

        def run(self, **kwargs):
            seen.append({k: kwargs.get(k, False) for k in ("check", "extra_vars", "skip_tags", "diff")})
            return self.runner.run(**kwargs)

    app = Devbox(project_dir=project)
    app.environment_runs = lambda: runs(project, Recording)
    refused = CliRunner().invoke(main, ["-C", str(project), "provision", "--env", "staging", "-e", "release=9"],
                                 obj=app, input=f"{STAGING_PASSWORD}\nstagin\n")
    assert_handled(refused, 1)
    out = refused.output
    assert "extra vars: -e release=9" in out and out.index("extra vars") < out.index("Type the environment name")
    assert seen == [{"check": True, "extra_vars": ("release=9",), "skip_tags": None, "diff": False}]
    assert not list((tmp_path / "deployed").iterdir())
    applied = CliRunner().invoke(main, ["-C", str(project), "provision", "--env", "staging", "-e", "release=9",
                                        "--skip-tags", "none", "--no-check-first"],
                                 obj=app, input=f"staging\n{STAGING_PASSWORD}\n")
    assert_handled(applied, 0)
    assert seen[-1] == {"check": False, "extra_vars": ("release=9",), "skip_tags": "none", "diff": False}
