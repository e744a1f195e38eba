"""The environment layer: devbox.yml's `environments:`, the production guard, and the confirmation decisions."""
from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.environments.model import (DEV, DEV_ENVIRONMENT, Environment, TargetHost, check_confirmation,
                                      ensure_dev_gets_no_vault_password,
                                      normalize_address, parse_environments, plan_run,
                                      read_target_hosts, select_environment,
                                      vault_labels, vault_run_settings)
from provisioner.config.environments import validate_environments
from provisioner.environments.guard import collisions, guarded_hosts, reaches
from provisioner.errors import InventoryError, SafetyError, UsageError

ENVS = Path(__file__).resolve().parents[1] / "data" / "envs"

STAGING_RAW = {"staging": {"inventory": "playbooks/inventories/staging", "vault_password_file": "pw.txt",
                           "vault_id": "staging", "allow_production": False, "check_first": True}}


def staging(**overrides) -> Environment:
    env = parse_environments(STAGING_RAW, Path("/project"))["staging"]
    return Environment(**{**env.__dict__, **overrides})


# --- devbox.yml ------------------------------------------------------------------------------------------

def test_valid_environments_have_no_problems():
    assert validate_environments(STAGING_RAW) == []
    assert validate_environments(None) == []


def test_every_problem_is_reported_at_once():
    problems = validate_environments({
        "dev": {"inventory": "x"},
        "Staging!": {"inventory": "x"},
        "qa": {"check_first": "yes", "vault_id": "a b", "colour": "red"},
        "staging": {"inventory": "inv", "allow_production": True},
        "production": "inv",
    })
    text = "\n".join(problems)
    assert "`environments.dev`: 'dev' is built in" in text
    assert "`environments.Staging!`: environment names are" in text
    assert "unknown key `environments.qa.colour`" in text
    assert "`environments.qa.inventory` is required" in text
    assert "`environments.qa.check_first` must be true or false" in text
    assert "`environments.qa.vault_id` must be a vault id label" in text
    assert "`environments.staging.allow_production`: only the environment named 'production'" in text
    assert "`environments.production` must be a mapping" in text
    assert len(problems) == 8


def test_not_a_mapping_is_a_problem():
    assert validate_environments(["staging"]) == ["`environments` must be a mapping of environment name to settings"]


def test_parse_resolves_paths_against_the_project_and_defaults_the_known_hosts_file():
    envs = parse_environments(STAGING_RAW, Path("/project"))
    assert envs[DEV] is DEV_ENVIRONMENT
    env = envs["staging"]
    assert env.inventory == Path("/project/playbooks/inventories/staging")
    assert env.vault_password_file == Path("/project/pw.txt")
    assert env.known_hosts == Path("/project/environments/staging.known_hosts")
    assert env.vault_id == "staging" and env.check_first and not env.is_production and not env.is_dev


def test_dev_is_the_default_environment():
    envs = parse_environments(STAGING_RAW, Path("/project"))
    assert select_environment(envs, None).is_dev
    assert select_environment(envs, "staging").name == "staging"


def test_unknown_environment_is_a_usage_error_listing_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown environment 'qa' \(known: dev, staging\)"):
        select_environment(parse_environments(STAGING_RAW, Path("/p")), "qa")


def test_production_is_refused_without_allow_production():
    envs = parse_environments({"production": {"inventory": "inv"}}, Path("/p"))
    with pytest.raises(SafetyError, match="production is not a target"):
        select_environment(envs, "production")


def test_production_is_selectable_only_with_the_explicit_setting():
    envs = parse_environments({"production": {"inventory": "inv", "allow_production": True}}, Path("/p"))
    assert select_environment(envs, "production").is_production


# --- the production guard --------------------------------------------------------------------------------

PROD = [TargetHost("web1", "10.20.0.11"), TargetHost("db1.prod.example.internal", "db1.prod.example.internal")]


def production_overlap(targets, production=PROD):
    return collisions(reaches(targets), reaches(production))


def test_disjoint_hosts_pass_the_guard():
    assert production_overlap([TargetHost("web-s1", "192.168.57.11")]) == []


def test_a_target_at_a_production_address_is_refused_and_named():
    found = production_overlap([TargetHost("web-s1", "192.168.57.11"), TargetHost("web-s2", "10.20.0.11")])
    assert [(c.target.host.name, c.production.host.name) for c in found] == [("web-s2", "web1")]
    assert "web-s2 (10.20.0.11:22) reaches production host web1 (10.20.0.11:22)" in found[0].describe(Path("/p"))


def test_a_target_named_like_a_production_host_is_refused_whatever_the_spelling():
    matches = production_overlap([TargetHost("DB1.prod.example.internal.", "192.168.57.30")])
    assert [m.production.host.name for m in matches] == ["db1.prod.example.internal"]


def test_a_target_whose_name_is_a_production_address_is_refused():
    # no ansible_host: Ansible connects to the name itself, which here is a production address
    assert production_overlap([TargetHost("10.20.0.11", "10.20.0.11")])


