"""What a published image is, the catalogs that list them, and the choice of image per VM (pure).

A published folder holds, per VM, a box file and a catalog in Vagrant's own box-catalog format (what
``vagrant box add CATALOG`` reads: ``name``, ``versions[].version``, ``versions[].providers[]`` with ``name``,
``url``, ``checksum_type`` and ``checksum``), and one devbox index, ``devbox-images.json``, with devbox's record
of every image: the commit it was converged from, the VM's definition and its digest, and the provisioning
ledger (digests only, never values).

Box URLs in a catalog are relative to the catalog unless the publisher gives a base URL, so a folder can be
copied to any static file host or shared folder as it is. Vagrant resolves a relative URL against its own
working folder, not the catalog: ``resolved_catalog`` makes them absolute before Vagrant reads one.

Layout of a published folder::

    devbox-images.json            devbox's index (every image of every VM)
    VM/catalog.json               Vagrant's catalog for VM (newest version first)
    VM/VM-VERSION.box             the box
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urljoin, urlparse

from provisioner.errors import DevboxError

INDEX_NAME = "devbox-images.json"
CATALOG_NAME = "catalog.json"
INDEX_FORMAT = 1
PROVIDER = "libvirt"
CHECKSUM_TYPE = "sha256"
# What the image's disk was made with and what the definition digest covers: the provider and box it was created
# from, the size it was converged at, the groups (so the roles) it got and the host-level variables it was given.
# Not the address, the network or the libvirt URI: Vagrant applies those at every boot, and they differ per host.
IMAGE_KEYS = ("provider", "box", "memory", "cpus")
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ImageError(DevboxError):
    """A catalog, index or image that devbox will not use: the message says what failed, the hint what next."""


# ---------------------------------------------------------------------------------------------- definition

def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def image_definition(vm_definition: Mapping, machine) -> dict:
    """What an image of ``machine`` is for. ``vm_definition`` is what snapshots compare a VM with
    (``machines.snapshot_book.definition_of(config, machine)``); ``machine`` is the plan's ``MachineSpec``.
    The host-level variables it keeps enter as a digest only: the record never carries their values."""
    out = {k: vm_definition.get(k) for k in IMAGE_KEYS}
    out["groups"] = sorted(machine.groups)
    out["host_vars"] = hashlib.sha256(_canonical(dict(machine.host_vars))).hexdigest()
    return out


def definition_digest(definition: Mapping) -> str:
    return hashlib.sha256(_canonical(dict(definition))).hexdigest()


def definition_differences(image: Mapping, wanted: Mapping) -> list[str]:
    """How an image's definition differs from what the project says the VM is now (empty: it matches)."""
    out = []
    for key in sorted(set(image) | set(wanted)):
        have, want = image.get(key), wanted.get(key)
        if have == want:
            continue
        if key == "host_vars":
            out.append("the host-level variables it keeps differ")
        elif key == "groups":
            extra, missing = sorted(set(have or ()) - set(want or ())), sorted(set(want or ()) - set(have or ()))
            bits = ([f"not in {', '.join(missing)}"] if missing else []) + ([f"also in {', '.join(extra)}"]
                                                                             if extra else [])
            out.append(f"groups: the image is {'; '.join(bits)}")
        else:
            unit = " MiB" if key == "memory" else ""
            out.append(f"{key}: the image has {have}{unit}, the project now says {want}{unit}")
    return out


# ---------------------------------------------------------------------------------------------- records

