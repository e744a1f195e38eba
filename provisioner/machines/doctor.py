"""`devbox doctor`: is this machine ready to run the planned VMs? Each check says what to fix.

The checks that start a program run in parallel: each `vagrant` call costs about a second of Ruby start-up.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from provisioner.adapters import process
from provisioner.adapters.hypervisor_probe import HypervisorProbe, RealHypervisorProbe
from provisioner.config.hypervisors import Hypervisor, remote_parts
from provisioner.config.schema import DEFAULT_BOX
from provisioner.errors import DevboxError
from provisioner.adapters.vagrant_driver import parse_machine_readable
from provisioner.plan.placement import FIRST_HOST_OCTET, HypervisorUse
from provisioner.plan.planning import load_plan
from provisioner.plan.shares import mechanism
from provisioner.project.context import Project

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_ANSIBLE = (2, 15)
# qemu's own memory on top of the guest's (software emulation with a 128 MiB translation cache, measured)
VM_OVERHEAD_MIB = 256
DEFAULT_LIBVIRT_URI = "qemu:///system"
# Where libvirt looks for the vhost-user descriptor that names virtiofsd (qemu's interop spec; lowest priority
# first). Debian 12 ships /usr/share/qemu/vhost-user/50-qemu-virtiofsd.json -> /usr/lib/qemu/virtiofsd.
VHOST_USER_DIRS = (Path("/usr/share/qemu/vhost-user"), Path("/etc/qemu/vhost-user"))
QEMU_BINARY = "qemu-system-x86_64"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class DoctorResult:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)


def _run(argv: list[str], project: Project, timeout: float = 60) -> process.ProcessResult | None:
    try:
        return process.run(argv, cwd=project.paths.root, timeout=timeout, log_path=project.paths.logs / "doctor.log")
    except DevboxError:  # not installed, or timed out
        return None


def check_vagrant(project: Project) -> Check:
    r = _run(["vagrant", "--version"], project)
    if r is None or not r.ok:
        return Check("vagrant", FAIL, "not installed or not working", "install it: run scripts/setup (Debian: apt-get install vagrant)")
    return Check("vagrant", OK, r.stdout.strip())


def check_provider_plugin(project: Project, provider: str) -> Check:
    if provider != "libvirt":
        return Check("provider plugin", OK, f"{provider} is built into vagrant")
    r = _run(["vagrant", "plugin", "list", "--machine-readable"], project)
    if r is None or not r.ok:
        return Check("vagrant-libvirt", FAIL, "cannot list vagrant plugins", "fix vagrant first (see above)")
    names = {data for _t, kind, data in parse_machine_readable(r.stdout) if kind == "plugin-name"}
    if "vagrant-libvirt" not in names:
        return Check("vagrant-libvirt", FAIL, "plugin not installed",
                     "apt-get install vagrant-libvirt (or `vagrant plugin install vagrant-libvirt`)")
    return Check("vagrant-libvirt", OK, "installed")


def check_libvirtd(project: Project, uri: str) -> Check:
    r = _run(["virsh", "-c", uri, "version"], project, timeout=20)
    if r is None:
        return Check("libvirtd", FAIL, f"`virsh -c {uri}` did not answer", "install libvirt-clients and libvirt-daemon-system")
    if not r.ok:
        return Check("libvirtd", FAIL, f"not reachable at {uri}: {r.tail(2)}",
                     "start libvirtd (systemctl start libvirtd), and make sure you may use it (group libvirt)")
    version = re.search(r"Running hypervisor: (.+)", r.stdout)
    return Check("libvirtd", OK, f"{uri}: {version.group(1).strip() if version else 'answering'}")


def check_ansible() -> Check:
    try:
        from ansible.release import __version__
    except ImportError:
        return Check("ansible-core", FAIL, "not installed in devbox's Python", "pip install -e . (or run scripts/setup)")
    parts = tuple(int(p) for p in re.findall(r"\d+", __version__)[:2])
    where = f"{__version__} in {Path(sys.executable).parent}"
    if parts < MIN_ANSIBLE:
        return Check("ansible-core", FAIL, where, f"upgrade: pip install 'ansible-core>={'.'.join(map(str, MIN_ANSIBLE))}'")
    return Check("ansible-core", OK, where)


def available_memory_mib(meminfo: str) -> int | None:
    m = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(m.group(1)) // 1024 if m else None


def check_memory(project: Project, meminfo: str | None = None) -> Check:
    try:
        topology = load_plan(project.paths.root)
    except DevboxError:
        return Check("memory", WARN, "no plan yet, so nothing to compare with", "run `devbox init`")
    if meminfo is None:
        meminfo = Path("/proc/meminfo").read_text()
    free = available_memory_mib(meminfo)
    need = sum(m.memory + VM_OVERHEAD_MIB for m in topology.machines)
    detail = f"{len(topology.machines)} VMs need about {need} MiB; {free if free is not None else '?'} MiB available"
    if free is None:
        return Check("memory", WARN, detail)
    if free < need:
        return Check("memory", FAIL, detail, "lower `memory:` in devbox.yml, plan fewer VMs (`count:`), or free memory")
    return Check("memory", OK, detail)


def parse_box_list(text: str) -> list[tuple[str, str | None]]:
    """``vagrant box list --machine-readable`` -> [(box name, provider)]; each box-name is followed by its provider."""
    boxes: list[tuple[str, str | None]] = []
    for _target, kind, data in parse_machine_readable(text):
        if kind == "box-name":
            boxes.append((data, None))
        elif kind == "box-provider" and boxes and boxes[-1][1] is None:
            boxes[-1] = (boxes[-1][0], data)
    return boxes


def check_box(project: Project, box: str, provider: str) -> Check:
    r = _run(["vagrant", "box", "list", "--machine-readable"], project)
    if r is None or not r.ok:
        return Check("box", FAIL, "cannot list vagrant boxes", "fix vagrant first (see above)")
    if (box, provider) in parse_box_list(r.stdout):
        return Check("box", OK, f"{box} ({provider})")
    return Check("box", FAIL, f"{box} for {provider} is not installed", box_hint(box, provider))


def box_hint(box: str, provider: str) -> str:
    """How to get ``box`` for ``provider``: devbox builds only its own libvirt boxes (devbox/debianNN)."""
    built = re.fullmatch(r"devbox/debian(\d+)", box)
    if provider == "libvirt" and box == DEFAULT_BOX:
        return "build it from Debian packages (as root): `devbox box build`"
    if provider == "libvirt" and built:
        return (f"build it from Debian packages (as root): `devbox box build --release NAME`, NAME being the "
                f"release of Debian {built.group(1)} (e.g. bookworm for 12)")
    if provider == "libvirt":
        return (f"add it: `vagrant box add {box} --provider libvirt`, or use the box devbox builds itself: set "
                f"`box: {DEFAULT_BOX}` in devbox.yml and run `devbox box build` (as root)")
    if built:
        return (f"`devbox box build` makes libvirt boxes only: set `box:` in devbox.yml to a {provider} box "
                f"(e.g. your team's Debian {built.group(1)} box) and add it with "
                f"`vagrant box add NAME --provider {provider}`")
    return f"add it: `vagrant box add {box} --provider {provider}`"


def virtiofsd_binary(dirs: tuple[Path, ...] = VHOST_USER_DIRS) -> tuple[Path | None, list[Path]]:
    """The virtiofsd libvirt would start, from the vhost-user descriptors of type ``fs`` (a later folder and a
    later file name win, as in libvirt), and the descriptors read."""
    chosen: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            chosen[path.name] = path
    seen: list[Path] = []
    binary = None
    for name in sorted(chosen):
        try:
            data = json.loads(chosen[name].read_text())
        except (OSError, ValueError):
            continue
        seen.append(chosen[name])
        if isinstance(data, dict) and data.get("type") == "fs" and isinstance(data.get("binary"), str):
            binary = binary or Path(data["binary"])   # the first by priority is the one libvirt uses
    return binary, seen


def check_virtiofs(remote: bool, dirs: tuple[Path, ...] = VHOST_USER_DIRS) -> Check:
    if remote:
        return Check("shared folders (virtiofs)", WARN, "libvirt runs on another machine: virtiofsd not checked",
                     "on the hypervisor: apt-get install qemu-system-common (Debian 12) or virtiofsd (Debian 13)")
    binary, seen = virtiofsd_binary(dirs)
    hint = ("apt-get install qemu-system-common (Debian 12 ships /usr/lib/qemu/virtiofsd) or the virtiofsd package "
            "(Debian 13, Ubuntu 24.04), or use `type: 9p` in devbox.yml's shared_folders")
    if binary is None:
        where = ", ".join(str(d) for d in dirs)
        return Check("shared folders (virtiofs)", FAIL, f"no virtiofsd for libvirt: no vhost-user descriptor of "
                     f"type fs in {where}", hint)
    if not os.access(binary, os.X_OK):
        return Check("shared folders (virtiofs)", FAIL, f"{binary} (named by {seen[-1]}) is missing", hint)
    return Check("shared folders (virtiofs)", OK, f"virtiofsd {binary}")


def check_9p(project: Project, remote: bool) -> Check:
    if remote:
        return Check("shared folders (9p)", WARN, "libvirt runs on another machine: qemu's 9p support not checked")
    r = _run([QEMU_BINARY, "-device", "help"], project, timeout=30)
    if r is None or not r.ok:
        return Check("shared folders (9p)", FAIL, f"`{QEMU_BINARY} -device help` did not answer",
                     "apt-get install qemu-system-x86")
    if "virtio-9p" not in r.stdout + r.stderr:
        return Check("shared folders (9p)", FAIL, f"{QEMU_BINARY} has no virtio-9p device",
                     "install a qemu built with virtfs (Debian's qemu-system-x86), or use `type: virtiofs`")
    return Check("shared folders (9p)", OK, "qemu has virtio-9p")


def unreadable_by_others(folder: Path) -> Path | None:
    """The first folder on the way to ``folder`` (itself included) that a user other than its owner and group
    cannot enter or list: qemu runs as its own user (libvirt-qemu) and serves 9p folders with its rights."""
    folder = folder.resolve()
    for step in [*reversed(folder.parents), folder]:
        try:
            mode = step.stat().st_mode
        except OSError:
            return step
        needed = stat.S_IXOTH | (stat.S_IROTH if step == folder else 0)
        if mode & needed != needed:
            return step
    return None


def check_9p_folders(project: Project, config) -> Check | None:
    """9p folders must be readable by qemu's user (pitfall: a project under /root)."""
    blocked = []
    for folder in config.shared_folders:
        if mechanism(folder, config.provider) != "9p":
            continue
        host = Path(folder.host).expanduser()
        full = host if host.is_absolute() else project.paths.root / host
        if not full.is_dir():
            continue   # devbox init names it
        step = unreadable_by_others(full)
        if step is not None:
            blocked.append(f"{folder.host} (at {step})")
    if not blocked:
        return None
    return Check("shared folders (9p)", WARN, f"qemu runs as its own user and may not read: {', '.join(blocked)}",
                 "give others read and enter rights (chmod o+rx) on the folder and its parents, keep the project "
                 "outside /root, or use `type: virtiofs` (virtiofsd runs as root)")


