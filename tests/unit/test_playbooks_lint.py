"""The reference service in playbooks/: syntax, lint, vault hygiene, and its templates rendered from real inventories.

Everything runs the real tools (ansible-playbook, ansible-lint, ansible-vault) from the virtualenv. The render test
imports the real roles into a throw-away play (their tasks skipped, their defaults in scope) and renders the roles'
own templates on the controller, so the inventory -> configuration data flow (peers by service address, the
primary found by pg_role, secrets from the vault) is checked without any VM.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ansible

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
SITE = PLAYBOOKS / "site.yml"
INVENTORIES = PLAYBOOKS / "inventories"
STAGING_PASSWORD = ROOT / "tests" / "data" / "staging-vault-password.txt"
BIN = Path(sys.executable).parent
ROLES = ("common", "postgresql", "redis", "webapp", "loadbalancer")


def run(argv: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: int = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                **(env or {})}
    return subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(map(str, result.args))} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_site_passes_syntax_check(environment: str) -> None:
    result = run([str(BIN / "ansible-playbook"), "-i", str(INVENTORIES / environment), "--syntax-check", str(SITE)])
    assert result.returncode == 0, explain(result)


def test_production_plays_target_every_tier() -> None:
    result = run([str(BIN / "ansible-playbook"), "-i", str(INVENTORIES / "production"), "--list-hosts", str(SITE)])
    assert result.returncode == 0, explain(result)
    counts = [int(n) for n in re.findall(r"pattern: \[.*?\] \(hosts=(\d+)\)", result.stdout)
              or re.findall(r"hosts \((\d+)\):", result.stdout)]
    # all (12 hosts: bastion, 2 lb, 6 web, 2 db, cache), then db, cache, web, lb in site.yml's order
    assert counts == [12, 2, 1, 6, 2], result.stdout


def test_ansible_lint_production_profile_passes() -> None:
    result = run([str(BIN / "ansible-lint"), "--profile", "production", "playbooks/"])
    assert result.returncode == 0, explain(result)
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr, explain(result)


def validate_site(*extra: str) -> subprocess.CompletedProcess[str]:
    """Run only the roles' argument validation (tagged `always`) of site.yml on the staging inventory, locally."""
    return run([str(BIN / "ansible-playbook"), "-i", str(INVENTORIES / "staging"), str(SITE),
                "--vault-password-file", str(STAGING_PASSWORD), "--tags", "argument-validation-only",
                "-e", "ansible_connection=local", "-e", "ansible_become=false",
                "-e", f"ansible_python_interpreter={sys.executable}", *extra],
               env={"ANSIBLE_GATHERING": "explicit"})


def test_roles_accept_the_staging_inventory_and_reject_a_wrong_pg_role() -> None:
    result = validate_site()
    assert result.returncode == 0, explain(result)
    for role in ROLES:
        assert f"TASK [{role} : Validating arguments against arg spec 'main'" in result.stdout, result.stdout
    assert result.stdout.count("ok: [stg-") == 7 + 2 + 1 + 2 + 1   # all, db, cache, web, lb

    wrong = validate_site("-e", "pg_role=standby")
    assert wrong.returncode != 0
    assert re.search(r"postgresql_role must be one of: primary, replica, got: standby", wrong.stdout), explain(wrong)


def _vault_refs(path: Path) -> set[str]:
    return set(re.findall(r"\bvault_[a-z0-9_]+", path.read_text(encoding="utf-8")))


def test_staging_vault_opens_with_the_test_password_and_defines_every_reference() -> None:
    vault = INVENTORIES / "staging" / "group_vars" / "all" / "vault.yml"
    assert vault.read_text(encoding="utf-8").startswith("$ANSIBLE_VAULT;")
    result = run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(STAGING_PASSWORD), str(vault)])
    assert result.returncode == 0, explain(result)
    secrets = yaml.safe_load(result.stdout)
    referenced = _vault_refs(INVENTORIES / "staging" / "group_vars" / "all" / "vars.yml")
    assert referenced and referenced <= set(secrets), (referenced, sorted(secrets))
    assert all(isinstance(secrets[name], str) and len(secrets[name]) >= 16 for name in referenced)


def test_production_vault_is_encrypted_with_a_password_not_in_the_repository() -> None:
    vault = INVENTORIES / "production" / "group_vars" / "all" / "vault.yml"
    assert vault.read_text(encoding="utf-8").startswith("$ANSIBLE_VAULT;")
    result = run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(STAGING_PASSWORD), str(vault)])
    assert result.returncode != 0 and "Decryption failed" in result.stderr, explain(result)
    # production and staging reference the same secrets by name
    assert _vault_refs(INVENTORIES / "production" / "group_vars" / "all" / "vars.yml") == \
        _vault_refs(INVENTORIES / "staging" / "group_vars" / "all" / "vars.yml")


