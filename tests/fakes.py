"""Fakes of devbox's adapter interfaces, for fast unit tests of our own logic.

Each fake subclasses the real interface and fails loudly (AssertionError) on any call the test did not set up,
so a test also proves which external commands a devbox command does NOT start.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from provisioner.errors import CommandFailed
from provisioner.adapters.hypervisor_probe import Answer, HypervisorProbe, Route
from provisioner.adapters.playbook_runner import HostSummary, PlaybookResult, PlaybookRunner, TaskFailure
from provisioner.adapters.ssh_probe import ProbeResult, SshProbe, SshTarget
from provisioner.adapters.vagrant_driver import MachineState, SshConfig, VagrantDriver, VagrantRun


class UnexpectedCall(AssertionError):
    pass


class FakeVagrant(VagrantDriver):
    """Machines with states; ``allow`` lists the operations the test expects (up, status, ssh_config, ...).

    up/halt/destroy change the fake machines as Vagrant would; ssh_config fails, as the real one does, for a
    machine that is not running. ``fail={"up": exc}`` makes an allowed operation raise.
    """

    def __init__(self, machines: Mapping[str, str], *, allow: Sequence[str] = (),
                 fail: Mapping[str, Exception] | None = None, base_port: int = 2200,
                 knows_created: bool = False, records_ssh: bool = False):
        self.machines = dict(machines)
        self.records_ssh = records_ssh  # like Vagrantfile.j2's after-up trigger: details of booted VMs on disk
        self.knows_created = knows_created  # answer none_created() the way Vagrant's machine folder would
        self.allow = set(allow)
        self.fail = dict(fail or {})
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.boots: dict[str, int] = {n: 0 for n in machines}  # a new address after each boot from scratch
        self.base_port = base_port
        self.snapshots: dict[str, dict[str, str]] = {n: {} for n in machines}  # VM -> snapshot -> state when taken

    def _call(self, op: str, names: Sequence[str] = ()) -> None:
        self.calls.append((op, tuple(names)))
        if op not in self.allow:
            raise UnexpectedCall(f"unexpected call vagrant.{op}({', '.join(names)}); allow it in the test")
        if op in self.fail:
            raise self.fail[op]
        unknown = [n for n in names if n not in self.machines]
        if unknown:
            raise CommandFailed(["vagrant", op, *names], 1, f"The machine with the name '{unknown[0]}' was not found")

    def _run(self, op, names) -> VagrantRun:
        return VagrantRun(("vagrant", op, *names), 0.01, f"/fake/logs/vagrant-{op}.log")

    def up(self, *, names, parallel=True):
        self._call("up", names)
        for n in names or list(self.machines):
            if self.machines[n] == "not_created":
                self.boots[n] += 1
            self.machines[n] = "running"
        return self._run("up", names)

    def recorded_ssh_config(self, *, names, since):
        if not self.records_ssh:
            return super().recorded_ssh_config(names=names, since=since)
        return {n: self.config_for(n) for n in names if self.machines[n] == "running"}

    def none_created(self, names):
        if not self.knows_created:
            return super().none_created(names)
        return bool(names) and all(self.machines[n] == "not_created" for n in names)

    def status(self):
        self._call("status")
        return {n: MachineState(n, s, "libvirt") for n, s in self.machines.items()}

    def config_for(self, name: str) -> SshConfig:
        index = list(self.machines).index(name)
        return SshConfig(name=name, host=f"192.168.121.{10 + index + 100 * self.boots[name]}", port=22,
                         user="vagrant", identity_file=f"/keys/{name}/private_key")

    def ssh_config(self, *, names=()):
        self._call("ssh_config", names)
        wanted = list(names) or list(self.machines)
        down = [n for n in wanted if self.machines[n] != "running"]
        if down:
            raise CommandFailed(["vagrant", "ssh-config", *names], 1, "not yet ready for SSH")
        return {n: self.config_for(n) for n in wanted}

    def halt(self, *, names):
        self._call("halt", names)
        for n in names or list(self.machines):
            if self.machines[n] == "running":
                self.machines[n] = "poweroff"
        return self._run("halt", names)

    def destroy(self, *, names):
        self._call("destroy", names)
        for n in names or list(self.machines):
            self.machines[n] = "not_created"
            self.snapshots[n] = {}
        return self._run("destroy", names)

    def validate(self):
        self._call("validate")

    # snapshots as vagrant-libvirt keeps them: per VM, gone with the VM; a restore gives back the state it was in
    def snapshot_save(self, *, name, snapshot):
        self._call("snapshot_save", [name])
        if self.machines[name] == "not_created":
            raise UnexpectedCall(f"snapshot of {name}, which is not created (Vagrant would skip it silently)")
        self.snapshots[name][snapshot] = self.machines[name]
        return self._run("snapshot-save", [name, snapshot])

    def snapshot_restore(self, *, name, snapshot):
        self._call("snapshot_restore", [name])
        if snapshot not in self.snapshots[name]:
            raise CommandFailed(["vagrant", "snapshot", "restore", name, snapshot], 1,
                                f"The snapshot name `{snapshot}` was not found for the virtual machine `{name}`.")
        self.machines[name] = self.snapshots[name][snapshot]
        return self._run("snapshot-restore", [name, snapshot])

    def snapshot_delete(self, *, name, snapshot):
        self._call("snapshot_delete", [name])
        if snapshot not in self.snapshots[name]:
            raise CommandFailed(["vagrant", "snapshot", "delete", name, snapshot], 1,
                                f"The snapshot name `{snapshot}` was not found for the virtual machine `{name}`.")
        del self.snapshots[name][snapshot]
        return self._run("snapshot-delete", [name, snapshot])

    def snapshot_list(self):
        self._call("snapshot_list")
        return {n: tuple(s) for n, s in self.snapshots.items() if self.machines[n] != "not_created"}


class FakePlaybookRunner(PlaybookRunner):
    """Returns the queued results in order; a run nobody queued is an error. Records every call's arguments."""

    def __init__(self, *results: PlaybookResult | Callable[..., PlaybookResult]):
        self.results = list(results)
        self.calls: list[dict] = []
        self.closed: list[tuple[str, int, str]] = []  # close_connections: the SSH destinations, in order

    def run(self, *, playbook, inventory, forks, limit=None, tags=None, check=False, extravars=None,
            on_progress=None, on_event=None, after=(), skip_tags=None, diff=False, extra_vars=(), verbosity=0):
        call = dict(playbook=playbook, inventory=inventory, forks=forks, limit=limit, tags=tags, check=check,
                    extravars=extravars, after=tuple(after), skip_tags=skip_tags, diff=diff,
                    extra_vars=tuple(extra_vars), verbosity=verbosity)
        self.calls.append(call)
        if not self.results:
            raise UnexpectedCall(f"unexpected ansible-playbook run: {call}")
        result = self.results.pop(0)
        if callable(result):
            result = result(**call)
        for h in result.hosts:
            if on_progress:
                on_progress(h.host, "app : install packages")
        return result

    def close_connections(self, *, targets):
        self.closed.extend(targets)


