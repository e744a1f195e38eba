"""Public production inventories vendored with their provenance (tests/data/inventories/real/): each is recorded
(repository, commit, licence) and devbox plans it, or refuses it with a message, as Ansible's parser reads it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import assert_handled
from provisioner.app import Devbox
from provisioner.cli import main

REAL = Path(__file__).resolve().parents[1] / "data" / "inventories" / "real"
CORPUS = sorted(p.name for p in REAL.iterdir() if (p / "SOURCE.yml").is_file())

# what `devbox plan` does with each today: exit code, development VMs, excluded production hosts
EXPECTED = {
    "ceph-ansible-all-daemons": (0, 10, 0),
    "kolla-ansible-all-in-one": (0, 0, 1),       # its one host is localhost with ansible_connection=local
    "kolla-ansible-multinode": (0, 7, 1),        # the rules init proposes: three VMs for the etcd quorum
    "kubespray-sample": (1, None, None),         # `:children` of undefined groups: Ansible's ini parser rejects it
    "trellis-wordpress": (0, 1, 0),
}


def source(name: str) -> dict:
    return yaml.safe_load((REAL / name / "SOURCE.yml").read_text())


def test_every_vendored_inventory_has_an_expectation():
    assert sorted(EXPECTED) == CORPUS


@pytest.mark.parametrize("name", CORPUS)
def test_provenance_is_recorded(name):
    data = source(name)
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", data["repository"])
    assert data["url"] == f"https://github.com/{data['repository']}"
    assert re.fullmatch(r"[0-9a-f]{40}", data["commit"])
    assert data["licence"] and data["licence_file"]
    assert all(re.fullmatch(r"[0-9a-f]{40}", p["commit"]) for p in data["paths"])
    assert (REAL / name / data["inventory"]).exists()


@pytest.mark.parametrize("name", CORPUS)
def test_devbox_plans_it_or_says_why_not(name, tmp_path):
    code, vms, excluded = EXPECTED[name]
    project = tmp_path / "project"
    project.mkdir()
    inventory = REAL / name / source(name)["inventory"]
    result = CliRunner().invoke(main, ["-C", str(project), "plan", "--inventory", str(inventory), "--json"],
                                obj=Devbox(project_dir=project))
    assert_handled(result, code)
    if code == 0:
        plan = json.loads(result.stdout)
        assert len(plan["machines"]) == vms and len(plan["excluded"]) == excluded
    else:
        assert str(inventory) in result.output and "hint:" in result.output
    assert list(project.iterdir()) == []   # plan writes nothing