# template (role, template file) -> rendered name
TEMPLATES = {
    "nftables.conf": ("common", "nftables.conf.j2"),
    "sshd.conf": ("common", "sshd-hardening.conf.j2"),
    "motd": ("common", "motd.j2"),
    "apt-proxy.conf": ("common", "apt-proxy.conf.j2"),
    "pg_hba.conf": ("postgresql", "pg_hba.conf.j2"),
    "postgresql.conf": ("postgresql", "service.conf.j2"),
    "slots.sql": ("postgresql", "slots.sql.j2"),
    "accounts.sql": ("postgresql", "accounts.sql.j2"),
    "pgpass": ("postgresql", "pgpass.j2"),
    "redis.conf": ("redis", "redis.conf.j2"),
    "webapp.env": ("webapp", "webapp.env.j2"),
    "webapp.service": ("webapp", "webapp.service.j2"),
    "nginx.conf": ("loadbalancer", "service.conf.j2"),
}
# which hosts get which files (by group)
TIER_TEMPLATES = {
    "all": ("nftables.conf", "sshd.conf", "motd", "apt-proxy.conf"),
    "db": ("pg_hba.conf", "postgresql.conf", "slots.sql", "accounts.sql", "pgpass"),
    "cache": ("redis.conf",),
    "web": ("webapp.env", "webapp.service"),
    "lb": ("nginx.conf",),
}


def write_render_role(roles_dir: Path, out: Path) -> None:
    """A role whose defaults are the real roles' defaults (same precedence) and whose one task renders their templates.

    One looping task keeps this to one worker per host; importing the real roles with their tasks skipped costs
    a worker per task and host, which is minutes on a busy machine.
    """
    role = roles_dir / "render"
    (role / "defaults" / "main").mkdir(parents=True)
    (role / "tasks").mkdir()
    for name in ROLES:
        (role / "defaults" / "main" / f"{name}.yml").write_text(
            (PLAYBOOKS / "roles" / name / "defaults" / "main.yml").read_text(encoding="utf-8"), encoding="utf-8")
    files = [{"group": group, "name": name, "src": str(PLAYBOOKS / "roles" / TEMPLATES[name][0] / "templates" /
                                                      TEMPLATES[name][1])}
             for group, names in TIER_TEMPLATES.items() for name in names]
    # Templates are rendered by the template lookup on the controller and written once, as JSON, for all hosts:
    # no module runs per template and host.
    tasks = [
        # what common's `id -un` task registers on a real host
        {"name": "Stand in for the login-user probe", "ansible.builtin.set_fact": {
            "common_login_user": {"stdout": "deployer"}}},
        {"name": "Render the host's templates", "ansible.builtin.set_fact": {
            "render_out": "{{ render_out | default({}) | combine({item.name: lookup('ansible.builtin.template', item.src)}) }}"},
         "loop": "{{ render_files | selectattr('group', 'in', group_names + ['all']) | list }}",
         "vars": {"render_files": files}},
        {"name": "Write every host's files", "ansible.builtin.copy": {
            "content": "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'render_out'))) | to_json }}",
            "dest": str(out), "mode": "0600"},
         "run_once": True},
    ]
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False), encoding="utf-8")


def render(tmp_path: Path, inventory: Path, *extra: str) -> dict[str, dict[str, str]]:
    """{host: {file name: rendered text}}"""
    out = tmp_path / "rendered.json"
    write_render_role(tmp_path / "roles", out)
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Render the roles' templates for every host", "hosts": "all",
                                         "connection": "local", "gather_facts": False, "roles": ["render"]}]),
                        encoding="utf-8")
    # Every task runs on this machine: the inventories' addresses are never contacted. The extra var beats any
    # connection setting an inventory might carry.
    result = run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", "ansible_connection=local",
                  "-e", f"ansible_python_interpreter={sys.executable}", *extra, str(playbook)],
                 env={"ANSIBLE_ROLES_PATH": str(tmp_path / "roles")})
    assert result.returncode == 0, explain(result)
    return json.loads(out.read_text(encoding="utf-8"))


