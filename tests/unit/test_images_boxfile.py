"""Box files from VM disks and adding them to Vagrant, with the real qemu-img and the real vagrant (a throw-away
VAGRANT_HOME per test), on small qcow2 disks made here: a base volume and a VM's overlay on it, as libvirt makes
a VM's volume from a box."""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from provisioner import DATA_DIR
from provisioner.errors import DevboxError
from provisioner.images.boxfile import (ImageError, VagrantBoxes, add_image, base_box_record, disk_info, export_box,
                                        parse_box_list, publish_image, read_index, sha256_of, vagrant_box_dir)
from provisioner.images.catalog import INDEX_NAME, definition_digest

DEFINITION = {"provider": "libvirt", "box": "devbox/debian12", "memory": 512, "cpus": 1, "groups": ["dbservers"],
              "host_vars": "0" * 64}
LEDGER = {"play:0:role:db": {"role": "1" * 64, "vars": "2" * 64}}
BASE_BOX = {"name": "devbox/debian12", "digest": "447b4f8c181579e8"}


def qemu(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True)


def make_vm_disk(folder: Path) -> Path:
    """A 64 MiB base volume with data, and a VM's overlay on it that changed another region (libvirt's layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    base, disk = folder / "base.qcow2", folder / "vm.qcow2"
    qemu("qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M")
    qemu("qemu-io", "-c", "write -P 0xab 0 2M", str(base))
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(disk))
    qemu("qemu-io", "-c", "write -P 0xcd 8M 2M", str(disk))
    return disk


def make_box_files(folder: Path) -> Path:
    """What Vagrant's copy of devbox's base box holds beside its disk: the box-level Vagrantfile devbox ships,
    a kernel and an initramfs (small stand-ins: nothing boots here)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA_DIR / "box" / "Vagrantfile", folder / "Vagrantfile")
    (folder / "vmlinuz").write_bytes(b"kernel\0" * 100)
    (folder / "initrd.img").write_bytes(b"initrd\0" * 100)
    return folder


def publish(folder: Path, disk: Path, box_files: Path | None, when: datetime, **kw):
    return publish_image(folder, vm="db-1", project="shop", disk=disk, box_files=box_files, definition=DEFINITION,
                         commit="0123456789abcdef0123456789abcdef01234567", dirty=False, ledger=LEDGER,
                         base_box=BASE_BOX, when=when, **kw)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One folder, two exports of db-1 (the second a newer version), and what the exports reported."""
    root = tmp_path_factory.mktemp("images")
    disk = make_vm_disk(root / "pool")
    box_files = make_box_files(root / "basebox")
    said = []
    first = publish(root / "published", disk, box_files, datetime(2026, 12, 1, 3, 48, 12, tzinfo=timezone.utc),
                    progress=lambda subject, message: said.append((subject, message)))
    second = publish(root / "published", disk, box_files, datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc))
    return {"root": root, "folder": root / "published", "disk": disk, "records": (first, second), "said": said}


@pytest.fixture
def boxes(tmp_path) -> VagrantBoxes:
    return VagrantBoxes({"VAGRANT_HOME": str(tmp_path / "vagrant.d")}, log_path=tmp_path / "vagrant.log")


def vagrant_home_is_clean(boxes: VagrantBoxes) -> None:
    """Nothing of a failed add: no box listed, no box folder, no download left in Vagrant's tmp folder."""
    assert boxes.list() == []
    left = [p for sub in ("boxes", "tmp") if (boxes.home / sub).is_dir() for p in (boxes.home / sub).iterdir()]
    assert left == []