def share_jobs(project: Project, config, uri: str) -> list[Callable[[], Check]]:
    """The checks for the mechanisms devbox.yml's shared folders use (none without shared folders)."""
    if config.provider != "libvirt":
        return []
    kinds = {mechanism(f, config.provider) for f in config.shared_folders}
    remote = bool(urlparse(uri).netloc)   # qemu+ssh://hv/system names a host; qemu:///system does not
    jobs: list[Callable[[], Check]] = []
    if "virtiofs" in kinds:
        jobs.append(lambda: check_virtiofs(remote))
    if "9p" in kinds:
        jobs.append(lambda: check_9p(project, remote))
        readable = None if remote else check_9p_folders(project, config)
        if readable is not None:
            jobs.append(lambda: readable)
    return jobs


def check_hypervisor(hv: Hypervisor, probe: HypervisorProbe) -> Check:
    """libvirt answers at the hypervisor's URI (over SSH with its host key pinned, for a remote one)."""
    name = f"hypervisor {hv.name}"
    remote = remote_parts(hv.uri)
    answer = probe.libvirt_version(hv.uri)
    if not answer.ok:
        hint = "start libvirtd there, and make sure the user in the URI may use it (group libvirt)"
        if remote and "host key" in answer.detail.lower():
            hint = (f"pin {remote.host}'s host key: `ssh-keyscan {remote.host} > FILE`, check it against the "
                    f"hypervisor's own (`ssh-keygen -lf` there), then use qemu+libssh://...?known_hosts=FILE in the URI")
        elif remote:
            hint = (f"check that `ssh {remote.user + '@' if remote.user else ''}{remote.host}` works with the key in the "
                    f"URI (keyfile=) and that libvirtd runs there")
        return Check(name, FAIL, f"{hv.uri}: {answer.detail}", hint)
    if remote and remote.known_hosts and "libssh" not in hv.uri.split("://")[0]:
        return Check(name, WARN, f"{hv.uri}: {answer.detail}; the URI's known_hosts is ignored by libvirt's ssh "
                     "transport (it checks ~/.ssh/known_hosts)",
                     "use qemu+libssh://... so the URI's known_hosts pins the host key")
    return Check(name, OK, f"{hv.uri}: {answer.detail}")