def test_address_spellings_are_compared_as_addresses():
    assert normalize_address("2001:DB8:0::1") == normalize_address("2001:db8::1")
    assert normalize_address(" Host.Example. ") == "host.example"


def test_the_production_environment_itself_is_not_guarded():
    prod = Environment(name="production", inventory=ENVS / "production", known_hosts=Path("/k"),
                       allow_production=True, is_production=True)
    assert len(guarded_hosts(prod, production_inventory=ENVS / "production", allow_scripts=False)) == 3


# --- reading hosts with Ansible's loader -----------------------------------------------------------------

def test_hosts_are_read_with_addresses_from_inventory_and_host_vars():
    hosts = {h.name: h.address for h in read_target_hosts(ENVS / "production")}
    assert hosts == {"web1": "10.20.0.11", "web2": "10.20.0.12",
                     "db1.prod.example.internal": "db1.prod.example.internal"}


def test_leaky_staging_inventory_is_refused_naming_both_hosts():
    with pytest.raises(SafetyError) as err:
        guarded_hosts(staging(inventory=ENVS / "staging-leaky"), production_inventory=ENVS / "production",
                      allow_scripts=False)
    message = str(err.value)
    assert "web-s2 (10.20.0.12:22) reaches production host web2" in message
    assert "DB1.prod.example.internal. " in message and "web-s1" not in message
    assert str(ENVS / "production" / "hosts.yml") in message


def test_real_staging_inventory_passes_the_guard():
    hosts = guarded_hosts(staging(inventory=ENVS / "staging"), production_inventory=ENVS / "production",
                          allow_scripts=False)
    assert sorted(h.name for h in hosts) == ["db-s1", "web-s1"]


def test_limit_narrows_the_hosts():
    assert [h.name for h in read_target_hosts(ENVS / "staging", limit="db")] == ["db-s1"]


def test_missing_inventory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_target_hosts(tmp_path / "nope")


