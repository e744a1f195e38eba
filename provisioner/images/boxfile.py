"""Box files from VM disks, and adding a published one to Vagrant (runs qemu-img and vagrant).

``export_box`` turns a VM's qcow2 disk (libvirt's volume, usually a thin overlay on the base box's volume) into a
standalone libvirt box: the disk flattened and compressed (``qemu-img convert -c -O qcow2``: the result has no
backing file), ``metadata.json`` (provider libvirt, format qcow2, virtual size in GB), and the files the base box
boots with (its box-level Vagrantfile, kernel and initramfs: devbox's box has no boot loader, so the image must
boot the same way), all in a plain tar (the qcow2 is compressed already), as ``devbox box build`` packs its box.

``add_image`` verifies a published box's sha256 before Vagrant sees it, then runs ``vagrant box add`` on the
image's catalog (absolute URLs, the version pinned; Vagrant checks the sha256 again on its own copy), and
makes sure a failed add leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from provisioner.adapters import process
from provisioner.fsutil import atomic_write
from provisioner.images.catalog import (INDEX_NAME, PROVIDER, ImageError, ImageRecord, add_to_catalog, add_to_index,
                                        box_name, catalog_provider, definition_digest, index_json, location_url,
                                        parse_catalog, parse_index, record_paths, resolved_catalog, version_for)

Progress = Callable[[str, str], None]
# what a box made by `devbox box build` carries beside its disk, and that the image must carry too
BOX_LEVEL_FILES = ("Vagrantfile", "vmlinuz", "initrd.img")
GIB = 1024 ** 3


# ---------------------------------------------------------------------------------------------- the disk

@dataclass(frozen=True)
class DiskInfo:
    path: str
    format: str
    virtual_size: int             # bytes
    actual_size: int              # bytes used on the host (this file only, not its backing chain)
    backing: str | None

    @property
    def virtual_size_gb(self) -> int:
        """What vagrant-libvirt reads from metadata.json: whole GB, rounded up so the disk is never cut."""
        return max(1, math.ceil(self.virtual_size / GIB))


def parse_qemu_info(text: str, where: str) -> DiskInfo:
    """``qemu-img info --output=json`` of one image."""
    try:
        data = json.loads(text)
        return DiskInfo(path=where, format=str(data["format"]), virtual_size=int(data["virtual-size"]),
                        actual_size=int(data.get("actual-size", 0)),
                        backing=data.get("full-backing-filename") or data.get("backing-filename"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"`qemu-img info {where}` printed something devbox cannot read ({exc})",
                         "check the qemu-img version (qemu-utils 7.x is what devbox is tested with)") from None


def disk_info(path: Path) -> DiskInfo:
    result = process.run(["qemu-img", "info", "--output=json", str(path)], timeout=120)
    result.check(what=f"reading the disk {path}",
                 hint="a running VM locks its disk: halt it first; check the path names a qcow2 volume")
    return parse_qemu_info(result.stdout, str(path))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ExportedBox:
    path: Path
    sha256: str
    size: int
    virtual_size_gb: int
    seconds: float
    disk: DiskInfo


def export_box(disk: Path, out: Path, *, box_files: Path | None, image_json: Mapping,
               progress: Progress | None = None, label: str = "image") -> ExportedBox:
    """Write ``out`` (a box file) from ``disk``. ``box_files``: the folder of the box the VM was created from
    (Vagrant's unpacked copy), whose box-level files the image carries; None when that box has none.
    ``image_json``: devbox's record, written into the box as ``devbox-image.json``. ``out`` appears whole or
    not at all."""
    say = progress or (lambda subject, message: None)
    started = time.monotonic()
    disk, out = Path(disk), Path(out)
    info = disk_info(disk)
    if info.format != "qcow2":
        raise ImageError(f"{disk} is a {info.format} disk, not qcow2", "export the VM's libvirt volume (qcow2)")
    carried = [name for name in BOX_LEVEL_FILES if box_files and (box_files / name).is_file()]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    log_path = work / "qemu-img.log"
    try:
        backing = f", on top of {info.backing}" if info.backing else ""
        say(label, f"flattening and compressing the disk ({info.virtual_size / GIB:.1f} GiB virtual, "
                   f"{info.actual_size / GIB:.2f} GiB in this file{backing}); this takes minutes")
        argv = ["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", str(disk),
                str(work / "box.img")]
        result = process.run(argv, log_path=log_path, timeout=3600)
        result.check(what=f"compressing the disk of {label}",
                     hint="halt the VM first (a running VM locks its disk) and check free space in "
                          f"{out.parent}")
        made = disk_info(work / "box.img")
        if made.backing:  # convert writes a standalone image unless asked otherwise; check, a box must be one
            raise ImageError(f"the compressed disk of {label} still has a backing file ({made.backing})",
                             "report this: qemu-img convert should have flattened it")
        (work / "metadata.json").write_text(json.dumps({"provider": PROVIDER, "format": "qcow2",
                                                        "virtual_size": info.virtual_size_gb}) + "\n")
        for name in carried:
            shutil.copyfile(box_files / name, work / name)
        (work / "devbox-image.json").write_text(json.dumps(dict(image_json), indent=2, sort_keys=True) + "\n")
        say(label, f"packing the box ({made.actual_size / GIB:.2f} GiB compressed)")
        tmp = work / "box.tar"
        with tarfile.open(tmp, "w") as tar:
            for name in ("metadata.json", *carried, "devbox-image.json", "box.img"):
                tar.add(work / name, arcname=name)
        say(label, "computing the box's sha256")
        digest = sha256_of(tmp)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportedBox(out, digest, out.stat().st_size, info.virtual_size_gb, time.monotonic() - started, info)


def vagrant_box_dir(vagrant_home: Path, name: str, version: str = "0", provider: str = PROVIDER) -> Path:
    """Where Vagrant keeps its unpacked copy of box ``name`` (devbox's base box is added without a version:
    ``0``)."""
    return Path(vagrant_home) / "boxes" / name.replace("/", "-VAGRANTSLASH-") / version / provider


def base_box_record(box_files: Path, name: str) -> dict:
    """Which box the VM was created from, for the image's record: the name, and the digest ``devbox box build``
    wrote into its box (``devbox-box.json``) when it is devbox's own."""
    try:
        marker = json.loads((Path(box_files) / "devbox-box.json").read_text())
    except (OSError, ValueError):
        return {"name": name}
    return {"name": name, "digest": marker.get("digest")}


# ---------------------------------------------------------------------------------------------- verification

def verify_box(path: Path, record: ImageRecord) -> None:
    """The box file is the one the record names: its size and sha256. Raises what failed and what to do."""
    where = f"image {record.vm} {record.version} ({path})"
    hint = "download or copy the published folder again; if it fails again, publish the images again"
    if not path.is_file():
        raise ImageError(f"{where}: the box file is missing", hint)
    size = path.stat().st_size
    if size != record.size:
        raise ImageError(f"{where}: the box file has {size} bytes, the index says {record.size}"
                         + (" (truncated)" if size < record.size else ""), hint)
    actual = sha256_of(path)
    if actual != record.sha256:
        raise ImageError(f"{where}: sha256 is {actual}, the index says {record.sha256} (the file is corrupt)", hint)


# ---------------------------------------------------------------------------------------------- Vagrant

def parse_box_list(text: str) -> list[tuple[str, str, str]]:
    """``vagrant box list --machine-readable``: (name, provider, version) per box."""
    boxes, current = [], {}
    for line in text.splitlines():
        parts = line.split(",", 3)
        if len(parts) < 4:
            continue
        kind, value = parts[2], parts[3]
        if kind == "box-name":
            current = {"name": value}
        elif kind == "box-provider" and "name" in current:
            current["provider"] = value
        elif kind == "box-version" and "name" in current:
            boxes.append((current["name"], current.get("provider", ""), value))
            current = {}
    return boxes


class VagrantBoxes:
    """`vagrant box list/add/remove` in one VAGRANT_HOME (the caller's environment when ``env`` has none)."""

    def __init__(self, env: Mapping[str, str] | None = None, *, log_path: Path | None = None):
        self.env = {"VAGRANT_CHECKPOINT_DISABLE": "1", **(env or {})}
        self.log_path = log_path

    @property
    def home(self) -> Path:
        return Path(self.env.get("VAGRANT_HOME") or os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")

    def list(self) -> list[tuple[str, str, str]]:
        result = process.run(["vagrant", "box", "list", "--machine-readable"], env=self.env, timeout=300)
        result.check(what="listing Vagrant's boxes", hint=f"check that VAGRANT_HOME ({self.home}) is readable")
        return parse_box_list(result.stdout)

    def has(self, name: str, version: str) -> bool:
        return (name, PROVIDER, version) in self.list()

    def add_from_catalog(self, catalog: Path, name: str, version: str) -> process.ProcessResult:
        return process.run(["vagrant", "box", "add", "--provider", PROVIDER, "--box-version", version,
                            str(catalog)], env=self.env, log_path=self.log_path, timeout=3600)

    def remove(self, name: str, version: str) -> None:
        process.run(["vagrant", "box", "remove", "--force", "--provider", PROVIDER, "--box-version", version,
                     name], env=self.env, log_path=self.log_path, timeout=600)


@dataclass(frozen=True)
class AddedImage:
    name: str
    version: str
    added: bool                   # False: Vagrant had this version already
    seconds: float


def add_image(published: str | Path, record: ImageRecord, boxes: VagrantBoxes, *,
              progress: Progress | None = None) -> AddedImage:
    """Add ``record``'s box from the published folder ``published`` (a path or a ``file://`` URL) to Vagrant.

    The box's size and sha256 are checked first; Vagrant then reads the image's own catalog (URLs made
    absolute, the version pinned) and checks the sha256 again on its copy. When Vagrant fails, whatever it
    left of this name and version is removed, so a second try starts clean."""
    say = progress or (lambda subject, message: None)
    started = time.monotonic()
    base = location_url(published).rstrip("/") + "/"
    if not base.startswith("file://"):
        raise ImageError(f"{published}: only a folder (a path or file:// URL) can be read so far",
                         "copy the published folder to this machine and give its path")
    folder = Path(base[len("file://"):])
    box_rel, catalog_rel = record_paths(record.vm, record.version)
    if boxes.has(record.box_name, record.version):
        say(record.vm, f"Vagrant has {record.box_name} {record.version} already")
        return AddedImage(record.box_name, record.version, False, time.monotonic() - started)
    catalog_path = folder / catalog_rel
    try:
        catalog = parse_catalog(catalog_path.read_text(), str(catalog_path))
    except OSError as exc:
        raise ImageError(f"cannot read the catalog of {record.vm}: {exc}",
                         "check that the published folder is complete (it has one folder per VM)") from None
    provider = catalog_provider(catalog, record.version, str(catalog_path))
    if str(provider.get("checksum", "")).lower() != record.sha256 or catalog.get("name") != record.box_name:
        raise ImageError(f"{catalog_path}: the catalog and {folder / 'devbox-images.json'} disagree about "
                         f"{record.vm} {record.version}", "publish the images again")
    resolved = resolved_catalog(catalog, (folder / catalog_rel).parent.as_uri() + "/")
    box_path = Path(catalog_provider(resolved, record.version, str(catalog_path))["url"][len("file://"):])
    if box_path.resolve() != (folder / box_rel).resolve():
        raise ImageError(f"{catalog_path}: the catalog names {box_path}, devbox published {folder / box_rel}",
                         "publish the images again")
    say(record.vm, f"checking the sha256 of {box_path.name} ({record.size / GIB:.2f} GiB)")
    verify_box(box_path, record)
    with tempfile.TemporaryDirectory(prefix="devbox-catalog-") as tmp:
        pinned = dict(resolved, versions=[v for v in resolved["versions"] if v["version"] == record.version])
        local = Path(tmp) / "catalog.json"
        atomic_write(local, json.dumps(pinned, indent=2) + "\n")
        say(record.vm, f"adding {record.box_name} {record.version} to Vagrant ({boxes.home})")
        result = boxes.add_from_catalog(local, record.box_name, record.version)
    if not result.ok:
        leftover = boxes.has(record.box_name, record.version)
        if leftover:
            boxes.remove(record.box_name, record.version)
        result.check(what=f"adding the image of {record.vm} to Vagrant",
                     hint="nothing of it was kept; check free space under VAGRANT_HOME and the published folder, "
                          "then try again")
    if not boxes.has(record.box_name, record.version):
        raise ImageError(f"`vagrant box add` reported success but `vagrant box list` has no {record.box_name} "
                         f"{record.version}", f"check {boxes.home}")
    return AddedImage(record.box_name, record.version, True, time.monotonic() - started)


# ---------------------------------------------------------------------------------------------- publishing

def read_index(folder: Path) -> list[ImageRecord]:
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        return []
    return parse_index(path.read_text(), str(path))


def publish_image(folder: Path, *, vm: str, project: str, disk: Path, box_files: Path | None,
                  definition: Mapping, commit: str | None, dirty: bool, ledger: Mapping,
                  base_box: Mapping, when: datetime, base_url: str | None = None,
                  progress: Progress | None = None) -> ImageRecord:
    """Export ``disk`` as ``vm``'s image into the published folder ``folder``: the box file, the VM's catalog
    (Vagrant's format) and devbox's index. The index is written last: an image is published once it is listed
    there, and a failed export leaves the folder as it was (apart from the box file of a version nobody lists).

    ``base_url``: where the folder will be served from; the catalog's box URLs are relative to the catalog
    without it."""
    folder = Path(folder)
    version = version_for(when)
    box_rel, catalog_rel = record_paths(vm, version)
    records = read_index(folder)
    if any(r.vm == vm and r.version == version for r in records):
        raise ImageError(f"an image of {vm} version {version} is already published in {folder}",
                         "export again (the version is the export time) or publish to another folder")
    name = box_name(project, vm)
    digest = definition_digest(definition)
    exported = export_box(disk, folder / box_rel, box_files=box_files, label=vm, progress=progress,
                          image_json={"vm": vm, "box_name": name, "version": version, "commit": commit,
                                      "definition_digest": digest, "base_box": dict(base_box)})
    record = ImageRecord(vm=vm, box_name=name, version=version, box_file=box_rel, sha256=exported.sha256,
                         size=exported.size, virtual_size_gb=exported.virtual_size_gb, commit=commit, dirty=dirty,
                         definition=dict(definition), definition_digest=digest,
                         ledger={k: dict(v) for k, v in ledger.items()},
                         exported=when.astimezone(timezone.utc).isoformat(timespec="seconds"),
                         base_box=dict(base_box))
    catalog_path = folder / catalog_rel
    catalog = parse_catalog(catalog_path.read_text(), str(catalog_path)) if catalog_path.is_file() else None
    url = (base_url.rstrip("/") + "/" + box_rel) if base_url else Path(box_rel).name
    atomic_write(catalog_path, json.dumps(add_to_catalog(catalog, record, url), indent=2) + "\n")
    atomic_write(folder / INDEX_NAME, json.dumps(index_json(add_to_index(records, record)), indent=2) + "\n")
    return record
