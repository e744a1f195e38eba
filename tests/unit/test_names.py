"""The VMs' names (machines/names.py): `devbox status` shows each VM's development address, its name and the
smoke checks' URLs it serves; `devbox hosts` prints, writes and removes the hosts block. A real project (a real
`devbox init`, the real `vagrant validate`); hosts files are files of the test's own folder, never /etc/hosts."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fakes import FakePlaybookRunner, FakeSshProbe, FakeVagrant
from helpers import append, assert_handled, copy_project
from provisioner.app import Devbox
from provisioner.cli.main import main
from provisioner.machines.names import serving_url

ADDRESSES = {"lb-1": "192.168.56.11", "web-1": "192.168.56.12"}
NAMES = {"lb-1": "lb-1.devbox.test", "web-1": "web-1.devbox.test"}


@pytest.mark.parametrize("url, expected", [
    ("http://{lb-1}/health", ("lb-1", "http://lb-1.devbox.test/health")),
    ("https://{lb-1}:8443/a?b=c#d", ("lb-1", "https://lb-1.devbox.test:8443/a?b=c#d")),
    ("http://{lb-1}?x=1", ("lb-1", "http://lb-1.devbox.test?x=1")),
    ("http://192.168.56.12:8080/", ("web-1", "http://web-1.devbox.test:8080/")),
    ("http://web-1/", ("web-1", "http://web-1.devbox.test/")),
    ("http://WEB-1.devbox.test/", ("web-1", "http://web-1.devbox.test/")),
    ("http://user:pw@{web-1}/", ("web-1", "http://user:pw@web-1.devbox.test/")),
    ("http://{lb-1}/proxy?to={web-1}", ("lb-1", "http://lb-1.devbox.test/proxy?to=192.168.56.12")),
    ("http://localhost:8080/health", None),       # served by the machine the check runs on, on its loopback only
    ("http://127.0.0.1/", None),
    ("http://example.org/", None),
    ("http://{db-1}/", None),                     # not a machine of the plan (`devbox integration` says so)
    ("http://{lb-1}/?to={db-1}", None),
    ("http://192.168.56.99/", None),
])
def test_which_vm_serves_a_smoke_url_and_its_url_by_name(url, expected):
    assert serving_url(url, ADDRESSES, NAMES) == expected


# ---------------------------------------------------------------------------------------- a real project

SMOKE = """
names:
  domain: Team.Example.TEST
smoke:
  - {name: web answers, from: db-1, http: "http://{web-1}:8080/health"}
  - {name: db from web, from: web-1, http: "http://{db-1}/status"}
  - {name: local only, from: web-1, http: "http://localhost:9000/"}
