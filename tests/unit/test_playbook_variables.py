"""Which variables playbooks and roles read and define, read with Jinja2's own parser (provisioner.playbook.variables),
and what devbox does with the ones no readable file defines (development values for secret-like ones)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import assert_handled
from provisioner.cli.main import main
from provisioner.playbook.variables import scan_variables, template_names

REPO = Path(__file__).resolve().parents[2]
VAULTED_FILE = REPO / "playbooks" / "inventories" / "production" / "group_vars" / "all" / "vault.yml"
VENV_BIN = str(Path(sys.executable).parent)

SITE = """
- hosts: app
  vars:
    play_level: 1
  vars_prompt:
    - name: prompted
  roles:
    - role: app
      app_param: 3
  tasks:
    - name: a task-level variable, a registered result, a loop variable
      ansible.builtin.command: "echo {{ task_var }} {{ undefined_in_play }}"
      vars:
        task_var: 2
      register: echoed
      loop: "{{ vault_app_users }}"
      loop_control:
        loop_var: user
      when: echoed is defined and user.name != inventory_hostname and prompted
"""
TASKS = """
- ansible.builtin.set_fact:
    computed: "{{ hostvars[inventory_hostname]['ansible_facts']['default_ipv4'] }}"
    cacheable: true
- ansible.builtin.template:
    src: app.conf.j2
    dest: /etc/app.conf
  when:
    - vault_feature_secret | length > 0
    - app_enabled
- ansible.builtin.assert:
    that: "vault_app_api_token is defined"
- ansible.builtin.debug:
    msg: "{{ item }} {{ computed }} {{ groups['app'] | length }} {{ lookup('env', 'HOME') }} {{ app_param }}"
  with_items: "{{ app_extra_items }}"
