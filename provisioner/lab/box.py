"""`devbox box build`: a libvirt base box made from Debian packages alone, no box registry needed.

Steps: mmdebstrap a minimal root file system (systemd, kernel, sshd, sudo, python3), add the vagrant user and
first-boot fixes, pack it into an ext4 image without mounting anything (`mkfs.ext4 -d`), compress it to
qcow2, and tar it with its kernel, initramfs and a box-level Vagrantfile that boots that kernel directly.

The box file is named by a digest of everything that goes into it, so a second build with the same inputs
is a cache hit. The package mirror is never hard-coded: it comes from the machine's apt sources (or
``--mirror``), and the guest's own apt sources point at that same mirror.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlparse

from provisioner import DATA_DIR as PACKAGE_DATA
from provisioner.adapters import process
from provisioner.errors import DevboxError

DATA_DIR = PACKAGE_DATA / "box"
DEFAULT_CACHE_DIR = Path(os.environ.get("DEVBOX_CACHE_DIR", "/var/cache/devbox"))
DEFAULT_RELEASE = "bookworm"
RELEASE_VERSIONS = {"bullseye": "11", "bookworm": "12", "trixie": "13"}
DISK_SIZE_GB = 4
# Bump when a change to the build steps in this module changes the image (the data files and the package
# list are part of the digest already), so cached boxes built the old way are rebuilt.
BUILD_FORMAT = 1

# What every devbox VM needs before Ansible's first task: an init system and udev, a kernel, sshd, sudo, a
# DHCP client (systemd-networkd), and Python for Ansible. python3-apt because Ansible's apt module needs it
# (otherwise every VM installs it on first run); ca-certificates for https sources the playbooks may add;
# zstd so the initramfs can be zstd-compressed.
BOX_PACKAGES = (
    "systemd-sysv", "udev", "dbus", "linux-image-amd64", "initramfs-tools", "zstd", "openssh-server", "sudo",
    "python3", "python3-apt", "iproute2", "netbase", "ca-certificates",
)

Progress = Callable[[str, str], None]


class BoxBuildError(DevboxError):
    """One step of the box build failed; the message names the step and the log."""


# ---------------------------------------------------------------------------------------------------------
# apt sources: where the machine gets its Debian packages (pure parsing, tested on canned files)

@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]

    @property
    def host(self) -> str:
        return urlparse(self.uri).hostname or ""


def parse_one_line_sources(text: str) -> list[AptSource]:
    """``deb [options] URI SUITE COMPONENT...`` lines (sources.list and *.list)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind = words[0]
        if kind not in ("deb", "deb-src"):
            continue
        rest = words[1:]
        if rest and rest[0].startswith("["):  # [arch=amd64 signed-by=...] may span several words
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) < 2:
            continue
        out.append(AptSource((kind,), rest[0].rstrip("/"), (rest[1],), tuple(rest[2:])))
    return out