def test_broken_inventory_is_an_inventory_error(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    web1: {ansible_port: '{{ undefined_thing }}'}\n")
    with pytest.raises(InventoryError, match="Ansible could not read it"):
        read_target_hosts(tmp_path / "hosts.yml")


# --- the confirmation flow -------------------------------------------------------------------------------

HOSTS = [TargetHost("web-s1", "192.168.57.11")]


def test_dev_runs_ask_nothing():
    plan = plan_run(DEV_ENVIRONMENT, [], env_explicit=False, yes=False)
    assert not plan.ask_confirmation and not plan.check_first


def test_staging_checks_first_and_asks_by_default():
    plan = plan_run(staging(), HOSTS, env_explicit=True, yes=False)
    assert plan.check_first and plan.ask_confirmation and plan.expected_answer == "staging"
    assert plan.hosts == tuple(HOSTS)


def test_yes_skips_the_prompt_only_with_an_explicit_env():
    assert not plan_run(staging(), HOSTS, env_explicit=True, yes=True).ask_confirmation
    assert plan_run(staging(), HOSTS, env_explicit=False, yes=True).ask_confirmation


def test_yes_never_skips_the_prompt_for_production():
    prod = Environment(name="production", inventory=Path("/p"), known_hosts=Path("/k"),
                       allow_production=True, is_production=True)
    assert plan_run(prod, HOSTS, env_explicit=True, yes=True).ask_confirmation


def test_no_check_first_and_the_setting_both_turn_the_check_off():
    assert not plan_run(staging(), HOSTS, env_explicit=True, yes=True, no_check_first=True).check_first
    assert not plan_run(staging(check_first=False), HOSTS, env_explicit=True, yes=True).check_first


def test_an_environment_without_hosts_is_refused():
    with pytest.raises(SafetyError, match="no hosts"):
        plan_run(staging(), [], env_explicit=True, yes=True)


def test_only_the_exact_name_confirms():
    plan = plan_run(staging(), HOSTS, env_explicit=True, yes=False)
    check_confirmation(plan, "staging")
    check_confirmation(plan, "  staging\n")
    for wrong in ("", None, "y", "yes", "Staging", "production"):
        with pytest.raises(SafetyError, match="nothing was applied"):
            check_confirmation(plan, wrong)


def test_no_prompt_means_no_answer_needed():
    check_confirmation(plan_run(staging(), HOSTS, env_explicit=True, yes=True), None)


# --- through config.py -----------------------------------------------------------------------------------

def test_config_reports_environment_problems_with_the_others(tmp_path):
    from provisioner.config.schema import load_config
    from provisioner.errors import ConfigError

    path = tmp_path / "devbox.yml"
    path.write_text("provider: hyperv\nenvironments:\n  staging: {inventory: inv, check_first: maybe}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any("provider" in p for p in err.value.problems)
    assert "`environments.staging.check_first` must be true or false" in err.value.problems


def test_config_environments_resolve_next_to_devbox_yml(tmp_path):
    from provisioner.config.schema import load_config
    from provisioner.environments.model import environments_of

    path = tmp_path / "devbox.yml"
    path.write_text("environments:\n  staging: {inventory: playbooks/inventories/staging, vault_id: staging}\n")
    envs = environments_of(load_config(path))
    assert sorted(envs) == ["dev", "staging"]
    assert envs["staging"].inventory == tmp_path / "playbooks/inventories/staging"
    assert envs["staging"].known_hosts == tmp_path / "environments/staging.known_hosts"


# --- vault passwords -------------------------------------------------------------------------------------

def test_vault_labels_are_read_from_the_headers():
    assert {k: [p.name for p in v] for k, v in vault_labels(ENVS / "staging").items()} == {"staging": ["vault.yml"]}
    assert vault_labels(ENVS / "staging-leaky") == {}


def test_dev_runs_get_no_vault_arguments_at_all():
    assert vault_run_settings(DEV_ENVIRONMENT, Path("/pw"), {"default": [Path("x")]}) == ((), {})


def test_a_labelled_vault_gets_its_id_and_only_its_id():
    args, env = vault_run_settings(staging(), Path("/run/pw"), {"staging": [Path("v.yml")]})
    assert args == ("--vault-id", "staging@/run/pw") and env == {"ANSIBLE_VAULT_ID_MATCH": "True"}


def test_unlabelled_vault_files_are_not_locked_out_by_vault_id_match():
    args, env = vault_run_settings(staging(), Path("/run/pw"), {"default": [Path("v.yml")]})
    assert args == ("--vault-id", "staging@/run/pw") and env == {}


def test_several_vault_ids_need_the_environment_to_name_its_own():
    labels = {"staging": [Path("a")], "prod": [Path("b")]}
    with pytest.raises(UsageError, match=r"several vault ids \(prod, staging\)"):
        vault_run_settings(staging(vault_id=None), Path("/pw"), labels)
    assert vault_run_settings(staging(), Path("/pw"), labels)[1] == {"ANSIBLE_VAULT_ID_MATCH": "True"}


def test_vaults_without_a_password_are_a_usage_error():
    with pytest.raises(UsageError, match="no vault password"):
        vault_run_settings(staging(), None, {"staging": [Path("a")]})
    assert vault_run_settings(staging(), None, {}) == ((), {})


@pytest.mark.ansible
@pytest.mark.parametrize("inventory, password, canary", [
    (ENVS / "staging", ENVS / "staging-vault-password.txt", "CANARY-STAGING-4b8a2e60"),
    # the reference service's staging inventory: unlabelled (1.1) files, `vault_id: staging` in devbox.yml
    (ENVS.parents[2] / "playbooks" / "inventories" / "staging", ENVS.parent / "staging-vault-password.txt", None),
])
def test_the_settings_really_decrypt_the_environments_vault(inventory, password, canary, tmp_path):
    import sys
    from provisioner.adapters import process

    args, env = vault_run_settings(staging(), password, vault_labels(inventory))
    host = read_target_hosts(inventory)[0].name
    bindir = Path(sys.executable).parent
    result = process.run([str(bindir / "ansible-inventory"), "-i", str(inventory), "--host", host, *args],
                         env={**env, "ANSIBLE_CONFIG": str(tmp_path / "none.cfg")}, timeout=120)
    assert result.ok, result.tail()
    import json
    hostvars = json.loads(result.stdout)
    assert "vault_db_password" in hostvars
    if canary:
        assert hostvars["vault_db_password"] == canary


def test_dev_runs_refuse_every_place_a_vault_password_could_come_from(tmp_path):
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nroles_path = roles\nvault_password_file = ~/.vault-pass\n")
    environ = {"ANSIBLE_VAULT_IDENTITY_LIST": "prod@~/.prod-pass", "HOME": str(tmp_path)}
    with pytest.raises(SafetyError) as err:
        ensure_dev_gets_no_vault_password(environ, tmp_path)
    assert "environment variable ANSIBLE_VAULT_IDENTITY_LIST" in str(err.value)
    assert f"{cfg}: [defaults] vault_password_file" in str(err.value)


def test_the_reference_playbooks_give_dev_runs_no_password(tmp_path):
    # what devbox itself runs from: the project's playbook folder and a clean environment
    ensure_dev_gets_no_vault_password({}, ENVS.parents[2] / "playbooks")


# --- how hosts are reached -------------------------------------------------------------------------------

def test_proxy_jump_is_read_from_ssh_arguments_in_every_spelling():
    from provisioner.environments.model import proxy_jump

    assert proxy_jump("-o ProxyJump=ops@bastion:2222 -C") == "ops@bastion:2222"
    assert proxy_jump("-J ops@bastion") == "ops@bastion" and proxy_jump("-Jops@b") == "ops@b"
    assert proxy_jump("-oProxyJump=none") is None and proxy_jump("") is None
    assert proxy_jump('-o "ProxyJump first,ops@last"') == "ops@last"


def test_the_reference_staging_reaches_its_hosts_through_its_bastion():
    hosts = {h.name: h for h in read_target_hosts(ENVS.parents[2] / "playbooks" / "inventories" / "staging")}
    bastion = hosts.pop("stg-bastion-01")
    assert bastion.jump is None and bastion.user == "ansible"
    assert {h.jump for h in hosts.values()} == {f"ansible@{bastion.address}"}