def test_staging_templates_render_peers_from_the_inventory(tmp_path: Path) -> None:
    out = render(tmp_path, INVENTORIES / "staging", "--vault-password-file", str(STAGING_PASSWORD))
    secrets = yaml.safe_load(run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(STAGING_PASSWORD),
                                  str(INVENTORIES / "staging" / "group_vars" / "all" / "vault.yml")]).stdout)

    def read(host: str, name: str) -> str:
        return out[host][name]

    # the load balancer balances over every web host, by service address
    nginx = read("stg-lb-01", "nginx.conf")
    assert re.findall(r"server (\S+) ", nginx) == ["10.30.2.11:8000", "10.30.2.12:8000"]

    # web hosts talk to the primary (found by pg_role) and the cache, with the vault's secrets
    env = read("stg-web-02", "webapp.env")
    assert "WEBAPP_DB_HOST=10.30.3.11\n" in env and "WEBAPP_CACHE_HOST=10.30.4.11\n" in env
    assert f'WEBAPP_DB_PASSWORD="{secrets["vault_db_password"]}"\n' in env
    assert f'WEBAPP_CACHE_PASSWORD="{secrets["vault_cache_password"]}"\n' in env
    assert "--bind 127.0.0.1:8000 --bind 10.30.2.12:8000" in read("stg-web-02", "webapp.service")
    # production-like: the copy the role installs, no reload
    assert "WorkingDirectory=/opt/webapp\n" in read("stg-web-02", "webapp.service")
    assert "--reload" not in read("stg-web-02", "webapp.service")

    # firewall: each tier opens its port to its peers only; SSH always open
    web_fw = read("stg-web-01", "nftables.conf")
    assert 'ip saddr { 10.30.1.11 } tcp dport 8000 accept' in web_fw
    assert re.search(r"^\s+tcp dport 22 accept", web_fw, re.M)
    db_fw = read("stg-db-02", "nftables.conf")
    assert "ip saddr { 10.30.2.11, 10.30.2.12, 10.30.3.11, 10.30.3.12 } tcp dport 5432 accept" in db_fw
    assert "ip saddr { 10.30.2.11, 10.30.2.12 } tcp dport 6379 accept" in read("stg-cache-01", "nftables.conf")
    lb_fw = read("stg-lb-01", "nftables.conf")
    assert re.search(r"^\s+tcp dport 80 accept", lb_fw, re.M) and "5432" not in lb_fw
    assert not re.search(r"dport (80|5432|6379|8000)", read("stg-bastion-01", "nftables.conf"))

    # PostgreSQL: clients and replication peers by address; one slot per replica; the replica's password file
    hba = read("stg-db-01", "pg_hba.conf")
    assert re.search(r"^host\s+visits\s+visits\s+10\.30\.2\.12/32\s+scram-sha-256$", hba, re.M)
    assert re.search(r"^host\s+replication\s+replicator\s+10\.30\.3\.12/32\s+scram-sha-256$", hba, re.M)
    assert "listen_addresses = 'localhost,10.30.3.11'" in read("stg-db-01", "postgresql.conf")
    assert "ARRAY['stg_db_02']" in read("stg-db-01", "slots.sql")
    assert f"10.30.3.11:5432:replication:replicator:{secrets['vault_db_replication_password']}" in \
        read("stg-db-02", "pgpass")

    # Redis: bound to loopback and the service address, with the vault's password
    redis = read("stg-cache-01", "redis.conf")
    assert "bind 127.0.0.1 10.30.4.11\n" in redis and f"requirepass {secrets['vault_cache_password']}\n" in redis

    # sshd keeps the connecting account; the motd names the environment; no apt proxy configured
    assert re.search(r"^AllowUsers alice bob ansible deployer$", read("stg-web-01", "sshd.conf"), re.M)
    assert "STAGING - stg-web-01" in read("stg-web-01", "motd")
    assert 'Proxy "";' in read("stg-web-01", "apt-proxy.conf")


def test_development_overrides_move_every_peer_to_the_private_network(tmp_path: Path) -> None:
    """What devbox feeds the same roles: production group_vars, VMs as hosts, `vars:` overrides as host vars."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    production = INVENTORIES / "production" / "group_vars"
    for source in production.rglob("*.yml"):
        if source.name != "vault.yml":
            target = inventory / "group_vars" / source.relative_to(production)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    (inventory / "group_vars" / "all" / "zz-secrets.yml").write_text(yaml.safe_dump(
        {"vault_db_password": "dev-db", "vault_db_replication_password": "dev-repl", "vault_cache_password": "dev-cache"}))
    overrides = {"service_address": "{{ devbox_address }}", "env_name": "development",
                 "apt_proxy": "http://192.168.56.1:3142",
                 "webapp_source_dir": "/srv/webapp"}   # as the README's shared-folders section turns it on
    machines = {"lb": {"lb-1": 11}, "web": {"web-1": 12}, "db": {"db-primary": 13, "db-replica": 14},
                "cache": {"cache-1": 15}}
    tree = {group: {"hosts": {name: {"devbox_address": f"192.168.56.{octet}", "ansible_host": f"10.0.0.{octet}",
                                     **({"pg_role": name.split("-")[1]} if group == "db" else {}), **overrides}
                              for name, octet in hosts.items()}}
            for group, hosts in machines.items()}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "production": {"children": {"dc1": {"children": {"bastion": None, **tree}}}}}}}))

    out = render(tmp_path, inventory)
    nginx = out["lb-1"]["nginx.conf"]
    assert re.findall(r"server (\S+) ", nginx) == ["192.168.56.12:8000"]
    env = out["web-1"]["webapp.env"]
    assert "WEBAPP_DB_HOST=192.168.56.13\n" in env and "WEBAPP_CACHE_HOST=192.168.56.15\n" in env
    assert "ip saddr { 192.168.56.12, 192.168.56.13, 192.168.56.14 } tcp dport 5432 accept" in \
        out["db-replica"]["nftables.conf"]
    assert "192.168.56.13:5432:replication:replicator:dev-repl" in out["db-replica"]["pgpass"]
    assert "DEVELOPMENT - web-1" in out["web-1"]["motd"]
    assert 'Acquire::http::Proxy "http://192.168.56.1:3142";' in out["web-1"]["apt-proxy.conf"]
    # with webapp_source_dir set, the application runs from the shared source, and reloads on change
    service = out["web-1"]["webapp.service"]
    assert "WorkingDirectory=/srv/webapp\n" in service and " --reload webapp:app" in service