def parse_deb822_sources(text: str) -> list[AptSource]:
    """deb822 stanzas (*.sources): ``Types``, ``URIs``, ``Suites``, ``Components``; ``Enabled: no`` skipped."""
    out = []
    for stanza in _deb822_stanzas(text):
        if stanza.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        types = tuple(stanza.get("types", "").split())
        for uri in stanza.get("uris", "").split():
            out.append(AptSource(types, uri.rstrip("/"), tuple(stanza.get("suites", "").split()),
                                 tuple(stanza.get("components", "").split())))
    return out


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    stanza: dict[str, str] = {}
    key = None
    for raw in text.splitlines() + [""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
            continue
        if raw[0] in " \t" and key:  # continuation line (e.g. an inline Signed-By key)
            stanza[key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            stanza[key] = value.strip()


def read_apt_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every source apt itself would read: sources.list, sources.list.d/*.list and *.sources (nothing else:
    apt ignores files with other endings, e.g. ``*.disabled``)."""
    etc = root / "etc" / "apt"
    sources: list[AptSource] = []
    main = etc / "sources.list"
    if main.is_file():
        sources += parse_one_line_sources(main.read_text(errors="replace"))
    for path in sorted((etc / "sources.list.d").glob("*")):
        if path.suffix == ".list":
            sources += parse_one_line_sources(path.read_text(errors="replace"))
        elif path.suffix == ".sources":
            sources += parse_deb822_sources(path.read_text(errors="replace"))
    return sources


def release_sources(sources: list[AptSource], release: str) -> list[AptSource]:
    """The binary Debian sources for ``release`` and its -updates/-security suites, in the machine's order."""
    wanted = {release, f"{release}-updates", f"{release}-security"}
    out = []
    for src in sources:
        if "deb" not in src.types:
            continue
        suites = tuple(s for s in src.suites if s in wanted)
        if suites:
            out.append(AptSource(("deb",), src.uri, suites, src.components or ("main",)))
    return out


def guest_sources(sources: list[AptSource], release: str, mirror: str | None = None) -> list[AptSource]:
    """The apt sources the box is built from and that the guest keeps: ``mirror`` if given, else the machine's
    own Debian sources for the release."""
    if mirror:
        mirror = mirror.rstrip("/")
        return [AptSource(("deb",), mirror, (release, f"{release}-updates"), ("main",))]
    found = release_sources(sources, release)
    if not any(release in s.suites for s in found):
        raise DevboxError(
            f"no Debian package source for '{release}' in this machine's apt sources "
            "(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list, *.sources)",
            f"pass the mirror explicitly: devbox box build --release {release} --mirror URL")
    return found


def mirror_hosts(sources: list[AptSource]) -> list[str]:
    """Host names of the given sources, de-duplicated, in order (the lab's proxy allows only these)."""
    hosts: list[str] = []
    for s in sources:
        if s.host and s.host not in hosts:
            hosts.append(s.host)
    return hosts


def one_line_entries(sources: list[AptSource]) -> list[str]:
    """``deb URI SUITE COMPONENTS`` lines, one per suite (what mmdebstrap takes and the guest keeps)."""
    return [f"deb {s.uri} {suite} {' '.join(s.components)}" for s in sources for suite in s.suites]


# ---------------------------------------------------------------------------------------------------------
# the build

@dataclass(frozen=True)
class BoxSpec:
    release: str
    sources: tuple[AptSource, ...]
    packages: tuple[str, ...] = BOX_PACKAGES
    disk_size_gb: int = DISK_SIZE_GB

    @property
    def name(self) -> str:
        return f"devbox/debian{RELEASE_VERSIONS.get(self.release, self.release)}"

    def digest(self, insecure_key: str) -> str:
        """Everything that changes the box: release, sources, packages, size, our data files, the key."""
        h = hashlib.sha256()
        h.update(json.dumps({
            "format": BUILD_FORMAT, "release": self.release, "sources": one_line_entries(list(self.sources)),
            "packages": list(self.packages), "disk": self.disk_size_gb, "key": insecure_key,
        }, sort_keys=True).encode())
        for path in sorted(DATA_DIR.iterdir()):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class BoxBuildResult:
    name: str
    path: Path
    digest: str
    cached: bool
    added: bool
    seconds: float
    size_bytes: int
    log_path: Path | None = None


def find_insecure_key() -> Path:
    """Vagrant's well-known insecure public key, as shipped by the vagrant package itself."""
    patterns = ["/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
                "/usr/share/vagrant/gems/gems/vagrant-*/keys/vagrant.pub",
                "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub"]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    raise DevboxError("Vagrant's insecure public key (keys/vagrant.pub in the vagrant package) was not found",
                      "install vagrant (scripts/setup does) and run the command again")


def box_vagrantfile() -> str:
    return (DATA_DIR / "Vagrantfile").read_text()


def metadata(disk_size_gb: int) -> dict:
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": disk_size_gb}


def mmdebstrap_argv(spec: BoxSpec, rootdir: Path, overlay: Path) -> list[str]:
    """The mmdebstrap command line: minbase plus our packages, the overlay copied in and setup.sh run last."""
    initramfs_conf = ('mkdir -p "$1/etc/initramfs-tools/conf.d" && '
                      'printf "MODULES=list\\nCOMPRESS=zstd\\n" > "$1/etc/initramfs-tools/conf.d/devbox.conf"')
    return ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
            "--include=" + ",".join(spec.packages),
            # before the kernel is installed: its first initramfs is then already the small one
            "--essential-hook=" + initramfs_conf,
            f"--customize-hook=sync-in {overlay} /",
            '--customize-hook=chroot "$1" /bin/sh /root/devbox-setup.sh',
            spec.release, str(rootdir), *one_line_entries(list(spec.sources))]


