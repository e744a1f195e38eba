"""provisioner/config/entries.py: the shape checks `hypervisors:` and `shared_folders:` share, through devbox.yml
files read by the real loader (load_config) and through the helper itself."""
from __future__ import annotations

import pytest

from provisioner.config.entries import Key, check_entries, is_int, is_text
from provisioner.config.hypervisors import HYPERVISOR_KEYS
from provisioner.config.schema import SHARE_KEYS, load_config
from provisioner.errors import ConfigError

KEYS = (Key("name", "a name", is_text, required=True), Key("size", "a whole number, at least 1",
                                                            lambda v: is_int(v, 1), default=1))
EXAMPLE = "e.g. `- {name: a}`"


def check(value, non_empty=False):
    return check_entries(value, "things", KEYS, what="things", example=EXAMPLE, non_empty=non_empty)


def test_each_item_is_kept_with_its_place_and_defaults():
    entries, problems = check([{"name": "a"}, {"name": "b", "size": 3}])
    assert problems == []
    assert [(e.where, e.get("name"), e.get("size"), e.clean) for e in entries] == [
        ("things[0]", "a", 1, True), ("things[1]", "b", 3, True)]


@pytest.mark.parametrize("value, non_empty, expected", [
    ("a", False, "`things` must be a list of things, mappings with `name` (e.g. `- {name: a}`; got 'a')"),
    ([], True, "`things` must be a non-empty list of things, mappings with `name` (e.g. `- {name: a}`; got [])"),
    (["a"], False, "`things[0]` must be a mapping with `name` (known: name, size; e.g. `- {name: a}`; got 'a')"),
    ([{"name": "a", "colour": 1}], False, "unknown key `things[0].colour` (known: name, size)"),
    ([{"size": 2}], False, "`things[0].name` is missing: it must be a name (e.g. `- {name: a}`)"),
    ([{"name": "a"}, {"name": "b", "size": True}], False, "`things[1].size` must be a whole number, at least 1 "
                                                          "(got True)"),
])
def test_each_problem_names_the_item_and_says_what_is_expected(value, non_empty, expected):
    assert check(value, non_empty)[1] == [expected]


def test_every_problem_of_every_item_is_reported_and_each_item_says_which_keys_failed():
    entries, problems = check([{"size": 0, "extra": 1}, "x", {"name": "ok"}])
    assert len(problems) == 4
    first, last = entries
    assert (first.index, first.ok("name"), first.ok("size"), first.unknown, first.clean) == (0, False, False,
                                                                                           ("extra",), False)
    assert (last.index, last.clean) == (2, True)


def test_an_optional_key_given_empty_is_refused_as_the_json_schema_refuses_it():
    entries, problems = check([{"name": "a", "size": None}])
    assert problems == ["`things[0].size` must be a whole number, at least 1 (got None)"] and not entries[0].ok("size")


def test_an_empty_key_is_an_empty_list_and_an_empty_list_is_fine_unless_refused():
    assert check(None) == ([], []) and check([]) == ([], [])


def test_a_long_value_is_shortened_in_the_message():
    problem = check("x" * 500)[1][0]
    assert problem.endswith("...)") and len(problem) < 250


@pytest.mark.parametrize("yaml_text, expected", [
    ("hypervisors: [{uri: 'qemu:///system', memory_mb: 512}]\n",
     "`hypervisors[0].cpus` is missing: it must be a whole number of CPUs"),
    ("hypervisors: [{uri: 'qemu:///system', memory_mb: 512, cpus: 1, ram: 1}]\n",
     "unknown key `hypervisors[0].ram` (known: name, uri, memory_mb, cpus, subnet, known_hosts)"),
    ("hypervisors:\n  - {uri: 'qemu:///system', memory_mb: 512, cpus: 1}\n  - qemu:///system\n",
     "`hypervisors[1]` must be a mapping with `uri`, `memory_mb` and `cpus`"),
    ("shared_folders: [{host: src, to: [web]}]\n", "`shared_folders[0].guest` is missing: it must be an absolute path"),
    ("shared_folders:\n  - {host: src, guest: /srv/a, to: [web]}\n  - {host: src, guest: /srv/b, to: web}\n",
     "`shared_folders[1].to` must be a list of group names or VM names (e.g. [web] or [web-1]) (got 'web')"),
    ("shared_folders: [{host: src, guest: /srv/app, to: [web], owner: www-data}]\n",
     "unknown key `shared_folders[0].owner` (known: host, guest, to, read_only, type)"),
])
def test_both_sections_report_through_devbox_yml_with_its_path_and_the_next_step(tmp_path, yaml_text, expected):
    path = tmp_path / "devbox.yml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(expected in p for p in err.value.problems), err.value.problems
    assert str(path) in str(err.value) and err.value.hint == f"fix {path} and run the command again"


def test_both_sections_use_the_shared_keys():
    assert all(isinstance(k, Key) for k in (*HYPERVISOR_KEYS, *SHARE_KEYS))
    assert [k.name for k in HYPERVISOR_KEYS if k.required] == ["uri", "memory_mb", "cpus"]
    assert [k.name for k in SHARE_KEYS if k.required] == ["host", "guest", "to"]