def test_the_box_is_the_vms_disk_flattened_with_the_base_boxs_boot_files(published, tmp_path):
    first = published["records"][0]
    box = published["folder"] / first.box_file
    with tarfile.open(box) as tar:
        assert tar.getnames() == ["metadata.json", "Vagrantfile", "vmlinuz", "initrd.img", "devbox-image.json",
                                  "box.img"]
        tar.extractall(tmp_path, filter="data")
    assert json.loads((tmp_path / "metadata.json").read_text()) == {"provider": "libvirt", "format": "qcow2",
                                                                     "virtual_size": 1}
    assert (tmp_path / "Vagrantfile").read_text() == (DATA_DIR / "box" / "Vagrantfile").read_text()
    info = disk_info(tmp_path / "box.img")
    assert info.format == "qcow2" and info.backing is None and info.virtual_size == 64 * 1024 ** 2
    # the same content as the VM saw through its overlay and the base volume: compare reads both chains
    assert subprocess.run(["qemu-img", "compare", str(tmp_path / "box.img"), str(published["disk"])]).returncode == 0
    fmt = json.loads(qemu("qemu-img", "info", "--output=json", str(tmp_path / "box.img")).stdout)
    assert fmt["format-specific"]["data"]["compression-type"] == "zstd"
    image = json.loads((tmp_path / "devbox-image.json").read_text())
    assert image["vm"] == "db-1" and image["version"] == first.version and image["base_box"] == BASE_BOX
    assert sha256_of(box) == first.sha256 and box.stat().st_size == first.size
    # what the export said while it worked: the long step names itself
    assert any("flattening and compressing" in m and "on top of" in m for _, m in published["said"])


def test_the_catalog_and_the_index_list_both_exports_newest_first(published):
    first, second = published["records"]
    catalog = json.loads((published["folder"] / "db-1" / "catalog.json").read_text())
    assert catalog["name"] == "devbox-images/shop-db-1"
    assert [v["version"] for v in catalog["versions"]] == [second.version, first.version]
    assert catalog["versions"][1]["providers"] == [{"name": "libvirt", "url": f"db-1-{first.version}.box",
                                                    "checksum_type": "sha256", "checksum": first.sha256}]
    records = read_index(published["folder"])
    assert records == [first, second]
    assert first.definition_digest == definition_digest(DEFINITION) and first.ledger == LEDGER
    assert first.commit.startswith("0123456789ab") and first.exported == "2026-12-01T03:48:12+00:00"


def test_an_export_of_a_disk_that_is_not_qcow2_leaves_nothing(tmp_path):
    raw = tmp_path / "disk.raw"
    qemu("qemu-img", "create", "-q", "-f", "raw", str(raw), "16M")
    out = tmp_path / "out"
    with pytest.raises(ImageError, match="raw disk, not qcow2"):
        export_box(raw, out / "x.box", box_files=None, image_json={})
    assert not out.exists() or list(out.iterdir()) == []


def test_an_export_of_a_missing_disk_says_which(tmp_path):
    with pytest.raises(DevboxError, match="reading the disk") as err:
        export_box(tmp_path / "nope.qcow2", tmp_path / "out" / "x.box", box_files=None, image_json={})
    assert "nope.qcow2" in str(err.value) and err.value.hint
    assert not (tmp_path / "out").exists()


def test_a_second_export_of_the_same_version_is_refused(published):
    with pytest.raises(ImageError, match="already published"):
        publish(published["folder"], published["disk"], None, datetime(2026, 12, 1, 3, 48, 12, tzinfo=timezone.utc))
    assert len(read_index(published["folder"])) == 2


@pytest.mark.vagrant
def test_vagrant_adds_the_chosen_version_from_the_catalog(published, boxes):
    first, _second = published["records"]
    added = add_image(published["folder"], first, boxes)
    assert added.added and (added.name, added.version) == ("devbox-images/shop-db-1", first.version)
    assert boxes.list() == [("devbox-images/shop-db-1", "libvirt", first.version)]
    unpacked = vagrant_box_dir(boxes.home, first.box_name, first.version)
    assert sorted(p.name for p in unpacked.iterdir()) == ["Vagrantfile", "box.img", "devbox-image.json",
                                                          "initrd.img", "metadata.json", "vmlinuz"]
    # added from a catalog: Vagrant keeps where it came from (`vagrant box outdated` reads it)
    assert (unpacked.parent.parent / "metadata_url").read_text().startswith("file://")
    assert add_image(published["folder"].as_uri(), first, boxes).added is False  # file:// URL, already there


def corrupt_copy(published, tmp_path, damage) -> tuple[Path, Path]:
    folder = tmp_path / "copy"
    shutil.copytree(published["folder"], folder)
    box = folder / published["records"][0].box_file
    damage(box)
    return folder, box