def version_for(when: datetime) -> str:
    """A box version from the export time (UTC): ``YYYYMMDD.HHMMSS``. Vagrant compares versions as
    Gem::Version does, number by number, so a later export is a newer version."""
    when = when.astimezone(timezone.utc)
    return f"{when:%Y%m%d}.{int(when.strftime('%H%M%S'))}"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def box_name(project: str, vm: str) -> str:
    """The Vagrant box name of ``vm``'s images: one name per VM, the versions are the exports."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", project).strip("-") or "project"
    return f"devbox-images/{safe}-{vm}"


@dataclass(frozen=True)
class ImageRecord:
    vm: str
    box_name: str
    version: str
    box_file: str                 # relative to the published folder, e.g. "db-1/db-1-20261201.34812.box"
    sha256: str
    size: int                     # bytes of the box file
    virtual_size_gb: int
    commit: str | None            # the playbooks' commit the VM was converged from
    dirty: bool                   # whether the playbooks' folder had uncommitted changes
    definition: Mapping[str, Any]
    definition_digest: str
    ledger: Mapping[str, Mapping[str, str]]   # unit -> input name -> sha256, the VM's provisioning ledger
    exported: str                 # ISO 8601, UTC
    base_box: Mapping[str, Any] = field(default_factory=dict)   # the box the VM was created from (name, digest)

    def to_json(self) -> dict:
        return {"vm": self.vm, "box_name": self.box_name, "version": self.version, "box_file": self.box_file,
                "sha256": self.sha256, "size": self.size, "virtual_size_gb": self.virtual_size_gb,
                "commit": self.commit, "dirty": self.dirty, "definition": dict(self.definition),
                "definition_digest": self.definition_digest,
                "ledger": {k: dict(v) for k, v in sorted(self.ledger.items())},
                "exported": self.exported, "base_box": dict(self.base_box)}

    @classmethod
    def from_json(cls, data: Mapping) -> "ImageRecord":
        record = cls(vm=str(data["vm"]), box_name=str(data["box_name"]), version=str(data["version"]),
                     box_file=str(data["box_file"]), sha256=str(data["sha256"]).lower(), size=int(data["size"]),
                     virtual_size_gb=int(data["virtual_size_gb"]), commit=data.get("commit"),
                     dirty=bool(data.get("dirty", False)), definition=dict(data["definition"]),
                     definition_digest=str(data["definition_digest"]),
                     ledger={str(k): {str(i): str(d) for i, d in v.items()}
                             for k, v in (data.get("ledger") or {}).items()},
                     exported=str(data["exported"]), base_box=dict(data.get("base_box") or {}))
        if not _VM_NAME.match(record.vm):
            raise ValueError(f"VM name {record.vm!r}")
        if not _VERSION.match(record.version):
            raise ValueError(f"version {record.version!r} (digits and dots)")
        if not re.fullmatch(r"[0-9a-f]{64}", record.sha256):
            raise ValueError(f"sha256 {record.sha256!r}")
        if Path(record.box_file).is_absolute() or ".." in Path(record.box_file).parts:
            raise ValueError(f"box_file {record.box_file!r} (must stay inside the published folder)")
        if definition_digest(record.definition) != record.definition_digest:
            raise ValueError(f"definition_digest of {record.vm} {record.version} does not match its definition")
        return record


def record_paths(vm: str, version: str) -> tuple[str, str]:
    """(box file, catalog) of an image, relative to the published folder."""
    return f"{vm}/{vm}-{version}.box", f"{vm}/{CATALOG_NAME}"


# ---------------------------------------------------------------------------------------------- the index

def index_json(records: Sequence[ImageRecord]) -> dict:
    ordered = sorted(records, key=lambda r: (r.vm, version_key(r.version)))
    return {"format": INDEX_FORMAT, "images": [r.to_json() for r in ordered]}


def parse_index(text: str, where: str) -> list[ImageRecord]:
    hint = f"publish the images again, or point devbox at the folder that holds {INDEX_NAME}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImageError(f"{where}: not JSON ({exc})", hint) from None
    if not isinstance(data, Mapping) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("images"), list):
        raise ImageError(f"{where}: not a devbox image index of format {INDEX_FORMAT}", hint)
    records = []
    for n, raw in enumerate(data["images"], 1):
        try:
            records.append(ImageRecord.from_json(raw))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ImageError(f"{where}: image {n} is malformed ({exc})", hint) from None
    return records


def add_to_index(records: Sequence[ImageRecord], new: ImageRecord) -> list[ImageRecord]:
    if any(r.vm == new.vm and r.version == new.version for r in records):
        raise ImageError(f"an image of {new.vm} version {new.version} is already published",
                         "export again (the version is the export time) or publish to another folder")
    return [*records, new]


# ---------------------------------------------------------------------------------------------- Vagrant's catalog

def catalog_entry(record: ImageRecord, url: str) -> dict:
    return {"version": record.version, "providers": [{"name": PROVIDER, "url": url,
                                                      "checksum_type": CHECKSUM_TYPE, "checksum": record.sha256}]}


def add_to_catalog(catalog: Mapping | None, record: ImageRecord, url: str) -> dict:
    """``catalog`` (Vagrant's format) with ``record``'s version added, newest version first."""
    versions = [v for v in (catalog or {}).get("versions", []) if v.get("version") != record.version]
    versions.append(catalog_entry(record, url))
    versions.sort(key=lambda v: version_key(str(v["version"])), reverse=True)
    return {"name": record.box_name,
            "description": f"{record.vm} as devbox converged it (newest version first)",
            "versions": versions}


def parse_catalog(text: str, where: str) -> dict:
    hint = "publish the images again; a catalog is written by devbox, not by hand"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImageError(f"{where}: not JSON ({exc})", hint) from None
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str) \
            or not isinstance(data.get("versions"), list):
        raise ImageError(f"{where}: not a Vagrant box catalog (name and versions)", hint)
    for v in data["versions"]:
        if not isinstance(v, Mapping) or not _VERSION.match(str(v.get("version", ""))) \
                or not isinstance(v.get("providers"), list):
            raise ImageError(f"{where}: a version entry is malformed: {json.dumps(v)[:200]}", hint)
    return dict(data)


def catalog_provider(catalog: Mapping, version: str, where: str) -> Mapping:
    for v in catalog.get("versions", []):
        if v.get("version") == version:
            for p in v.get("providers", []):
                if p.get("name") == PROVIDER:
                    return p
    raise ImageError(f"{where}: no {PROVIDER} box of version {version} in the catalog of {catalog.get('name')}",
                     "publish the images again (the index and the catalog disagree)")


def location_url(path_or_url: str | Path) -> str:
    """A folder or file given as a path or a URL, as an absolute URL (``file://`` for a path)."""
    text = str(path_or_url)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return text
    return Path(text).resolve().as_uri()


def resolve_url(base: str, url: str) -> str:
    """``url`` as written in a catalog, made absolute against the catalog's own URL ``base``."""
    if urlparse(url).scheme:
        return url
    return urljoin(base, url)


def resolved_catalog(catalog: Mapping, base: str) -> dict:
    """The catalog with every provider URL absolute (Vagrant would resolve a relative one against its working
    folder)."""
    out = json.loads(json.dumps(catalog))
    for v in out["versions"]:
        for p in v.get("providers", []):
            if "url" in p:
                p["url"] = resolve_url(base, p["url"])
    return out


# ---------------------------------------------------------------------------------------------- the choice

@dataclass(frozen=True)
class Choice:
    vm: str
    record: ImageRecord | None
    reason: str                  # why this image, or why none (said to the user: the VM then starts from the box)


def choose(records: Sequence[ImageRecord], wanted: Mapping[str, Mapping]) -> dict[str, Choice]:
    """For each VM of ``wanted`` (VM -> its image definition now), the newest image whose definition digest
    matches; when none does, why not (how the newest image of that VM differs)."""
    out = {}
    for vm, definition in wanted.items():
        digest = definition_digest(definition)
        mine = sorted((r for r in records if r.vm == vm), key=lambda r: version_key(r.version), reverse=True)
        match = next((r for r in mine if r.definition_digest == digest), None)
        if match:
            commit = f" (commit {match.commit[:12]}{', uncommitted changes' if match.dirty else ''})" \
                if match.commit else ""
            out[vm] = Choice(vm, match, f"image {match.version}{commit}")
        elif not mine:
            out[vm] = Choice(vm, None, "no image of this VM was published")
        else:
            diff = definition_differences(mine[0].definition, definition)
            out[vm] = Choice(vm, None, f"no image matches its definition; the newest ({mine[0].version}) differs: "
                                       + "; ".join(diff))
    return out