def playbook_ok(*hosts: str, changed: int = 1) -> PlaybookResult:
    return PlaybookResult(status="successful", rc=0,
                          hosts=tuple(HostSummary(h, ok=3, changed=changed, duration=2.0) for h in hosts),
                          failures=(), log_path="/fake/logs/ansible.log", seconds=2.0)


def playbook_failed(ok_hosts: Sequence[str], failed_host: str, task: str, message: str) -> PlaybookResult:
    hosts = [HostSummary(h, ok=3) for h in ok_hosts] + [HostSummary(failed_host, ok=1, failed=1)]
    return PlaybookResult(status="failed", rc=2, hosts=tuple(sorted(hosts, key=lambda h: h.host)),
                          failures=(TaskFailure(failed_host, task, message),), log_path="/fake/logs/ansible.log",
                          seconds=2.0)


class FakeSshProbe(SshProbe):
    """``ready``: names that answer SSH (wait_ready); ``reachable``: names that answer TCP. Unset = unexpected."""

    def __init__(self, *, ready: Sequence[str] | None = None, reachable: Sequence[str] | None = None):
        self.ready = None if ready is None else set(ready)
        self.answering = None if reachable is None else set(reachable)
        self.calls: list[tuple[str, tuple[SshTarget, ...]]] = []

    def wait_ready(self, *, targets, timeout, on_ready=None):
        self.calls.append(("wait_ready", tuple(targets)))
        if self.ready is None:
            raise UnexpectedCall(f"unexpected SSH wait for {[t.name for t in targets]}")
        results = {}
        for t in targets:
            ok = t.name in self.ready
            if ok and on_ready:
                on_ready(t.name)
            results[t.name] = ProbeResult(t.name, ok, 0.01, None if ok else
                                          f"{t.name} did not answer SSH on {t.host}:{t.port} within {timeout:.0f}s; "
                                          f"its console log: {t.console_log}")
        return results

    def reachable(self, *, targets, timeout):
        self.calls.append(("reachable", tuple(targets)))
        if self.answering is None:
            raise UnexpectedCall(f"unexpected reachability probe of {[t.name for t in targets]}")
        return {t.name: t.name in self.answering for t in targets}