def flip_a_byte(box: Path) -> None:
    with open(box, "r+b") as fh:
        fh.seek(box.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def truncate(box: Path) -> None:
    with open(box, "r+b") as fh:
        fh.truncate(box.stat().st_size - 4096)


@pytest.mark.vagrant
@pytest.mark.parametrize("damage, message", [(flip_a_byte, "the file is corrupt"), (truncate, "truncated")])
def test_a_corrupt_or_truncated_box_is_refused_before_vagrant_sees_it(published, boxes, tmp_path, damage, message):
    folder, box = corrupt_copy(published, tmp_path, damage)
    with pytest.raises(ImageError, match=message) as err:
        add_image(folder, published["records"][0], boxes)
    assert str(box) in str(err.value) and "again" in err.value.hint
    vagrant_home_is_clean(boxes)


@pytest.mark.vagrant
def test_vagrant_itself_refuses_a_box_whose_sha256_differs_from_its_catalog_and_keeps_nothing(published, boxes,
                                                                                              tmp_path):
    folder, _box = corrupt_copy(published, tmp_path, flip_a_byte)
    catalog = folder / "db-1" / "catalog.json"
    data = json.loads(catalog.read_text())
    data["versions"] = [v for v in data["versions"] if v["version"] == published["records"][0].version]
    data["versions"][0]["providers"][0]["url"] = (folder / published["records"][0].box_file).as_uri()
    catalog.write_text(json.dumps(data))
    result = boxes.add_from_catalog(catalog, data["name"], data["versions"][0]["version"])
    assert not result.ok and "checksum" in result.tail().lower()
    vagrant_home_is_clean(boxes)


@pytest.mark.vagrant
def test_a_box_vagrant_cannot_unpack_is_refused_and_nothing_stays(published, boxes, tmp_path):
    """The publisher's checksum matches, the box is not a box (a broken export): Vagrant fails, devbox says so."""
    folder = tmp_path / "broken"
    shutil.copytree(published["folder"], folder)
    first = published["records"][0]
    box = folder / first.box_file
    box.write_bytes(b"not a tar archive\n" * 1000)
    sha, size = sha256_of(box), box.stat().st_size
    index = json.loads((folder / INDEX_NAME).read_text())
    for image in index["images"]:
        if image["version"] == first.version:
            image.update(sha256=sha, size=size)
    (folder / INDEX_NAME).write_text(json.dumps(index))
    catalog = json.loads((folder / "db-1" / "catalog.json").read_text())
    for v in catalog["versions"]:
        if v["version"] == first.version:
            v["providers"][0]["checksum"] = sha
    (folder / "db-1" / "catalog.json").write_text(json.dumps(catalog))
    record = next(r for r in read_index(folder) if r.version == first.version)
    with pytest.raises(DevboxError, match="adding the image of db-1 to Vagrant") as err:
        add_image(folder, record, boxes)
    assert "nothing of it was kept" in err.value.hint
    vagrant_home_is_clean(boxes)


def test_the_base_box_is_named_with_the_digest_devbox_box_build_gave_it(tmp_path):
    folder = make_box_files(tmp_path / "box")
    assert base_box_record(folder, "generic/debian12") == {"name": "generic/debian12"}
    (folder / "devbox-box.json").write_text(json.dumps({"name": "devbox/debian12", "digest": "447b4f8c181579e8",
                                                        "release": "bookworm"}))
    assert base_box_record(folder, "devbox/debian12") == BASE_BOX


def test_parse_box_list_reads_vagrants_machine_readable_list():
    text = ("1796096977,,box-name,devbox-images/shop-db-1\n1796096977,,box-provider,libvirt\n"
            "1796096977,,box-version,20261201.34812\n1796096977,,box-name,devbox/debian12\n"
            "1796096977,,box-provider,libvirt\n1796096977,,box-version,0\n"
            "1796096977,,ui,info,devbox/debian12 (libvirt\\, 0)\n")
    assert parse_box_list(text) == [("devbox-images/shop-db-1", "libvirt", "20261201.34812"),
                                    ("devbox/debian12", "libvirt", "0")]
    assert parse_box_list("1796096977,,ui,warn,There are no installed boxes!\n") == []
