"""The production guard with a stand-in production host: a TCP listener on loopback that must never see a
connection, whatever spelling, ssh_config alias or jump host a staging inventory uses to reach it, and whichever
command reaches for the environment.

Names resolve on loopback only: numeric spellings, ``localhost``, and names the test's own ssh_config maps
(``ssh -G -F``); the unit tests' conftest keeps the guard from asking DNS for anything else.
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provisioner.app import Devbox
from provisioner.cli import main
from provisioner.environments.guard import (Endpoint, collisions, jump_spec, normalize_ip, numeric_addresses,
                                            parse_ssh_G, reach_of, reaches, split_jumps)
from provisioner.environments.model import TargetHost

PROD_ADDRESS = "127.0.0.1"


class Listener:
    """The production host: accepts (and counts) TCP connections on 127.0.0.x:port until stopped."""

    def __init__(self, address: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.address, self.port = self.sock.getsockname()
        self.accepted: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                conn, peer = self.sock.accept()
                self.accepted.append(peer)
                conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def production_host():
    listener = Listener(PROD_ADDRESS)
    yield listener
    listener.close()


# the ways a staging inventory can name the production host (address 127.0.0.1, port of the listener)
def alias_forms(port: int, ssh_config: Path) -> dict[str, str]:
    cfg = f"-F {ssh_config}"
    return {
        "127.1": f"ansible_host=127.1 ansible_port={port}",
        "2130706433": f"ansible_host=2130706433 ansible_port={port}",
        "0x7f000001": f"ansible_host=0x7f000001 ansible_port={port}",
        "127.0.0.01": f"ansible_host=127.0.0.01 ansible_port={port}",
        "::ffff:127.0.0.1": f"ansible_host=::ffff:127.0.0.1 ansible_port={port}",
        "localhost": f"ansible_host=localhost ansible_port={port}",
        "ssh_config name": f"ansible_host=stage-db ansible_ssh_common_args='{cfg}'",
        "ProxyJump to the production bastion": (f"ansible_host=127.0.0.9 ansible_port=22 "
                                               f"ansible_ssh_common_args='{cfg} -o ProxyJump=prod-bastion'"),
        "jump chain through it": (f"ansible_host=127.0.0.9 ansible_ssh_common_args='-J 127.0.0.8:2201,0x7f000001:"
                                  f"{port}'"),
    }


def make_project(root: Path, port: int, staging_host: str, *, with_production: bool = True) -> Path:
    (root / "inventories" / "production").mkdir(parents=True)
    (root / "inventories" / "production" / "hosts.ini").write_text(
        f"[db]\nprod-db ansible_host={PROD_ADDRESS} ansible_port={port}\n"
        f"[bastion]\nprod-bastion ansible_host={PROD_ADDRESS} ansible_port={port}\n")
    (root / "inventories" / "staging").mkdir(parents=True)
    (root / "inventories" / "staging" / "hosts.ini").write_text(f"[db]\nstage-db1 {staging_host}\n")
    (root / "ssh_config").write_text(f"Host stage-db\n  HostName 127.0.0.1\n  Port {port}\n"
                                     f"Host prod-bastion\n  HostName 127.0.0.1\n  Port {port}\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
    config = {"playbook": "playbooks/site.yml",
              "environments": {"staging": {"inventory": "inventories/staging"}}}
    if with_production:
        config["inventory"] = "inventories/production"
    (root / "devbox.yml").write_text(yaml.safe_dump(config))
    return root


COMMANDS = {
    "provision --env": ["provision", "--env", "staging", "--yes"],
    "trust --env": ["trust", "--env", "staging"],
    "status --env": ["status", "--env", "staging"],
    "parity --against": ["parity", "--against", "staging", "--yes"],
    "parity --export --env": ["parity", "--export", "--env", "staging", "--yes"],
    # the refusal is on the page too; the command says it as any other does, and exits 1
    "report --env": ["report", "--env", "staging", "--html", "{project}/report.html"],
}


def command_args(project: Path, args: list[str]) -> list[str]:
    return [a.replace("{project}", str(project)) for a in args]


def run_cli(project: Path, args: list[str]):
    return CliRunner().invoke(main, ["-C", str(project), *command_args(project, args)], obj=Devbox.create(project),
                              input="y\nstaging\n")


def assert_refused(result, production_host, *, naming=("prod-", "inventories/production/hosts.ini")):
    output = result.output
    assert result.exit_code == 1, output
    assert "error:" in output and "nothing was run" in output, output
    for text in naming:
        assert text in output, output
    assert production_host.accepted == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_every_alias_of_the_production_host(command, production_host, tmp_path):
    forms = alias_forms(production_host.port, tmp_path / "FORM" / "ssh_config")
    for i, (form, host_line) in enumerate(forms.items()):
        root = tmp_path / f"p{i}"
        project = make_project(root, production_host.port, host_line.replace(str(tmp_path / "FORM"), str(root)))
        result = run_cli(project, COMMANDS[command])
        assert_refused(result, production_host)
        assert "reaches production host prod-" in result.output, (form, result.output)
        assert not (project / ".devbox").exists() or not any((project / ".devbox").rglob("*.yml")), form


@pytest.mark.parametrize("command", list(COMMANDS))
def test_without_a_production_inventory_nothing_runs(command, production_host, tmp_path):
    project = make_project(tmp_path, production_host.port, f"ansible_host=127.0.0.1 ansible_port={production_host.port}",
                           with_production=False)
    result = run_cli(project, COMMANDS[command])
    assert_refused(result, production_host, naming=("names no production inventory", "set `inventory:`"))


MARKER_SCRIPT = "#!/bin/sh\ntouch {marker}\necho '{{\"_meta\": {{\"hostvars\": {{}}}}, \"all\": {{\"hosts\": []}}}}'\n"


def executable(path: Path, marker: Path) -> None:
    path.write_text(MARKER_SCRIPT.format(marker=marker))
    path.chmod(0o755)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_script_in_the_production_inventory_never_runs(command, production_host, tmp_path):
    project = make_project(tmp_path, production_host.port, "ansible_host=127.0.0.9")
    marker = tmp_path / "marker"
    executable(project / "inventories" / "production" / "dynamic.sh", marker)
    result = run_cli(project, COMMANDS[command])
    assert_refused(result, production_host, naming=("production inventory", "dynamic.sh", "refuses to run it",
                                                     "allow_inventory_scripts"))
    assert not marker.exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_staging_inventory_that_is_a_script_never_runs(command, production_host, tmp_path):
    project = make_project(tmp_path, production_host.port, "ansible_host=127.0.0.9")
    marker = tmp_path / "marker"
    script = project / "inventories" / "staging.py"
    executable(script, marker)
    config = yaml.safe_load((project / "devbox.yml").read_text())
    config["environments"]["staging"]["inventory"] = "inventories/staging.py"
    (project / "devbox.yml").write_text(yaml.safe_dump(config))
    result = run_cli(project, COMMANDS[command])
    assert result.exit_code == 1, result.output
    assert "staging.py" in result.output and "refuses to run it" in result.output
    assert not marker.exists() and production_host.accepted == []


def test_an_executable_file_without_shebang_is_not_run_either(tmp_path):
    from provisioner.environments.model import read_target_hosts
    from provisioner.errors import InventoryError

    inventory = tmp_path / "hosts"
    inventory.write_text("[web]\nweb1 ansible_host=127.0.0.9\n")
    inventory.chmod(0o755)
    with pytest.raises(InventoryError, match="is executable"):
        read_target_hosts(inventory)
    assert [h.name for h in read_target_hosts(inventory, allow_scripts=True)] == ["web1"]


def test_the_opt_in_lets_a_trusted_script_inventory_be_read(tmp_path):
    from provisioner.environments.model import read_target_hosts

    marker = tmp_path / "marker"
    script = tmp_path / "inv.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\necho '{{\"web\": {{\"hosts\": [\"w1\"]}}, "
                      "\"_meta\": {\"hostvars\": {\"w1\": {\"ansible_host\": \"127.0.0.9\"}}}}'\n")
    script.chmod(0o755)
    assert [h.address for h in read_target_hosts(script, allow_scripts=True)] == ["127.0.0.9"]
    assert marker.exists()


def test_the_real_cli_refuses_too(production_host, tmp_path):
    """devbox's command line in its own process (no test resolver): one alias form per command."""
    devbox = [sys.executable, "-c", "from provisioner.cli import main; main(prog_name='devbox')"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for i, (name, args) in enumerate(COMMANDS.items()):
        form = list(alias_forms(production_host.port, tmp_path / f"p{i}" / "ssh_config").values())[i * 2 % 9]
        project = make_project(tmp_path / f"p{i}", production_host.port, form)
        proc = subprocess.run([*devbox, "-C", str(project), *command_args(project, args)], env=env, capture_output=True, text=True,
                              input="y\nstaging\n", timeout=120)
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        assert "reaches production host prod-" in proc.stderr and "inventories/production/hosts.ini" in proc.stderr
    assert production_host.accepted == []


def test_a_staging_inventory_on_other_hosts_passes(production_host, tmp_path):
    from provisioner.environments.runs import EnvironmentRuns

    project = make_project(tmp_path, production_host.port,
                           f"ansible_host=127.0.0.9 ansible_port={production_host.port} "
                           f"ansible_ssh_common_args='-J 127.0.0.8:2222'")
    runs = EnvironmentRuns(project)
    env = runs.environment("staging")
    assert [h.name for h in runs.hosts(env)] == ["stage-db1"]
    assert production_host.accepted == []


def test_environment_hosts_are_read_only_through_the_gate():
    """Outside guard.py, an environment's inventory is never read for hosts: only the development inventory is."""
    package = Path(__file__).resolve().parents[2] / "provisioner"
    callers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if "read_target_hosts(" in p.read_text() and p.name not in ("guard.py", "model.py"))
    assert callers == ["environments/runs.py"]
    runs_source = (package / "environments" / "runs.py").read_text()
    assert runs_source.count("read_target_hosts(") == 1 and "read_target_hosts(inventory)" in runs_source


