"""Which variables playbooks and roles read and define, read with Jinja2's own parser (provisioner.playbook.variables),
and what devbox does with the ones no readable file defines (development values for secret-like ones)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

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
                                 "vault_feature_secret"]
    assert all(isinstance(v, str) and len(v) >= 20 for v in generated.values())
    assert ("no development value given (set them under `vars:` in devbox.yml if the plays need them): "
            "app_log_level, undefined_in_play, vault_app_users, vault_ldap") in result.output
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