"""
DEFAULTS = """
app_enabled: true
app_db_password: "{{ vault_app_db_password }}"
"""
TEMPLATE = """# {{ ansible_managed }}
{% set local_value = 1 %}
{% for peer in groups['app'] %}server {{ hostvars[peer].devbox_address }} {{ local_value }}
{% endfor %}
{% macro line(key, value) %}{{ key }}={{ value }}{% endmacro %}
{{ line('token', vault_app_api_token) }}
{{ line('signing', app_signing_key) }}
{{ line('ldap', vault_ldap.bind_password) }}
{{ app_log_level }}
"""


def write_project(root: Path) -> Path:
    playbooks = root / "playbooks"
    role = playbooks / "roles" / "app"
    for folder in ("tasks", "defaults", "templates"):
        (role / folder).mkdir(parents=True)
    (playbooks / "site.yml").write_text(SITE)
    (role / "tasks" / "main.yml").write_text(TASKS)
    (role / "defaults" / "main.yml").write_text(DEFAULTS)
    (role / "templates" / "app.conf.j2").write_text(TEMPLATE)
    inventory = root / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.ini").write_text("[app]\napp1\napp2\n")
    (inventory / "group_vars" / "all" / "main.yml").write_text("app_extra_items: [a, b]\n")
    shutil.copy(VAULTED_FILE, inventory / "group_vars" / "all" / "vault.yml")   # a real vault file
    return playbooks


def test_template_names_from_the_ast():
    read, stored, structured = template_names("{% for x in users %}{{ x.name }} {{ pw }}{% endfor %}"
                                              "{% set y = 1 %}{{ y }}{{ cfg.key }}{{ d['k'] | to_json }}")
    assert read == {"users", "x", "pw", "y", "cfg", "d"}   # Ansible's filters need not exist to read names
    assert stored == {"x", "y"} and structured == {"users", "x", "cfg", "d"}
    assert template_names("{{ unclosed") == (frozenset(), frozenset(), frozenset())


def test_scan_finds_what_roles_read_and_no_readable_file_defines(tmp_path):
    playbooks = write_project(tmp_path)
    use = scan_variables([playbooks, tmp_path / "inventory"])
    assert use.undefined() == ["app_log_level", "app_signing_key", "undefined_in_play", "vault_app_api_token",
                               "vault_app_db_password", "vault_app_users", "vault_feature_secret", "vault_ldap"]
    assert {"vault_app_users", "vault_ldap"} <= use.structured   # looped over, read as a mapping
    assert use.shapes["vault_ldap"] == {"bind_password": None}
    assert use.shapes["vault_app_users"] == [{"name": None}]   # the task's loop variable `user` reads user.name
    assert use.encrypted == (str(tmp_path / "inventory" / "group_vars" / "all" / "vault.yml"),)
    # never reported: magic variables, registered results, facts set, loop and prompt variables, role params
    for name in ("hostvars", "inventory_hostname", "groups", "item", "ansible_managed", "lookup", "echoed",
                 "computed", "user", "prompted", "task_var", "play_level", "app_param", "app_enabled", "peer",
                 "local_value", "line", "key", "cacheable"):
        assert name not in use.undefined(), name


def test_the_reference_service_roles_read_exactly_its_vaulted_variables():
    """The real playbooks this repository ships: every name its roles read is defined somewhere readable except
    the three vault variables its (encrypted) vault.yml holds, and pg_role, an inventory host variable."""
    started = time.perf_counter()
    use = scan_variables([REPO / "playbooks"])
    assert time.perf_counter() - started < 5
    assert use.undefined(["pg_role"]) == ["vault_cache_password", "vault_db_password", "vault_db_replication_password"]
    assert use.files > 30


def test_init_gives_development_values_to_the_secrets_roles_read(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", VENV_BIN)   # no vagrant: validation skipped
    write_project(tmp_path)
    (tmp_path / "devbox.yml").write_text("inventory: inventory/hosts.ini\nplaybook: playbooks/site.yml\n")
    result = CliRunner().invoke(main, ["-C", str(tmp_path), "init"])
    assert_handled(result, 0)
    secrets_file = tmp_path / ".devbox" / "inventory" / "group_vars" / "all" / "zz-devbox-secrets.yml"
    import yaml
    generated = yaml.safe_load(secrets_file.read_text())
    assert sorted(generated) == ["app_signing_key", "vault_app_api_token", "vault_app_db_password",
                                 "vault_app_users", "vault_feature_secret", "vault_ldap"]
    assert all(isinstance(generated[n], str) and len(generated[n]) >= 20
               for n in generated if n not in ("vault_app_users", "vault_ldap"))
    # read as a mapping (vault_ldap.bind_password) and looped over (user.name): values of that shape
    assert list(generated["vault_ldap"]) == ["bind_password"] and len(generated["vault_ldap"]["bind_password"]) >= 20
    assert [list(u) for u in generated["vault_app_users"]] == [["name"]]
    assert ("no development value given (set them under `vars:` in devbox.yml if the plays need them): "
            "app_log_level, undefined_in_play") in result.output
    again = CliRunner().invoke(main, ["-C", str(tmp_path), "init"])
    assert_handled(again, 0)
    assert yaml.safe_load(secrets_file.read_text()) == generated   # stable across runs
    # the development values reach the play: Ansible's own inventory reads them for the hosts
    listed = subprocess.run([str(Path(VENV_BIN) / "ansible-inventory"), "-i", str(tmp_path / ".devbox" / "inventory"),
                             "--host", "app-1"], capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout)["vault_app_api_token"] == generated["vault_app_api_token"]


def test_hostile_files_are_skipped_not_expanded(tmp_path):
    role = tmp_path / "roles" / "r"
    (role / "defaults").mkdir(parents=True)
    (role / "tasks").mkdir()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    (role / "defaults" / "main.yml").write_text(bomb)
    (role / "tasks" / "main.yml").write_text("- debug: {msg: '{{ vault_x }}'}\n- debug: {msg: '{{ broken'}\n")
    (role / "tasks" / "binary.yml").write_bytes(b"\x00\xff{{ \x00")
    started = time.perf_counter()
    use = scan_variables([tmp_path])
    assert time.perf_counter() - started < 5
    assert use.undefined() == ["vault_x"]


SHAPED_SITE = """
- hosts: app
  gather_facts: false
  roles:
    - ldap_client