class BoxBuilder:
    """Builds (or finds in the cache) the box for a spec, and adds it to Vagrant when Vagrant lacks it."""

    def __init__(self, spec: BoxSpec, *, cache_dir: Path = DEFAULT_CACHE_DIR, progress: Progress | None = None,
                 vagrant_env: dict[str, str] | None = None):
        self.spec = spec
        self.cache_dir = Path(cache_dir)
        self.progress = progress or (lambda subject, message: None)
        self.vagrant_env = {"VAGRANT_CHECKPOINT_DISABLE": "1", **(vagrant_env or {})}

    def box_path(self, digest: str) -> Path:
        return self.cache_dir / "boxes" / f"{self.spec.name.replace('/', '-')}-{digest}.box"

    def build(self, *, output: Path | None = None, add: bool = True, force: bool = False) -> BoxBuildResult:
        started = time.monotonic()
        key_path = find_insecure_key()
        digest = self.spec.digest(key_path.read_text())
        box = self.box_path(digest)
        log_path = self.cache_dir / "logs" / f"box-build-{digest}.log"
        # one build or `vagrant box add` at a time on this machine (several labs may start together)
        with self._lock():
            cached = box.is_file() and not force
            if cached:
                self.progress("box", f"cached: {box}")
            else:
                self._build(box, key_path, log_path, digest)
            if output:
                output = Path(output)
                output.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(box, output)
            added = self._add_to_vagrant(box, digest, log_path) if add else False
        return BoxBuildResult(self.spec.name, output or box, digest, cached, added,
                              time.monotonic() - started, box.stat().st_size, None if cached else log_path)

    # -- steps ------------------------------------------------------------------------------------------

    def _lock(self):
        lock_path = self.cache_dir / "box.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        builder = self

        class _Lock:
            def __enter__(self):
                self.fh = open(lock_path, "w")
                try:
                    fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    builder.progress("box", f"waiting for another box build ({lock_path})")
                    fcntl.flock(self.fh, fcntl.LOCK_EX)

            def __exit__(self, *exc):
                self.fh.close()  # closing releases the lock

        return _Lock()

    @staticmethod
    def _remove_work_dir(work: Path) -> None:
        """A build killed inside mmdebstrap can leave /proc or /sys mounted in its root: unmount, then delete."""
        prefix = str(work) + "/"
        try:
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        except OSError:
            mounts = []
        for mountpoint in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            process.run(["umount", "-l", mountpoint])
        shutil.rmtree(work, ignore_errors=True)

    def _step(self, what: str, argv: list[str], log_path: Path, **kwargs) -> process.ProcessResult:
        self.progress("box", what)
        result = process.run(argv, log_path=log_path, **kwargs)
        if not result.ok:
            raise BoxBuildError(
                f"box build failed at step '{what}': `{' '.join(argv[:3])} ...` exited with {result.returncode}\n"
                + "\n".join("  " + line for line in result.tail().splitlines())
                + f"\nfull log: {log_path}",
                "fix the cause shown above and run `devbox box build` again (finished steps are not cached)")
        return result

    def _build(self, box: Path, key_path: Path, log_path: Path, digest: str) -> None:
        for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
            if not shutil.which(tool):
                raise DevboxError(f"`{tool}` is not installed", "run scripts/setup (it installs what the box build needs)")
        if os.geteuid() != 0:
            raise DevboxError("building the box needs root (mmdebstrap creates device nodes and file ownership)",
                              "run `sudo devbox box build`")
        work = self.cache_dir / "build" / digest
        self._remove_work_dir(work)
        (work / "overlay").mkdir(parents=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        try:
            self._write_overlay(work / "overlay", key_path)
            rootdir = work / "root"
            self._step(f"installing Debian {self.spec.release} with mmdebstrap (about a minute)",
                       mmdebstrap_argv(self.spec, rootdir, work / "overlay"), log_path, timeout=1800)
            pack = work / "box"
            pack.mkdir()
            kernel = self._single(rootdir / "boot", "vmlinuz-*")
            initrd = self._single(rootdir / "boot", "initrd.img-*")
            shutil.copyfile(kernel, pack / "vmlinuz")
            shutil.copyfile(initrd, pack / "initrd.img")
            raw = work / "root.ext4"
            self._step("making the ext4 image", ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootdir),
                                                 str(raw), f"{self.spec.disk_size_gb}G"], log_path, timeout=900)
            self._step("compressing to qcow2", ["qemu-img", "convert", "-c", "-O", "qcow2",
                                                "-o", "compression_type=zstd", str(raw), str(pack / "box.img")],
                       log_path, timeout=900)
            raw.unlink()
            (pack / "metadata.json").write_text(json.dumps(metadata(self.spec.disk_size_gb)) + "\n")
            (pack / "Vagrantfile").write_text(box_vagrantfile())
            (pack / "devbox-box.json").write_text(json.dumps({"name": self.spec.name, "digest": digest,
                                                              "release": self.spec.release}) + "\n")
            self.progress("box", "packing the box file")
            box.parent.mkdir(parents=True, exist_ok=True)
            tmp = box.with_name(f".{box.name}.tmp")
            with tarfile.open(tmp, "w") as tar:  # qcow2 is already compressed: a plain tar
                for name in ("metadata.json", "Vagrantfile", "devbox-box.json", "vmlinuz", "initrd.img", "box.img"):
                    tar.add(pack / name, arcname=name)
            os.replace(tmp, box)
            self._prune_older(box)
        finally:
            self._remove_work_dir(work)

    def _prune_older(self, keep: Path) -> None:
        """Box files of this name built from older inputs: 250 MB each, and nothing uses them any more
        (Vagrant keeps its own copy of the box it was given)."""
        for old in keep.parent.glob(f"{self.spec.name.replace('/', '-')}-*.box"):
            if old != keep:
                old.unlink(missing_ok=True)

    def _write_overlay(self, overlay: Path, key_path: Path) -> None:
        files = {
            "etc/systemd/network/99-dhcp.network": (DATA_DIR / "99-dhcp.network").read_text(),
            "etc/systemd/system/ssh-host-keys.service": (DATA_DIR / "ssh-host-keys.service").read_text(),
            "root/devbox-setup.sh": (DATA_DIR / "setup.sh").read_text(),
            "root/devbox-vagrant.pub": key_path.read_text(),
        }
        for rel, text in files.items():
            path = overlay / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    @staticmethod
    def _single(folder: Path, pattern: str) -> Path:
        found = sorted(folder.glob(pattern))
        if not found:
            raise BoxBuildError(f"box build: no {pattern} in {folder} after installing the packages",
                                "check the mmdebstrap log for a failed kernel or initramfs install")
        return found[-1]

    def _add_to_vagrant(self, box: Path, digest: str, log_path: Path) -> bool:
        """`vagrant box add` only when Vagrant's copy is missing or was made from other inputs."""
        home = Path(self.vagrant_env.get("VAGRANT_HOME") or os.environ.get("VAGRANT_HOME")
                    or Path.home() / ".vagrant.d")
        marker = home / "boxes" / self.spec.name.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt" / "devbox-box.json"
        try:
            if json.loads(marker.read_text()).get("digest") == digest:
                return False
        except (OSError, ValueError):
            pass
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.progress("box", f"adding {self.spec.name} to Vagrant ({home})")
        result = process.run(["vagrant", "box", "add", "--name", self.spec.name, "--force", str(box)],
                             env=self.vagrant_env, log_path=log_path, timeout=600)
        result.check(what=f"adding the box {self.spec.name} to Vagrant",
                     hint="run the command again with -v; check free space under VAGRANT_HOME")
        return True


def spec_for(release: str = DEFAULT_RELEASE, mirror: str | None = None, *, root: Path = Path("/")) -> BoxSpec:
    return BoxSpec(release=release, sources=tuple(guest_sources(read_apt_sources(root), release, mirror)))