class FetchedStamps:
    """The revision stamps the read playbook would fetch from an environment's hosts: a runner factory for
    ``EnvironmentRuns`` whose runner (a ``FakePlaybookRunner``) writes each host's record where the real fetch task
    puts it, and reports the ``unreachable`` hosts as Ansible does. ``settings``: what each runner was built with."""

    def __init__(self, stamps: Mapping[str, Mapping], unreachable: Sequence[str] = ()):
        self.stamps, self.unreachable, self.settings = dict(stamps), tuple(unreachable), []
        self.runner: FakePlaybookRunner | None = None

    def factory(self, settings) -> FakePlaybookRunner:
        self.settings.append(settings)
        self.runner = FakePlaybookRunner(self._run)
        return self.runner

    def _run(self, *, extravars, **_) -> PlaybookResult:
        import json
        from pathlib import Path

        fetch_dir = Path(extravars["devbox_fetch_dir"])
        for host, record in self.stamps.items():
            (fetch_dir / f"{host}.json").write_text(json.dumps(record))
        hosts = tuple(HostSummary(h, ok=1) for h in self.stamps) + tuple(
            HostSummary(h, unreachable=1) for h in self.unreachable)
        failures = tuple(TaskFailure(h, "applied revision", "ssh: connect timed out", unreachable=True)
                         for h in self.unreachable)
        return PlaybookResult("failed" if failures else "successful", 4 if failures else 0, hosts, failures,
                              "/fake/logs/ansible.log", 1.0)


def trusted_keys(hosts, known_hosts):
    """A host-key checker (``EnvironmentRuns.host_key_checker``) for which every host presented its pinned key."""
    from provisioner.environments.trust import HostKeyCheck

    return [HostKeyCheck(h, h.address, "trusted", ()) for h in hosts]


class FakeHypervisorProbe(HypervisorProbe):
    """Hypervisors that answer (URI -> Answer), this machine's routes (address -> routes) and names (host ->
    address). A URI, address or host the test did not set up is an unexpected call."""

    def __init__(self, answers: Mapping[str, Answer], routes: Mapping[str, list[Route]] | None = None,
                 names: Mapping[str, str] | None = None):
        self.answers = dict(answers)
        self.routes = dict(routes or {})
        self.names = dict(names or {})
        self.calls: list[tuple[str, str]] = []

    def libvirt_version(self, uri, *, timeout=30):
        self.calls.append(("version", uri))
        if uri not in self.answers:
            raise UnexpectedCall(f"unexpected virsh -c {uri}")
        return self.answers[uri]

    def routes_to(self, address):
        self.calls.append(("routes", address))
        if address not in self.routes:
            raise UnexpectedCall(f"unexpected route lookup for {address}")
        return self.routes[address]

    def resolve(self, host):
        self.calls.append(("resolve", host))
        if host not in self.names:
            raise UnexpectedCall(f"unexpected name lookup for {host}")
        return self.names[host]