def check_route(hv: Hypervisor, use: HypervisorUse, probe: HypervisorProbe) -> Check:
    """This machine routes the hypervisor's subnet to that hypervisor (VMs there are reached by plain IP)."""
    name = f"route to {hv.name}"
    net = ipaddress.IPv4Network(use.subnet)
    sample = str(net.network_address + FIRST_HOST_OCTET)
    routes = probe.routes_to(sample)
    remote = remote_parts(hv.uri)
    if remote is None:   # on this machine: libvirt's bridge for the routed network brings the route with it
        if routes:
            return Check(name, OK, f"{use.subnet} is on this machine ({routes[0].device or 'local'})")
        return Check(name, WARN, f"no route to {use.subnet} yet",
                     f"`vagrant up` creates libvirt network devbox-{hv.name} on this machine, with its route")
    gateway = probe.resolve(remote.host)
    fix = f"ip route add {use.subnet} via {gateway or remote.host}"
    if not routes:
        return Check(name, FAIL, f"no route to {use.subnet} (hypervisor {hv.name}'s VMs)",
                     f"add it (as root): `{fix}`, and on each other hypervisor route this subnet to {hv.name} the same way")
    if gateway and not any(r.via == gateway for r in routes):
        shown = ", ".join(f"{r.destination} via {r.via or r.device}" for r in routes)
        return Check(name, FAIL, f"{use.subnet} is routed elsewhere ({shown}), not via {hv.name} ({gateway})",
                     f"replace the route (as root): `ip route replace {use.subnet} via {gateway}`")
    return Check(name, OK, f"{use.subnet} via {gateway or remote.host}")


