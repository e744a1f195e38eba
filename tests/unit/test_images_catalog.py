"""The pure core of converged images: what an image is for, Vagrant's catalog, devbox's index, the choice."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from provisioner.config.schema import Config
from provisioner.images.catalog import (ImageError, ImageRecord, add_to_catalog, add_to_index, box_name, choose,
                                        definition_digest, image_definition, index_json, parse_catalog,
                                        parse_index, resolved_catalog, version_for, version_key)
from provisioner.machines.snapshot_book import definition_of
from provisioner.plan.topology import MachineSpec

DB = MachineSpec(name="db-1", hostname="db-1", groups=("dbservers", "monitored"), represents=("db01", "db02"),
                 memory=512, cpus=1, address="192.168.56.12", host_vars={"db_port": 5433})


def definition(config: Config = Config(), machine: MachineSpec = DB) -> dict:
    return image_definition(definition_of(config, machine), machine)


def record(vm="db-1", version="20261201.34812", defn=None, **over) -> ImageRecord:
    defn = defn if defn is not None else definition()
    base = ImageRecord(vm=vm, box_name=box_name("shop", vm), version=version,
                       box_file=f"{vm}/{vm}-{version}.box", sha256="ab" * 32, size=1000, virtual_size_gb=4,
                       commit="0123456789abcdef0123", dirty=False, definition=defn,
                       definition_digest=definition_digest(defn),
                       ledger={"play:0:role:db": {"role": "cd" * 32}}, exported="2026-12-01T03:48:12+00:00",
                       base_box={"name": "devbox/debian12", "digest": "447b4f8c181579e8"})
    return replace(base, **over)


def test_the_definition_covers_box_size_groups_and_kept_variables_but_not_the_address():
    d = definition()
    assert d["box"] == "devbox/debian12" and d["provider"] == "libvirt"
    assert d["memory"] == 512 and d["cpus"] == 1 and d["groups"] == ["dbservers", "monitored"]
    assert "address" not in d and "network" not in d and "libvirt_uri" not in d
    # a kept variable enters as a digest: its value is never in the record
    assert "5433" not in json.dumps(d)
    same = definition(machine=replace(DB, address="192.168.56.99", represents=("db09",)))
    assert definition_digest(same) == definition_digest(d)
    for changed in (replace(DB, memory=1024), replace(DB, cpus=2), replace(DB, groups=("dbservers",)),
                    replace(DB, host_vars={"db_port": 5434})):
        assert definition_digest(definition(machine=changed)) != definition_digest(d), changed
    assert definition_digest(definition(Config(box="other/box"))) != definition_digest(d)


def test_versions_sort_as_vagrant_compares_them():
    early = version_for(datetime(2026, 12, 1, 3, 48, 12, tzinfo=timezone.utc))
    late = version_for(datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc))
    assert early == "20261201.34812" and late == "20261201.120000"
    assert version_key(late) > version_key(early)  # as strings, "…34812" > "…120000": numbers decide


def test_the_catalog_is_vagrants_format_newest_version_first():
    one = record(version="20261201.34812")
    two = record(version="20261201.120000", sha256="ef" * 32)
    catalog = add_to_catalog(add_to_catalog(None, one, "db-1-20261201.34812.box"), two, "db-1-20261201.120000.box")
    assert catalog["name"] == "devbox-images/shop-db-1"
    assert [v["version"] for v in catalog["versions"]] == ["20261201.120000", "20261201.34812"]
    assert catalog["versions"][0]["providers"] == [{"name": "libvirt", "url": "db-1-20261201.120000.box",
                                                    "checksum_type": "sha256", "checksum": "ef" * 32}]
    assert parse_catalog(json.dumps(catalog), "c.json") == catalog
    resolved = resolved_catalog(catalog, "file:///srv/images/db-1/")
    assert resolved["versions"][1]["providers"][0]["url"] == "file:///srv/images/db-1/db-1-20261201.34812.box"
    served = resolved_catalog(catalog, "http://127.0.0.1:8000/images/db-1/catalog.json")
    assert served["versions"][0]["providers"][0]["url"] == "http://127.0.0.1:8000/images/db-1/db-1-20261201.120000.box"
    absolute = add_to_catalog(None, one, "http://127.0.0.1:8000/x.box")
    assert resolved_catalog(absolute, "file:///a/")["versions"][0]["providers"][0]["url"] == "http://127.0.0.1:8000/x.box"


def test_the_index_round_trips_and_refuses_a_version_twice():
    records = add_to_index([record()], record(version="20261201.120000"))
    assert parse_index(json.dumps(index_json(records)), "i.json") == records  # oldest first, by version number
    with pytest.raises(ImageError, match="already published"):
        add_to_index(records, record())


@pytest.mark.parametrize("change, message", [
    (lambda r: {**r, "box_file": "../../etc/passwd"}, "must stay inside"),
    (lambda r: {**r, "sha256": "nothex"}, "sha256"),
    (lambda r: {**r, "version": "latest"}, "version"),
    (lambda r: {**r, "definition": {**r["definition"], "memory": 4096}}, "does not match its definition"),
    (lambda r: {k: v for k, v in r.items() if k != "size"}, "size"),
])
def test_a_malformed_index_is_refused_with_the_image_and_the_problem(change, message):
    raw = {"format": 1, "images": [change(record().to_json())]}
    with pytest.raises(ImageError, match=message) as err:
        parse_index(json.dumps(raw), "/srv/images/devbox-images.json")
    assert "image 1" in str(err.value) and err.value.hint
    with pytest.raises(ImageError, match="not JSON"):
        parse_index("{", "i.json")
    with pytest.raises(ImageError, match="not a devbox image index"):
        parse_index(json.dumps({"images": []}), "i.json")


def test_each_vm_gets_the_newest_image_whose_definition_matches():
    old = record(version="20261130.120000")
    new = record(version="20261201.34812")
    bigger = record(version="20261201.50000", defn=definition(machine=replace(DB, memory=1024)))
    web = MachineSpec(name="web-1", hostname="web-1", groups=("webservers",), represents=("web01",), memory=512,
                      cpus=1, address="192.168.56.11")
    chosen = choose([old, bigger, new], {"db-1": definition(), "web-1": definition(machine=web)})
    assert chosen["db-1"].record == new and "20261201.34812" in chosen["db-1"].reason
    assert "commit 0123456789ab" in chosen["db-1"].reason
    assert chosen["web-1"].record is None and chosen["web-1"].reason == "no image of this VM was published"
    # a definition no image has: none is used, and the newest image's differences are said
    wanted = definition(machine=replace(DB, memory=2048, groups=("dbservers", "backup")))
    why = choose([old, new], {"db-1": wanted})["db-1"]
    assert why.record is None
    assert "memory: the image has 512 MiB, the project now says 2048 MiB" in why.reason
    assert "not in backup" in why.reason and "also in monitored" in why.reason