"""


@pytest.fixture
def project(two_vm_template, tmp_path):
    return copy_project(two_vm_template, tmp_path / "p")


def make_app(project, vagrant=None, probe=None):
    return Devbox(project_dir=project, vagrant=vagrant or FakeVagrant({}), playbooks=FakePlaybookRunner(),
                  ssh_probe=probe or FakeSshProbe())


def cli(project, args, app=None):
    return CliRunner().invoke(main, ["-C", str(project), *args], obj=app or make_app(project))


def plan_addresses(project) -> dict[str, str]:
    plan = json.loads((project / ".devbox" / "plan.json").read_text())
    return {m["name"]: m["address"] for m in plan["machines"]}


def test_status_json_and_table_show_address_name_and_urls(project):
    append(project / "devbox.yml", SMOKE)
    vagrant = FakeVagrant({"web-1": "not_created", "db-1": "not_created"}, allow=("status", "up", "ssh_config"))
    make_app(project, vagrant, FakeSshProbe(ready=("web-1", "db-1"))).up(provision=False)
    addresses = plan_addresses(project)
    app = make_app(project, probe=FakeSshProbe(reachable=["web-1", "db-1"]))
    result = cli(project, ["status", "--json"], app)
    assert_handled(result, 0)
    data = json.loads(result.output)
    assert data["schema"] == 1
    web, db = data["machines"]
    assert (web["name"], web["private_address"], web["fqdn"]) == ("web-1", addresses["web-1"], "web-1.team.example.test")
    assert web["urls"] == [{"check": "web answers", "url": "http://web-1.team.example.test:8080/health"}]
    assert db["urls"] == [{"check": "db from web", "url": "http://db-1.team.example.test/status"}]
    assert web["address"].startswith("vagrant@")  # the SSH address keeps its meaning
    table = cli(project, ["status"], app)
    assert_handled(table, 0)
    assert f"web-1.team.example.test ({addresses['web-1']})" in table.output
    assert "web-1: http://web-1.team.example.test:8080/health  (smoke check: web answers)" in table.output
    assert "localhost:9000" not in table.output


def test_status_with_a_broken_devbox_yml_still_shows_the_states(project):
    append(project / "devbox.yml", "names: {domain: 'not a domain'}\n")
    result = cli(project, ["status", "--json"], make_app(project, probe=FakeSshProbe(reachable=[])))
    assert_handled(result, 0)
    data = json.loads(result.output)
    assert [m["fqdn"] for m in data["machines"]] == [None, None]
    assert "names.domain" in data["pending_error"]


def test_hosts_prints_the_block_by_default(project):
    result = cli(project, ["hosts"])
    assert_handled(result, 0)
    addresses = plan_addresses(project)
    lines = result.output.splitlines()
    assert lines[0] == f"# >>> devbox {project.resolve()} >>>" and lines[-1] == f"# <<< devbox {project.resolve()} <<<"
    assert f"{addresses['web-1']}  web-1.devbox.test" in lines and f"{addresses['db-1']}  db-1.devbox.test" in lines


def test_hosts_write_and_remove_round_trip_on_a_file(project, tmp_path):
    hosts = tmp_path / "hosts"
    original = b"127.0.0.1 localhost\r\n# mine\r\n10.1.1.1 intranet"
    hosts.write_bytes(original)
    written = cli(project, ["hosts", "--write", "--file", str(hosts)])
    assert_handled(written, 0)
    assert f"wrote 2 name(s) to {hosts}" in written.output
    text = hosts.read_bytes()
    assert text.startswith(original + b"\r\n# >>> devbox ") and b"web-1.devbox.test\r\n" in text
    again = cli(project, ["hosts", "--write", "--file", str(hosts)])
    assert_handled(again, 0)
    assert "nothing to change" in again.output and hosts.read_bytes() == text
    removed = cli(project, ["hosts", "--remove", "--file", str(hosts)])
    assert_handled(removed, 0)
    assert hosts.read_bytes() == original
    assert "nothing to remove" in cli(project, ["hosts", "--remove", "--file", str(hosts)]).output


def test_two_projects_write_two_blocks_and_each_removes_its_own(project, two_vm_template, tmp_path):
    other = copy_project(two_vm_template, tmp_path / "other")
    yaml_text = (other / "devbox.yml").read_text() + "names: {domain: other.test}\n"
    (other / "devbox.yml").write_text(yaml_text)
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1 localhost\n")
    assert_handled(cli(project, ["hosts", "--write", "--file", str(hosts)]), 0)
    second = cli(other, ["hosts", "--write", "--file", str(hosts)])
    assert_handled(second, 0)
    assert f"another devbox project ({project.resolve()})" in second.output
    assert_handled(cli(project, ["hosts", "--remove", "--file", str(hosts)]), 0)
    left = hosts.read_text()
    assert "devbox.test" not in left and "web-1.other.test" in left and left.startswith("127.0.0.1 localhost\n")


def test_a_name_given_outside_the_block_is_warned_about(project, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.9.9 web-1.devbox.test  # an old line\n")
    result = cli(project, ["hosts", "--write", "--file", str(hosts)])
    assert_handled(result, 0)
    assert "also gives web-1.devbox.test outside this block" in result.output


def test_a_malformed_hosts_file_is_refused_without_writing(project, tmp_path):
    hosts = tmp_path / "hosts"
    broken = f"127.0.0.1 localhost\n# >>> devbox {project.resolve()} >>>\n10.0.0.1 web-1.devbox.test\n"
    hosts.write_text(broken)
    for action in ("--write", "--remove"):
        result = cli(project, ["hosts", action, "--file", str(hosts)])
        assert_handled(result, 1)
        assert f"{hosts}:2: the begin line of this project's block has no end line" in result.output
        assert "fix the markers by hand" in result.output
    assert hosts.read_text() == broken and sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "p"]


@pytest.mark.parametrize("args, message", [
    (["--write", "--remove"], "--write and --remove do not go together"),
    (["--file", "x"], "--file is for --write or --remove"),
])
def test_hosts_usage_errors(project, args, message):
    result = cli(project, ["hosts", *args])
    assert_handled(result, 2)
    assert message in result.output


def test_hosts_without_a_plan_says_what_to_run(tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli(tmp_path / "empty", ["hosts"])
    assert_handled(result, 1)
    assert "devbox init" in result.output


def test_a_directory_given_as_the_file_is_an_error(project, tmp_path):
    result = cli(project, ["hosts", "--write", "--file", str(tmp_path)])
    assert_handled(result, 2)  # click refuses a directory for --file
