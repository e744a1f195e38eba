"""`devbox plan` and `devbox init` through the real CLI (click's CliRunner), on the corpus."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import ADDRESSED, addressed_inventory, assert_handled

from provisioner.cli.main import main

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "tests" / "data" / "inventories"
BAD = INVENTORIES / "bad"
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture
def no_vagrant(monkeypatch):
    """Most CLI tests need no Vagrant: leave it off PATH (a real code path: validation is then skipped)."""
    monkeypatch.setenv("PATH", VENV_BIN)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not a handled error: fail with its own traceback
    return result


def snapshot(project: Path) -> dict[str, tuple[bytes, int, float]]:
    """Every project file (not the lock: each command that writes takes it, and names itself in it)."""
    return {p.relative_to(project).as_posix(): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(project.rglob("*")) if p.is_file() and p != project / ".devbox" / "lock"}


def test_plan_json_contract(tmp_path):
    result = run("-C", tmp_path, "plan", "--inventory", INVENTORIES / "openstack" / "multinode", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"schema", "rules", "machines", "excluded", "warnings"} and data["schema"] == 1
    assert data["rules"] == "proposed"   # no devbox.yml: the rules `devbox init` would write
    for machine in data["machines"]:
        assert set(machine) == {"name", "hostname", "groups", "represents", "memory", "cpus", "address"}
        assert isinstance(machine["memory"], int) and isinstance(machine["cpus"], int)
    hosts = [h for m in data["machines"] for h in m["represents"]] + [e["host"] for e in data["excluded"]]
    assert len(hosts) == len(set(hosts)) == 30
    assert data["excluded"] == [{"host": "localhost",
                                 "reason": "ansible_connection=local: it runs on the control node, so it needs no VM; "
                                           "list it under `include_hosts:` in devbox.yml to give it a VM anyway"}]
    assert list(tmp_path.iterdir()) == []   # plan writes nothing


def test_plan_without_devbox_yml_shows_what_init_writes(tmp_path, no_vagrant):
    """Without a devbox.yml, `plan` applies the rules `init` proposes (here: one VM per `role` value and three
    for the etcd quorum), not bare defaults: the same VMs, names and addresses, and it says so."""
    inventory = INVENTORIES / "kubernetes" / "hosts.ini"
    planned = run("-C", tmp_path, "plan", "-i", inventory, "--json")
    assert planned.exit_code == 0, planned.output
    data = json.loads(planned.stdout)
    assert data["rules"] == "proposed" and list(tmp_path.iterdir()) == []
    shown = run("-C", tmp_path, "plan", "-i", inventory)
    assert "the ones `devbox init` would write" in shown.stdout
    assert run("-C", tmp_path, "init", "-i", inventory).exit_code == 0
    written = json.loads((tmp_path / ".devbox" / "plan.json").read_text())
    assert [(m["name"], m["address"], m["represents"]) for m in written["machines"]] == \
        [(m["name"], m["address"], m["represents"]) for m in data["machines"]]
    assert len(data["machines"]) == 4   # bare defaults give 2
    after = json.loads(run("-C", tmp_path, "plan", "--json").stdout)   # now from the devbox.yml init wrote
    assert after["rules"] == str(tmp_path / "devbox.yml") and after["machines"] == data["machines"]


def test_init_proposes_a_network_free_of_production_addresses(tmp_path, no_vagrant):
    inventory = tmp_path / "prod" / "hosts.ini"
    inventory.parent.mkdir()
    inventory.write_text("[web]\nweb1 ansible_host=192.168.56.11\nweb2 ansible_host=192.168.56.12\n")
    project = tmp_path / "project"
    project.mkdir()
    planned = json.loads(run("-C", project, "plan", "-i", inventory, "--json").stdout)
    assert planned["machines"][0]["address"] == "192.168.57.11"
    assert not any("production host" in w for w in planned["warnings"])
    assert run("-C", project, "init", "-i", inventory).exit_code == 0
    text = (project / "devbox.yml").read_text()
    assert "network: 192.168.57.0/24" in text and "not 192.168.56.0/24: production hosts have addresses in it" in text
    assert "192.168.56.11" not in (project / "Vagrantfile").read_text()


def test_addresses_set_in_vars_files_reach_no_file_devbox_writes(tmp_path, no_vagrant):
    """Production addresses set in host_vars/ and group_vars/ files, `[group:vars]` and the playbook's host_vars
    (none inline): `init` moves the development network off them, and neither they nor an IP host name appear in
    the Vagrantfile, the development inventory, plan.json or devbox.yml (the VMs would otherwise get the
    same addresses: .11 and up)."""
    inventory, project = addressed_inventory(tmp_path)
    assert run("-C", project, "init", "-i", inventory).exit_code == 0
    written = {p.relative_to(project).as_posix(): p.read_text() for p in sorted(project.rglob("*"))
               if p.is_file() and p.name != "lock" and "playbooks" not in p.parts}
    assert {"Vagrantfile", "devbox.yml", ".devbox/plan.json", ".devbox/inventory/hosts.yml"} <= set(written)
    leaks = [f"{address} ({where}) in {path}" for path, text in written.items() for address, where in ADDRESSED.items()
             if re.search(rf"(?<![\w.]){re.escape(address)}(?![\w]|\.\d)", text)]
    assert leaks == []
    assert "network: 192.168.57.0/24" in written["devbox.yml"]
    machines = json.loads(written[".devbox/plan.json"])["machines"]
    assert sorted(m["address"] for m in machines) == [f"192.168.57.{n}" for n in range(11, 11 + len(machines))]


def test_plan_with_plugin_configs_and_the_opt_in(tmp_path):
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "01-hosts.ini").write_text("[web]\nweb1 tier=front\nweb2 tier=back\n")
    (inventory / "zz.config").write_text("plugin: ansible.builtin.constructed\nkeyed_groups:\n  - key: tier\n")
    refused = run("-C", tmp_path, "plan", "-i", inventory)
    assert_handled(refused, 1)
    assert "devbox refuses to run it" in refused.output
    planned = run("-C", tmp_path, "plan", "-i", inventory, "--allow-inventory-scripts", "--json")
    assert_handled(planned, 0)
    assert sorted(g for m in json.loads(planned.stdout)["machines"] for g in m["groups"]) == \
        ["_back", "_front", "web", "web"]
    (inventory / "aws_ec2.yml").write_text((BAD / "aws_ec2.yml").read_text())
    missing = run("-C", tmp_path, "plan", "-i", inventory, "--allow-inventory-scripts")
    assert_handled(missing, 1)
    assert "ansible-galaxy collection install amazon.aws" in missing.output


def test_plan_over_the_budget_in_devbox_yml_says_so_and_proposes_rules(tmp_path):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("".join(f"[{r}_prod]\n{r}1\n{r}2\n[{r}-staging]\n{r}3\n[{r}:children]\n{r}_prod\n{r}-staging\n"
                                 for r in ("web", "db", "cache")))
    (tmp_path / "devbox.yml").write_text("inventory: hosts.ini\nbudget: {memory_mb: 1200}\n")
    result = run("-C", tmp_path, "plan", "--json")
    assert_handled(result, 0)
    warnings = [w for w in json.loads(result.stdout)["warnings"] if not w.startswith("Ansible: ")]
    # the VMs join no environment group (said first): one VM per role, its production and staging hosts together
    assert warnings[0].startswith("the VMs join no environment group (cache-staging, cache_prod, db-staging,")
    assert warnings[1].startswith("too big for the budget in devbox.yml: the plan needs 3 VMs and 1536 MiB")
    assert warnings[2:] == ["to fit: `defaults: {memory: 384}` gives 3 VMs, 1152 MiB"]
    (tmp_path / "devbox.yml").write_text("inventory: hosts.ini\nbudget: {memory_mb: 2048}\n")
    assert not any("too big" in w for w in json.loads(run("-C", tmp_path, "plan", "--json").stdout)["warnings"])


def test_plan_table(tmp_path):
    result = run("-C", tmp_path, "plan", "-i", INVENTORIES / "odd-names" / "hosts.ini")
    assert result.exit_code == 0, result.output
    for text in ("web-servers-1", "WEB_01", "excluded: printer_A", "warning: hosts in no group"):
        assert text in result.output


def test_plan_with_rules_file(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: {db: {keep_distinct: pg_role}, bastion: {exclude: true}}\n")
    result = run("plan", "-i", INVENTORIES / "webapp" / "hosts.ini", "--config", rules, "--json")
    assert [m["name"] for m in json.loads(result.stdout)["machines"]] == ["lb-1", "web-1", "db-primary", "db-replica",
                                                                          "cache-1"]


def test_plan_needs_an_inventory(tmp_path):
    result = run("-C", tmp_path, "plan")
    assert result.exit_code == 2
    assert "no production inventory given" in result.stderr and "--inventory" in result.stderr


def test_invalid_rules_reported_at_once(tmp_path):
    (tmp_path / "devbox.yml").write_text("provider: docker\ndefaults: {cpus: 0}\n")
    result = run("-C", tmp_path, "plan", "-i", INVENTORIES / "webapp" / "hosts.ini")
    assert_handled(result, 1)
    assert "`provider` must be one of" in result.stderr and "`defaults.cpus`" in result.stderr


def test_reference_service_plan_from_the_repository():
    result = run("-C", REPO, "plan", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sorted(m["name"] for m in data["machines"]) == ["cache-1", "db-primary", "db-replica", "lb-1", "web-1"]
    assert [e["host"] for e in data["excluded"]] == ["bastion-01"]


def test_init_writes_project_and_second_run_changes_nothing(tmp_path, no_vagrant):
    result = run("-C", tmp_path, "init", "-i", INVENTORIES / "vaulted")
    assert result.exit_code == 0, result.output
    files = snapshot(tmp_path)
    assert {"devbox.yml", "Vagrantfile", ".devbox/plan.json", ".devbox/secrets.yml", ".devbox/inventory/hosts.yml",
            ".devbox/inventory/group_vars/all/zz-devbox-secrets.yml"} <= set(files)
    assert stat.S_IMODE(files[".devbox/secrets.yml"][1]) == 0o600
    assert stat.S_IMODE(files[".devbox/inventory/group_vars/all/zz-devbox-secrets.yml"][1]) == 0o600
    assert "not validated" in result.stderr
    config = yaml.safe_load(files["devbox.yml"][0])
    assert config["inventory"] == os.path.relpath(INVENTORIES / "vaulted", tmp_path)
    assert config["groups"] == {"db": {"keep_distinct": "pg_role"}}
    assert b"# " in files["devbox.yml"][0]   # commented for the team
    assert "CANARY" not in "".join(c.decode() for c, _, _ in files.values())

    again = run("-C", tmp_path, "init")   # inventory from devbox.yml now
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output
    assert snapshot(tmp_path) == files   # byte-identical, same modes, not even touched


def test_init_keeps_the_teams_devbox_yml_unless_forced(tmp_path, no_vagrant):
    assert run("-C", tmp_path, "init", "-i", INVENTORIES / "webapp" / "hosts.ini").exit_code == 0
    config = tmp_path / "devbox.yml"
    edited = config.read_text().replace("defaults:\n  memory: 512", "defaults:\n  memory: 1024")
    assert edited != config.read_text()
    config.write_text(edited)
    result = run("-C", tmp_path, "init")
    assert result.exit_code == 0 and config.read_text() == edited
    assert json.loads((tmp_path / ".devbox/plan.json").read_text())["machines"][0]["memory"] == 1024
    assert "libvirt.memory = 1024" in (tmp_path / "Vagrantfile").read_text()

    result = run("-C", tmp_path, "init", "--force")
    assert result.exit_code == 0
    assert "memory: 512" in config.read_text()
    assert "wrote devbox.yml" in result.output


def test_init_relative_inventory_from_another_cwd(tmp_path, no_vagrant, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(INVENTORIES / "kubernetes", tmp_path / "inv")
    monkeypatch.chdir(tmp_path)
    result = run("-C", "project", "init", "-i", "inv/hosts.ini")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((project / "devbox.yml").read_text())["inventory"] == "../inv/hosts.ini"
    monkeypatch.chdir("/")
    assert run("-C", project, "init").exit_code == 0


def test_removed_production_vars_file_disappears_from_the_copy(tmp_path, no_vagrant):
    prod = tmp_path / "prod"
    shutil.copytree(INVENTORIES / "vaulted", prod)
    project = tmp_path / "project"
    assert run("-C", project, "init", "-i", prod).exit_code == 0
    assert (project / ".devbox/inventory/group_vars/web.yml").exists()
    (prod / "group_vars" / "web.yml").unlink()
    result = run("-C", project, "init")
    assert result.exit_code == 0
    assert not (project / ".devbox/inventory/group_vars/web.yml").exists()


BAD_INPUTS = sorted(p.name for p in BAD.iterdir())


@pytest.mark.parametrize("name", BAD_INPUTS)
@pytest.mark.parametrize("command", ["plan", "init"])
def test_bad_inventory_exit_1_one_message_nothing_written(tmp_path, no_vagrant, monkeypatch, name, command):
    canary = tmp_path / "script-ran"
    monkeypatch.setenv("DEVBOX_SCRIPT_CANARY", str(canary))
    project = tmp_path / "project"
    project.mkdir()
    result = run("-C", project, command, "-i", BAD / name)
    assert_handled(result, 1)
    assert result.stderr.startswith(f"error: inventory ")
    assert name in result.stderr.splitlines()[0]
    assert "hint: " in result.stderr
    assert "[WARNING]" not in result.stderr
    assert list(project.iterdir()) == []
    assert not canary.exists()


def test_script_opt_in(tmp_path, no_vagrant, monkeypatch):
    monkeypatch.setenv("DEVBOX_SCRIPT_CANARY", str(tmp_path / "ran"))
    result = run("-C", tmp_path, "plan", "-i", BAD / "inventory-script.sh", "--allow-inventory-scripts", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["machines"][0]["represents"] == ["web1"]


def test_broken_group_vars_file_leaves_nothing(tmp_path, no_vagrant):
    prod = tmp_path / "prod"
    shutil.copytree(INVENTORIES / "vaulted", prod)
    (prod / "group_vars" / "web.yml").write_text("web_port: [\n")
    project = tmp_path / "project"
    project.mkdir()
    result = run("-C", project, "init", "-i", prod)
    assert_handled(result, 1)
    assert "web.yml" in result.stderr
    assert list(project.iterdir()) == []


def test_missing_template_variable_leaves_nothing(tmp_path, no_vagrant):
    (tmp_path / "Vagrantfile.j2").write_text("Vagrant.configure('2') do |c|\n  c.vm.box = {{ box_url }}\nend\n")
    result = run("-C", tmp_path, "init", "-i", INVENTORIES / "webapp" / "hosts.ini")
    assert_handled(result, 1)
    assert "box_url" in result.stderr and "Vagrantfile.j2:2" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Vagrantfile.j2"]


@pytest.mark.vagrant
def test_init_with_real_vagrant_and_a_template_vagrant_rejects(tmp_path):
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    result = run("-C", tmp_path, "init", "-i", INVENTORIES / "webapp" / "hosts.ini")
    assert result.exit_code == 0, result.output
    assert "not validated" not in result.output
    before = snapshot(tmp_path)
    # The team's own template with a setting the libvirt provider does not have: Vagrant says no.
    template = (REPO / "Vagrantfile.j2").read_text().replace(
        "      libvirt.cpus = {{ machine.cpus }}\n", "      libvirt.cpus = {{ machine.cpus }}\n      libvirt.cpu_count = 2\n")
    (tmp_path / "Vagrantfile.j2").write_text(template)
    result = run("-C", tmp_path, "init", "--force")
    assert_handled(result, 1)
    assert "vagrant rejected the rendered Vagrantfile" in result.stderr and "cpu_count" in result.stderr
    after = snapshot(tmp_path)
    after.pop("Vagrantfile.j2")
    assert after == before   # previous Vagrantfile back, devbox.yml not rewritten, nothing else touched


def test_reference_service_init_keeps_production_out_of_the_project(tmp_path, no_vagrant):
    rules = (REPO / "devbox.yml").read_text()
    production = REPO / "playbooks" / "inventories" / "production"
    (tmp_path / "devbox.yml").write_text(
        "\n".join(f"inventory: {production}" if line.startswith("inventory:") else line for line in rules.splitlines()))
    (tmp_path / "playbooks" / "roles" / "webapp" / "files").mkdir(parents=True)   # the folder devbox.yml shares
    result = run("-C", tmp_path, "init")
    assert result.exit_code == 0, result.output
    assert "vault_db_password" in result.output and "group_vars/all/vault.yml" in result.output
    generated = "\n".join(p.read_text() for p in (tmp_path / ".devbox").rglob("*") if p.is_file())
    for production_only in ("203.0.113.", "10.20.", "$ANSIBLE_VAULT", "ansible_user:", "ansible_ssh_common_args:"):
        assert production_only not in generated


def test_app_load_topology_and_render_again_change_nothing(tmp_path, no_vagrant):
    from provisioner.app import Devbox
    from provisioner.errors import DevboxError

    app = Devbox(project_dir=tmp_path)
    with pytest.raises(DevboxError, match="no plan yet") as info:
        app.load_topology()
    assert "devbox init" in info.value.hint
    init = app.init(inventory=INVENTORIES / "vaulted")
    before = snapshot(tmp_path)
    topology = app.load_topology()
    assert topology == init.topology   # plan.json holds everything, host vars and vault markers included
    result = app.render(topology)
    assert result.written == () and not result.validated
    assert snapshot(tmp_path) == before


def test_damaged_plan_json(tmp_path):
    from provisioner.app import Devbox
    from provisioner.errors import DevboxError

    (tmp_path / ".devbox").mkdir()
    (tmp_path / ".devbox" / "plan.json").write_text("{\"machines\": [{}]}")
    with pytest.raises(DevboxError, match="damaged"):
        Devbox(project_dir=tmp_path).load_topology()


@pytest.mark.parametrize("value", ["web", "{{ x }}", "- x", "yes", "123", "a: b", "# c", "", "../inv/hosts.ini",
                                   True, 3])
def test_generated_devbox_yml_scalars_read_back_unchanged(value):
    from provisioner.plan.planning import yaml_scalar
    assert yaml.safe_load(f"key: {yaml_scalar(value)}") == {"key": value}