"""
SHAPED_TASKS = """
- name: the client configuration, from the vaulted LDAP settings and users
  ansible.builtin.template:
    src: ldap.conf.j2
    dest: "{{ ldap_conf_dest }}"
    mode: "0600"
- name: one line per API key, looped over by the task itself
  ansible.builtin.lineinfile:
    path: "{{ ldap_conf_dest }}"
    line: "key {{ api.id }} {{ api.secret }}"
  loop: "{{ vault_api_keys }}"
  loop_control:
    loop_var: api
  when: api.id | length > 0
"""
SHAPED_TEMPLATE = """uri ldaps://{{ vault_ldap['host'] }}
binddn {{ vault_ldap.bind.dn }}
bindpw {{ vault_ldap.bind.password }}
{% for user in vault_ldap_users %}user {{ user.name }} {{ user.password_hash }}
{% endfor %}
"""


@pytest.mark.ansible
def test_secrets_read_as_mappings_and_lists_render_in_a_real_ansible_run(tmp_path, monkeypatch):
    """The development values of vault_* variables the roles read as a mapping or loop over have that shape:
    Ansible itself renders the role's template and loop with them (a string there fails the run)."""
    monkeypatch.setenv("PATH", VENV_BIN)   # no vagrant: validation skipped
    role = tmp_path / "playbooks" / "roles" / "ldap_client"
    for folder in ("tasks", "templates", "defaults"):
        (role / folder).mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text("ldap_conf_dest: /etc/ldap.conf\n")   # -e puts it under tmp_path
    (tmp_path / "playbooks" / "site.yml").write_text(SHAPED_SITE)
    (role / "tasks" / "main.yml").write_text(SHAPED_TASKS)
    (role / "templates" / "ldap.conf.j2").write_text(SHAPED_TEMPLATE)
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.ini").write_text("[app]\napp1\n")
    shutil.copy(VAULTED_FILE, inventory / "group_vars" / "all" / "vault.yml")   # where the team keeps them
    (tmp_path / "devbox.yml").write_text("inventory: inventory/hosts.ini\nplaybook: playbooks/site.yml\n")
    result = CliRunner().invoke(main, ["-C", str(tmp_path), "init"])
    assert_handled(result, 0)
    assert "no development value given" not in result.output
    import yaml
    secrets_file = tmp_path / ".devbox" / "inventory" / "group_vars" / "all" / "zz-devbox-secrets.yml"
    generated = yaml.safe_load(secrets_file.read_text())
    assert sorted(generated["vault_ldap"]) == ["bind", "host"] and sorted(generated["vault_ldap"]["bind"]) == [
        "dn", "password"]
    assert [sorted(u) for u in generated["vault_ldap_users"]] == [["name", "password_hash"]]
    assert [sorted(k) for k in generated["vault_api_keys"]] == [["id", "secret"]]

    conf = tmp_path / "ldap.conf"
    run = subprocess.run(
        [str(Path(VENV_BIN) / "ansible-playbook"), "-i", str(tmp_path / ".devbox" / "inventory"),
         str(tmp_path / "playbooks" / "site.yml"), "--limit", "app-1", "-e", "ansible_connection=local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"ldap_conf_dest={conf}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PATH": f"{VENV_BIN}:/usr/bin:/bin"})   # the shell tools Ansible's local connection runs
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ldap, user, key = generated["vault_ldap"], generated["vault_ldap_users"][0], generated["vault_api_keys"][0]
    assert conf.read_text() == (f"uri ldaps://{ldap['host']}\nbinddn {ldap['bind']['dn']}\n"
                                f"bindpw {ldap['bind']['password']}\nuser {user['name']} {user['password_hash']}\n"
                                f"key {key['id']} {key['secret']}\n")
    again = CliRunner().invoke(main, ["-C", str(tmp_path), "init"])
    assert_handled(again, 0)
    assert yaml.safe_load(secrets_file.read_text()) == generated   # stable across runs, leaf by leaf