# --- the pieces -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f000001", "127.0.0.01", "::ffff:127.0.0.1",
                                      "127.0.0.1", "[::ffff:7f00:1]"])
def test_numeric_spellings_are_read_as_glibc_and_ssh_read_them(spelling):
    assert numeric_addresses(spelling) == {"127.0.0.1"}


def test_octal_and_non_numeric():
    assert numeric_addresses("127.0.0.010") == {"127.0.0.8"}   # a leading zero is octal, as for ssh
    assert numeric_addresses("prod-db") is None
    assert normalize_ip("::FFFF:10.0.0.1") == "10.0.0.1" and normalize_ip("2001:DB8::1") == "2001:db8::1"
    assert normalize_ip("db1") is None


def test_ssh_G_output_and_jump_specs_parse():
    text = "user root\nhostname 127.0.0.1\nport 2222\nproxyjump a,[127.1]:33\n"
    assert parse_ssh_G(text) == {"user": "root", "hostname": "127.0.0.1", "port": "2222", "proxyjump": "a,[127.1]:33"}
    assert split_jumps("a,[127.1]:33") == ["a", "[127.1]:33"] and split_jumps("none") == []
    assert jump_spec("ops@[::1]:2200") == ("ops", "::1", 2200) and jump_spec("bastion") == (None, "bastion", None)
    assert jump_spec("10.0.0.1:2222") == (None, "10.0.0.1", 2222) and jump_spec("::1") == (None, "::1", None)


