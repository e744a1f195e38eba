"""devbox.yml: defaults, every valid key, and every problem reported at once."""
from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config.schema import Config, GroupRule, load_config, parse_config
from provisioner.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_missing_file_means_defaults(tmp_path):
    config = load_config(tmp_path / "devbox.yml")
    assert config == Config()
    assert (config.provider, config.network, config.memory, config.cpus) == ("libvirt", "192.168.56.0/24", 512, 1)


def test_missing_file_is_an_error_when_named(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "rules.yml", required=True)


def test_every_key(tmp_path):
    path = tmp_path / "devbox.yml"
    path.write_text("""
inventory: ../prod/hosts.ini
playbook: site.yml
provider: virtualbox
box: devbox/debian12
libvirt: {uri: "qemu+ssh://ops@hv1/system"}
network: 10.77.0.0/24
defaults: {memory: 1024, cpus: 2}
ignore_groups: [production, dc1]
groups:
  etcd: {count: 3}
  db: {keep_distinct: pg_role, memory: 2048, cpus: 2}
  bastion: {exclude: true}
  web:
vars: {service_address: "{{ devbox_address }}"}
allow_inventory_scripts: true
snapshots: {converged: false}
environments: {staging: {inventory: x}}
""")
    config = load_config(path)
    assert config.inventory_path() == tmp_path / "../prod/hosts.ini"
    assert config.provider == "virtualbox" and config.libvirt_uri == "qemu+ssh://ops@hv1/system"
    assert (config.memory, config.cpus, config.network) == (1024, 2, "10.77.0.0/24")
    assert config.ignore_groups == ("production", "dc1")
    assert config.rule("etcd") == GroupRule(count=3)
    assert config.rule("db") == GroupRule(keep_distinct="pg_role", memory=2048, cpus=2)
    assert config.rule("bastion").exclude and config.rule("web") == GroupRule()
    assert config.vars == {"service_address": "{{ devbox_address }}"}
    assert config.allow_inventory_scripts is True
    assert config.converged_snapshot is False and Config().converged_snapshot is True
    assert config.extensions == {"environments": {"staging": {"inventory": "x"}}}


def test_all_problems_at_once(tmp_path):
    data = {
        "provider": "docker", "network": "not-a-network", "bogus": 1,
        "defaults": {"memory": 64, "cpus": 0, "disk": 10},
        "ignore_groups": "production",
        "groups": {"db": {"count": 0, "keep_distinct": 3, "exclude": "yes", "colour": "red"}, "web": [1]},
        "libvirt": {"uri": 5, "driver": "kvm"},
        "allow_inventory_scripts": "no",
        "box": "",
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, tmp_path / "devbox.yml")
    problems = info.value.problems
    expected = ["unknown key `bogus`", "`provider` must be one of", "`network` must be an IPv4 network",
                "`defaults.memory`", "`defaults.cpus`", "unknown key `defaults.disk`", "`ignore_groups` must be a list",
                "`groups.db.count`", "`groups.db.keep_distinct`", "`groups.db.exclude`", "unknown key `groups.db.colour`",
                "`groups.web` must be a mapping", "`libvirt.uri`", "unknown key `libvirt.driver`",
                "`allow_inventory_scripts`", "`box`"]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == len(expected)
    assert "devbox.yml is invalid" in str(info.value)


def test_booleans_are_not_numbers(tmp_path):
    with pytest.raises(ConfigError, match="cpus"):
        parse_config({"defaults": {"cpus": True}}, None)


def test_network_too_small():
    with pytest.raises(ConfigError, match="too small"):
        parse_config({"network": "10.0.0.0/29"}, None)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "devbox.yml"
    path.write_text("provider: libvirt\ngroups:\n  db: {count: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "line 4" in info.value.problems[0] or "line 3" in info.value.problems[0]


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "devbox.yml"
    path.write_text("- provider\n")
    with pytest.raises(ConfigError, match="top level"):
        load_config(path)


def test_the_repository_devbox_yml_is_valid():
    path = REPO / "devbox.yml"
    if not path.exists():
        pytest.fail("the reference devbox.yml is missing from the repository root")
    config = load_config(path)
    assert config.inventory_path().is_dir()


def test_not_secret_is_a_list_of_names(tmp_path):
    assert parse_config({"not_secret": ["ssh_host_key", "api.public_key"]}, None).not_secret == ("ssh_host_key",
                                                                                               "api.public_key")
    assert parse_config({}, None).not_secret == ()
    with pytest.raises(ConfigError, match="`not_secret` must be a list"):
        parse_config({"not_secret": "db_password"}, None)
