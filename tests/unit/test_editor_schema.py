"""devbox.yml's JSON Schema (for editors) and devbox's own validator must not drift: on every devbox.yml in the
repository, what `devbox init` generates, and a set of bad files, both accept or both reject. Also the key
tables (what each section knows) read from the validator's own messages, and `devbox config schema`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from provisioner.cli.main import main
from provisioner.config.editor_schema import PROJECT_SCHEMA, schema_text
from provisioner.config.schema import SHARE_TYPES, Config, SharedFolder, parse_config
from provisioner.errors import ConfigError
from provisioner.plan.inventory import load_inventory
from provisioner.plan.planning import config_file_text

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "tests" / "data" / "inventories"
SCHEMA = json.loads(schema_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

ATTACKS = REPO / "tests" / "data" / "attacks"   # hostile inputs: test_attack_corpus.py runs them
EXAMPLES = sorted({REPO / "devbox.yml", *(p for p in (REPO / "tests" / "data").rglob("devbox.yml")
                                          if ATTACKS not in p.parents)})
GENERATED_FROM = ["webapp/hosts.ini", "openstack/multinode", "replicaset/hosts.ini", "odd-names/hosts.ini",
                  "kubernetes/hosts.ini", "ipv6/hosts.ini", "env-type/hosts.ini", "yaml-nested/hosts.yml"]

# Every key of every section, with values the validator accepts.
FULL = """
inventory: inventories/production
playbook: playbooks/site.yml
provider: libvirt
box: devbox/debian12
libvirt: {uri: "qemu+ssh://ops@hv1/system"}
network: 10.10.0.0/16
defaults: {memory: 1024, cpus: 2}
budget: {memory_mb: 16384}
ignore_groups: [production, dc1]
groups:
  db: {keep_distinct: pg_role, memory: 2048, cpus: 2}
  etcd: {count: 3}
  bastion: {exclude: true}
  web:
vars: {service_address: "{{ devbox_address }}", env_name: development}
allow_inventory_scripts: false
include_hosts: [control, "win*"]
host_vars: {keep: [node_role]}
environment_groups: {keep: [staging]}
snapshots: {converged: false}
shared_folders:
  - {host: src, guest: /srv/app, to: [web, db-1], read_only: true, type: 9p}
  - {host: /opt/shared, guest: /srv/shared/, to: [lb-1]}
names: {domain: dev.example.test}
environments:
  staging: {inventory: inventories/staging, vault_id: staging, vault_password_file: ~/.vault, check_first: true,
            known_hosts: environments/staging.known_hosts, allow_production: false}
  production: {inventory: inventories/production, allow_production: true}
smoke:
  - {name: health, from: web-1, http: "http://{lb-1}/health", expect_status: 200, expect_json: {status: ok}, wait: 90}
  - {name: tls, from: web-1, http: "https://{lb-1}/", wait: 1.5}