def test_reach_follows_ssh_config_and_every_hop(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host web\n  HostName 127.0.0.7\n  ProxyJump hop1\nHost hop1\n  HostName 127.0.0.3\n"
                   "  ProxyJump hop0\nHost hop0\n  HostName 127.0.0.2\n")
    reach = reach_of(TargetHost("web-s1", "web", ssh_args=f"-F {cfg}"))
    assert reach.target.hostname == "127.0.0.7" and reach.target.addresses == {"127.0.0.7"}
    assert sorted(j.hostname for j in reach.jumps) == ["127.0.0.2", "127.0.0.3"]


def test_a_loop_of_jump_hosts_is_refused(tmp_path):
    from provisioner.errors import SafetyError

    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(SafetyError, match="more than"):
        reach_of(TargetHost("x", "a", ssh_args=f"-F {cfg}"))


def test_a_production_hosts_own_jump_host_counts_as_production():
    prod = [TargetHost("db1", "10.9.0.5", ssh_args="-J 127.0.0.4")]
    stage = [TargetHost("s1", "127.4")]   # 127.0.0.4: the production bastion
    found = collisions(reaches(stage), reaches(prod))
    assert found and found[0].shared == {"127.0.0.4"}
    assert Endpoint("a", "a", 22, frozenset()).identities() == {"a"}


def test_a_plugin_config_in_the_production_inventory_is_not_run(production_host, tmp_path):
    project = make_project(tmp_path, production_host.port, "ansible_host=127.0.0.9")
    (project / "inventories" / "production" / "aws_ec2.yml").write_text("plugin: amazon.aws.aws_ec2\nregions: [x]\n")
    result = run_cli(project, COMMANDS["status --env"])
    assert_refused(result, production_host, naming=("aws_ec2.yml", "inventory plugin config", "allow_inventory_scripts"))