def hypervisor_checks(hypervisors: tuple[Hypervisor, ...], uses: tuple[HypervisorUse, ...],
                      probe: HypervisorProbe) -> list[Check]:
    """Each hypervisor answers; the route to each one's subnet (as the plan gave it) exists."""
    checks = [check_hypervisor(hv, probe) for hv in hypervisors]
    by_name = {u.name: u for u in uses}
    for hv in hypervisors:
        use = by_name.get(hv.name)
        if use is None:
            checks.append(Check(f"route to {hv.name}", WARN, "the plan does not list this hypervisor yet",
                                "run `devbox init` to place the VMs (it gives each hypervisor its subnet)"))
        else:
            checks.append(check_route(hv, use, probe))
    return checks


def run_checks(project: Project, probe: HypervisorProbe | None = None) -> DoctorResult:
    config = project.config()
    if config.hypervisors:
        return _spread_checks(project, config, probe or RealHypervisorProbe(log_path=project.paths.logs / "doctor.log"))
    # the same precedence as virsh and vagrant-libvirt: devbox.yml, then LIBVIRT_DEFAULT_URI, then the local system
    uri = config.libvirt_uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_LIBVIRT_URI
    jobs: list[Callable[[], Check]] = [
        lambda: check_vagrant(project),
        lambda: check_provider_plugin(project, config.provider),
        lambda: check_box(project, config.box, config.provider),
        check_ansible,
        lambda: check_memory(project),
    ]
    if config.provider == "libvirt":
        jobs.insert(2, lambda: check_libvirtd(project, uri))
    jobs.extend(share_jobs(project, config, uri))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return DoctorResult(tuple(pool.map(lambda job: job(), jobs)))


def _spread_checks(project: Project, config, probe: HypervisorProbe) -> DoctorResult:
    """With `hypervisors:`: this machine's tools, then each hypervisor and the route to its subnet (this machine's
    memory is not checked: `devbox plan` checked each hypervisor's)."""
    try:
        uses = load_plan(project.paths.root).hypervisors
    except DevboxError:
        uses = ()
    jobs: list[Callable[[], Check]] = [
        lambda: check_vagrant(project),
        lambda: check_provider_plugin(project, config.provider),
        lambda: check_box(project, config.box, config.provider),
        check_ansible,
    ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        local = list(pool.map(lambda job: job(), jobs))
    return DoctorResult(tuple(local + hypervisor_checks(config.hypervisors, uses, probe)))