parity:
  expected:
    - {host_group: web, fact: "port:tcp/8080", reason: the development web server also listens on 8080}
    - {machine: db-1, fact: kernel, reason: the box's kernel}
    - {fact: python, reason: every VM}
"""
GOOD = {
    "full": FULL,
    "empty file": "",
    "only comments": "# nothing yet\n",
    "null sections": "groups:\nvars:\nenvironments:\nsmoke:\nparity:\nlibvirt: {uri: null}\n",
    "group without rules": "groups: {web: }\n",
    "virtualbox": "provider: virtualbox\nbox: my/debian12\n",
    "smallest network": "network: 192.168.56.0/28\n",
    "host bits set": "network: 192.168.56.1/24\n",
    "parity without expected": "parity: {}\n",
    "null host_vars and keep": "host_vars:\nenvironment_groups: {keep: }\ninclude_hosts:\n",
    "snapshots empty": "snapshots: {}\n",
    "snapshots null": "snapshots:\n",
    "converged snapshot on": "snapshots: {converged: true}\n",
    "empty budget": "budget: {}\n",
    "shared_folders null": "shared_folders:\n",
    "shared_folders empty": "shared_folders: []\n",
    "share virtiofs": "shared_folders: [{host: ./src, guest: /srv/app, to: [web], type: virtiofs}]\n",
    "share auto": "shared_folders: [{host: src/app, guest: /srv/app, to: [web-1], type: auto, read_only: false}]\n",
    "share a dotted name": "shared_folders: [{host: ..src, guest: /srv/app, to: [web]}]\n",
    "names null": "names:\n",
    "names empty": "names: {}\n",
    "one-label domain": "names: {domain: lan}\n",
    "domain with digits and hyphens": "names: {domain: team-42.devbox.test}\n",
    "hypervisors null": "hypervisors:\n",
    # not in FULL: `libvirt.uri` and `hypervisors` exclude each other
    "every hypervisor key": "hypervisors:\n  - {name: hv1, uri: 'qemu+ssh://root@hv1/system?keyfile=/k', memory_mb: 16384, "
                            "cpus: 8, subnet: 10.231.1.0/24, known_hosts: hypervisors.known_hosts}\n",
    "local hypervisor, name derived": "hypervisors: [{uri: 'qemu:///system', memory_mb: 4096, cpus: 2}]\n",
}
BAD = {
    "shared_folders not a list": "shared_folders: {host: src}\n",
    "share not a mapping": "shared_folders: [src]\n",
    "share without guest": "shared_folders: [{host: src, to: [web]}]\n",
    "share without to": "shared_folders: [{host: src, guest: /srv/app}]\n",
    "share empty to": "shared_folders: [{host: src, guest: /srv/app, to: []}]\n",
    "share to a string": "shared_folders: [{host: src, guest: /srv/app, to: web}]\n",
    "share relative guest": "shared_folders: [{host: src, guest: srv/app, to: [web]}]\n",
    "share guest root": "shared_folders: [{host: src, guest: /, to: [web]}]\n",
    "share guest quote": "shared_folders: [{host: src, guest: \"/srv/it's\", to: [web]}]\n",
    "share host out of the project": "shared_folders: [{host: ../elsewhere, guest: /srv/app, to: [web]}]\n",
    "share host parent": "shared_folders: [{host: .., guest: /srv/app, to: [web]}]\n",
    "share blank host": "shared_folders: [{host: ' ', guest: /srv/app, to: [web]}]\n",
    "share unknown type": "shared_folders: [{host: src, guest: /srv/app, to: [web], type: nfs}]\n",
    "share read_only text": "shared_folders: [{host: src, guest: /srv/app, to: [web], read_only: yes please}]\n",
    "share unknown key": "shared_folders: [{host: src, guest: /srv/app, to: [web], owner: www-data}]\n",
    "top level list": "- inventory: x\n",
    "top level string": "just text\n",
    "unknown key": "inventroy: prod\n",
    "empty inventory": "inventory: ''\n",
    "blank box": "box: '  '\n",
    "box not a string": "box: 12\n",
    "unknown provider": "provider: docker\n",
    "libvirt not a mapping": "libvirt: qemu:///system\n",
    "unknown libvirt key": "libvirt: {url: qemu:///system}\n",
    "network not CIDR": "network: 192.168.56\n",
    "network too small": "network: 192.168.56.0/29\n",
    "network octet": "network: 192.168.256.0/24\n",
    "network IPv6": "network: fd00::/64\n",
    "defaults not a mapping": "defaults: 512\n",
    "unknown defaults key": "defaults: {disk: 10}\n",
    "memory too small": "defaults: {memory: 64}\n",
    "memory a string": "defaults: {memory: 1G}\n",
    "memory a bool": "defaults: {memory: true}\n",
    "cpus zero": "defaults: {cpus: 0}\n",
    "budget a number": "budget: 16384\n",
    "budget unknown key": "budget: {memory: 16384}\n",
    "budget too small": "budget: {memory_mb: 64}\n",
    "budget a string": "budget: {memory_mb: 16G}\n",
    "hypervisors a mapping": "hypervisors: {uri: 'qemu:///system'}\n",
    "hypervisors empty": "hypervisors: []\n",
    "hypervisor without cpus": "hypervisors: [{uri: 'qemu:///system', memory_mb: 4096}]\n",
    "hypervisor uri not a uri": "hypervisors: [{uri: hv1, memory_mb: 4096, cpus: 2}]\n",
    "hypervisor memory too small": "hypervisors: [{uri: 'qemu:///system', memory_mb: 64, cpus: 2}]\n",
    "hypervisor unknown key": "hypervisors: [{uri: 'qemu:///system', memory_mb: 512, cpus: 2, ram: 1}]\n",
    "hypervisor name upper case": "hypervisors: [{uri: 'qemu:///system', memory_mb: 512, cpus: 2, name: HV}]\n",
    "hypervisor subnet too small": "hypervisors: [{uri: 'qemu:///system', memory_mb: 512, cpus: 2, subnet: 10.1.1.0/29}]\n",
    "ignore_groups a string": "ignore_groups: production\n",
    "ignore_groups of numbers": "ignore_groups: [1, 2]\n",
    "groups a list": "groups: [web]\n",
    "group rule a string": "groups: {web: big}\n",
    "unknown group key": "groups: {web: {size: 3}}\n",
    "count zero": "groups: {web: {count: 0}}\n",
    "count a string": "groups: {web: {count: three}}\n",
    "keep_distinct empty": "groups: {db: {keep_distinct: ''}}\n",
    "exclude a string": "groups: {bastion: {exclude: 'yes'}}\n",
    "group memory too small": "groups: {db: {memory: 100}}\n",
    "vars a list": "vars: [a, b]\n",
    "allow_inventory_scripts a string": "allow_inventory_scripts: 'yes'\n",
    "include_hosts a string": "include_hosts: control\n",
    "include_hosts blank": "include_hosts: ['']\n",
    "host_vars a list": "host_vars: [ip]\n",
    "host_vars unknown key": "host_vars: {copy: [ip]}\n",
    "host_vars keep a string": "host_vars: {keep: ip}\n",
    "environment_groups a list": "environment_groups: [production]\n",
    "environment_groups keep of numbers": "environment_groups: {keep: [1]}\n",
    "environments a list": "environments: [staging]\n",
    "environment name upper case": "environments: {Staging: {inventory: x}}\n",
    "environment dev": "environments: {dev: {inventory: x}}\n",
    "environment not a mapping": "environments: {staging: x}\n",
    "environment without inventory": "environments: {staging: {vault_id: staging}}\n",
    "environment unknown key": "environments: {staging: {inventory: x, password: y}}\n",
    "vault_id with a space": "environments: {staging: {inventory: x, vault_id: 'my id'}}\n",
    "vault_password_file empty": "environments: {staging: {inventory: x, vault_password_file: ''}}\n",
    "check_first a string": "environments: {staging: {inventory: x, check_first: 'no'}}\n",
    "allow_production outside production": "environments: {staging: {inventory: x, allow_production: true}}\n",
    "smoke a mapping": "smoke: {name: x}\n",
    "smoke check a string": "smoke: [health]\n",
    "smoke without http": "smoke: [{name: a, from: web-1}]\n",
    "smoke blank name": "smoke: [{name: ' ', from: web-1, http: 'http://x/'}]\n",
    "smoke not http": "smoke: [{name: a, from: web-1, http: 'ftp://x/'}]\n",
    "smoke unknown key": "smoke: [{name: a, from: web-1, http: 'http://x/', method: POST}]\n",
    "smoke status out of range": "smoke: [{name: a, from: web-1, http: 'http://x/', expect_status: 42}]\n",
    "smoke status null": "smoke: [{name: a, from: web-1, http: 'http://x/', expect_status: null}]\n",
    "smoke wait negative": "smoke: [{name: a, from: web-1, http: 'http://x/', wait: -1}]\n",
    "smoke wait a bool": "smoke: [{name: a, from: web-1, http: 'http://x/', wait: true}]\n",
    "parity a list": "parity: [x]\n",
    "parity unknown key": "parity: {expect: []}\n",
    "parity expected a string": "parity: {expected: kernel}\n",
    "parity entry a string": "parity: {expected: [kernel]}\n",
    "parity without reason": "parity: {expected: [{fact: kernel}]}\n",
    "parity empty fact": "parity: {expected: [{fact: '', reason: r}]}\n",
    "parity machine and group": "parity: {expected: [{fact: kernel, reason: r, machine: a, host_group: b}]}\n",
    "parity unknown entry key": "parity: {expected: [{fact: kernel, reason: r, why: x}]}\n",
    "parity machine a number": "parity: {expected: [{fact: kernel, reason: r, machine: 1}]}\n",
    "snapshots a bool": "snapshots: false\n",
    "snapshots a list": "snapshots: [converged]\n",
    "snapshots.converged a string": "snapshots: {converged: 'no'}\n",
    "snapshots.converged null": "snapshots: {converged: null}\n",
    "unknown snapshots key": "snapshots: {keep: 3}\n",
    "names a string": "names: devbox.test\n",
    "unknown names key": "names: {suffix: devbox.test}\n",
    "domain empty": "names: {domain: ''}\n",
    "domain trailing dot": "names: {domain: devbox.test.}\n",
    "domain leading dot": "names: {domain: .devbox.test}\n",
    "domain with a space": "names: {domain: 'devbox test'}\n",
    "domain with an underscore": "names: {domain: dev_box.test}\n",
    "domain label ends with a hyphen": "names: {domain: devbox-.test}\n",
    "domain label too long": "names: {domain: %s.test}\n" % ("a" * 64),
    "domain a number": "names: {domain: 42}\n",
    "domain null": "names: {domain: null}\n",
}
# What JSON Schema cannot say, checked by the validator alone (the editor shows no error for these).
VALIDATOR_ONLY = {
    "share host out of the project after normalising": "shared_folders: [{host: src/../.., guest: /g, to: [web]}]\n",
    "hypervisor names used twice": "hypervisors: [{uri: 'qemu+ssh://a/system', memory_mb: 512, cpus: 1, name: a}, "
                                   "{uri: 'qemu+ssh://b/system', memory_mb: 512, cpus: 1, name: a}]\n",
    "hypervisor subnets overlap": "hypervisors: [{uri: 'qemu+ssh://a/system', memory_mb: 512, cpus: 1, subnet: 10.5.0.0/16}, "
                                  "{uri: 'qemu+ssh://b/system', memory_mb: 512, cpus: 1, subnet: 10.5.1.0/24}]\n",
    "hypervisors and libvirt.uri": "libvirt: {uri: 'qemu+ssh://a/system'}\n"
                                   "hypervisors: [{uri: 'qemu+ssh://b/system', memory_mb: 512, cpus: 1}]\n",
    "smoke names used twice": "smoke: [{name: a, from: web-1, http: 'http://x/'}, {name: a, from: db-1, http: 'http://y/'}]\n",
}


def validator_accepts(data) -> bool:
    try:
        parse_config(data, Path("devbox.yml"))
    except ConfigError:
        return False
    return True


def schema_errors(data) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def test_the_schema_is_a_valid_draft_7_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_devbox_yml_in_the_repository_passes_both(path):
    data = yaml.safe_load(path.read_text())
    assert validator_accepts(data)
    assert schema_errors(data) == []


@pytest.mark.parametrize("inventory", GENERATED_FROM)
def test_what_init_writes_passes_both(inventory, tmp_path):
    text = config_file_text(load_inventory(INVENTORIES / inventory), tmp_path, Config())
    assert text.startswith(f"# yaml-language-server: $schema={PROJECT_SCHEMA}\n")
    data = yaml.safe_load(text)
    assert validator_accepts(data) and schema_errors(data) == []


@pytest.mark.parametrize("text", GOOD.values(), ids=GOOD.keys())
def test_good_files_pass_both(text):
    data = yaml.safe_load(text)
    assert validator_accepts(data)
    assert schema_errors(data) == []


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_bad_files_fail_both(text):
    data = yaml.safe_load(text)
    assert not validator_accepts(data)
    assert schema_errors(data), "the validator rejects this but the editor schema accepts it"


@pytest.mark.parametrize("text", VALIDATOR_ONLY.values(), ids=VALIDATOR_ONLY.keys())
def test_what_only_the_validator_can_check(text):
    """If the schema ever learns this, move the case to BAD."""
    data = yaml.safe_load(text)
    assert not validator_accepts(data) and schema_errors(data) == []


def _known_keys(data, where: str) -> set[str]:
    """The keys the validator knows at ``where``, read from its own message about an unknown key."""
    with pytest.raises(ConfigError) as err:
        parse_config(data, Path("devbox.yml"))
    message = next(p for p in err.value.problems if "zz_unknown" in p)
    listed = re.search(r"\((?:known|allowed): ([^)]*)\)", message)
    assert listed, f"{where}: {message}"
    return {k.strip() for k in listed.group(1).split(",")}


def _props(*path) -> set[str]:
    node = SCHEMA
    for step in path:
        node = node[step]
    return set(node["properties"])


@pytest.mark.parametrize("data, schema_path", [
    ({"zz_unknown": 1}, ()),
    ({"libvirt": {"zz_unknown": 1}}, ("properties", "libvirt")),
    ({"defaults": {"zz_unknown": 1}}, ("properties", "defaults")),
    ({"host_vars": {"zz_unknown": 1}}, ("properties", "host_vars")),
    ({"environment_groups": {"zz_unknown": 1}}, ("properties", "environment_groups")),
    ({"groups": {"web": {"zz_unknown": 1}}}, ("properties", "groups", "additionalProperties")),
    ({"environments": {"staging": {"inventory": "x", "zz_unknown": 1}}}, ("properties", "environments", "properties",
                                                                          "production")),
    ({"smoke": [{"name": "a", "from": "b", "http": "http://c/", "zz_unknown": 1}]}, ("properties", "smoke", "items")),
    ({"parity": {"expected": [{"fact": "f", "reason": "r", "zz_unknown": 1}]}},
     ("properties", "parity", "properties", "expected", "items")),
    ({"snapshots": {"zz_unknown": 1}}, ("properties", "snapshots")),
    ({"shared_folders": [{"host": "s", "guest": "/g", "to": ["w"], "zz_unknown": 1}]},
     ("properties", "shared_folders", "items")),
    ({"names": {"zz_unknown": 1}}, ("properties", "names")),
    ({"hypervisors": [{"uri": "qemu:///system", "memory_mb": 512, "cpus": 1, "zz_unknown": 1}]},
     ("properties", "hypervisors", "anyOf", 1, "items")),
], ids=["top", "libvirt", "defaults", "host_vars", "environment_groups", "groups", "environments", "smoke", "parity.expected",
        "snapshots", "shared_folders", "names", "hypervisors"])
def test_each_section_knows_the_same_keys(data, schema_path):
    assert _props(*schema_path) == _known_keys(data, "/".join(map(str, schema_path)))


def test_parity_section_knows_only_expected():
    with pytest.raises(ConfigError, match=r"parity.zz_unknown: unknown key \(allowed: expected\)"):
        parse_config({"parity": {"zz_unknown": 1}}, Path("devbox.yml"))
    assert _props("properties", "parity") == {"expected"}


def test_defaults_agree():
    props = SCHEMA["properties"]
    config = Config()
    assert props["box"]["default"] == config.box == "devbox/debian12"
    assert props["playbook"]["default"] == config.playbook
    assert props["network"]["default"] == config.network
    assert props["provider"]["default"] == config.provider
    assert props["snapshots"]["properties"]["converged"]["default"] is config.converged_snapshot is True
    share = props["shared_folders"]["items"]["properties"]
    assert share["read_only"]["default"] is SharedFolder.read_only is False
    assert share["type"]["default"] == SharedFolder.type == "auto"
    assert share["type"]["enum"] == list(SHARE_TYPES)


def test_config_schema_command_prints_the_shipped_schema(tmp_path):
    result = CliRunner().invoke(main, ["-C", str(tmp_path), "config", "schema"])
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_text() and json.loads(result.stdout) == SCHEMA
    assert list(tmp_path.iterdir()) == []   # prints, writes nothing
