"""The lab's own logic without root: generated files (squid, emulator wrapper, VAGRANT_HOME Vagrantfile), the
environment for commands in the lab, and the teardown order, with a fake system that records every call."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from provisioner.lab import namespace as lab
from provisioner.adapters.process import ProcessResult


class FakeSystem(lab.SystemRunner):
    """Records calls in order; answers virsh listings from ``libvirt``; processes die when signalled."""

    def __init__(self, processes: dict[int, str], namespace: bool = True, libvirt: dict | None = None,
                 namespace_pids: tuple[int, ...] = ()):
        self.processes = dict(processes)  # pid -> cmdline of live processes
        self.namespace = namespace
        self.libvirt = libvirt or {}
        self.namespace_pids = list(namespace_pids)
        self.calls: list[str] = []

    def run(self, argv, *, timeout=None, log_path=None):
        if "virsh" in argv:
            argv = argv[argv.index("virsh"):]
            args = [a for a in argv[1:] if a not in ("-q", "-c", lab.LIBVIRT_URI)]
            self.calls.append("virsh " + " ".join(args))
            out = {("list", "--all", "--name"): "\n".join(self.libvirt.get("domains", [])),
                   ("net-list", "--all", "--name"): "\n".join(self.libvirt.get("networks", [])),
                   ("pool-list", "--all", "--name"): "\n".join(self.libvirt.get("pools", []))}.get(tuple(args), "")
            if args[:1] == ["vol-list"]:
                out = "\n".join(f" {v}  /var/lib/libvirt/images/{v}" for v in self.libvirt.get("volumes", []))
            return ProcessResult(tuple(argv), 0, out + "\n", "")
        self.calls.append(" ".join(argv))
        if argv[:3] == ["ip", "netns", "pids"]:
            alive = [p for p in self.namespace_pids if p in self.processes]
            return ProcessResult(tuple(argv), 0, "".join(f"{p}\n" for p in alive), "")
        if argv[:3] == ["ip", "netns", "delete"]:
            self.namespace = False
        return ProcessResult(tuple(argv), 0, "", "")

    def spawn(self, argv, *, log_path):
        raise AssertionError(f"teardown must not start anything: {argv}")

    def signal(self, pid, sig):
        self.calls.append(f"signal {pid} {signal.Signals(sig).name}")
        return self.processes.pop(pid, None) is not None

    def alive(self, pid):
        return pid in self.processes

    def cmdline(self, pid):
        return self.processes.get(pid, "")

    def namespace_exists(self, name):
        return self.namespace


def make_lab(tmp_path, system) -> lab.Lab:
    paths = lab.LabPaths("t-lab", state_root=tmp_path / "state", cache_root=tmp_path / "cache")
    return lab.Lab("t-lab", system=system, paths=paths, mirror_hosts=["mirror.example.org"])


def write_state(the_lab: lab.Lab, **pids) -> None:
    state = lab.LabState("t-lab", holder_pid=pids.pop("holder", None), pids=pids)
    the_lab.paths.dir.mkdir(parents=True, exist_ok=True)
    the_lab.paths.state_file.write_text(state.to_json())


RUNNING = {10: "sleep infinity", 11: "virtlogd -d -p x", 12: "libvirtd -d -p x", 13: "squid -N -f x",
           14: "socat UNIX-LISTEN:x", 15: "nsenter ... socat TCP-LISTEN:3142", 20: "qemu-system-x86_64 -name a",
           21: "dnsmasq --conf-file=x"}


def test_teardown_removes_definitions_then_daemons_then_leftovers_then_the_namespace(tmp_path):
    system = FakeSystem(RUNNING, libvirt={"domains": ["p_a", "p_b"], "networks": ["vagrant-libvirt"],
                                          "pools": ["default"], "volumes": ["p_a.img", "box.img"]},
                        namespace_pids=(10, 20, 21))
    the_lab = make_lab(tmp_path, system)
    write_state(the_lab, holder=10, virtlogd=11, libvirtd=12, squid=13, **{"relay-host": 14, "relay-lab": 15})
    (the_lab.paths.private / "lib").mkdir(parents=True)

    the_lab.down()

    assert system.calls == [
        "virsh list --all --name",
        "virsh destroy p_a", "virsh undefine p_a --nvram",
        "virsh destroy p_b", "virsh undefine p_b --nvram",
        "virsh net-list --all --name", "virsh net-destroy vagrant-libvirt", "virsh net-undefine vagrant-libvirt",
        "virsh pool-list --all --name", "virsh vol-list default",
        "virsh vol-delete p_a.img --pool default", "virsh vol-delete box.img --pool default",
        "virsh pool-destroy default", "virsh pool-undefine default",
        "signal 12 SIGTERM", "signal 11 SIGTERM",  # libvirtd before virtlogd (it logs through it)
        "signal 15 SIGTERM", "signal 14 SIGTERM", "signal 13 SIGTERM",
        # qemu and dnsmasq outlive libvirtd; the holder keeps the mount namespace: all of them go last
        "ip netns pids t-lab", "signal 10 SIGTERM", "signal 20 SIGTERM", "signal 21 SIGTERM",
        "ip netns pids t-lab",
        "ip netns delete t-lab",
    ]
    assert not the_lab.paths.state_file.exists()
    assert not the_lab.paths.private.exists()
    assert system.processes == {}


def test_teardown_never_signals_a_recorded_pid_that_now_belongs_to_another_program(tmp_path):
    # after a reboot or a long pause, PIDs from lab.json may belong to unrelated processes
    system = FakeSystem({11: "bash", 12: "postgres", 13: "vim"}, namespace=False)
    the_lab = make_lab(tmp_path, system)
    write_state(the_lab, holder=99, virtlogd=11, libvirtd=12, squid=13)

    the_lab.down()

    assert not any(c.startswith("signal") for c in system.calls), system.calls
    assert not any(c.startswith("virsh") for c in system.calls)
    assert set(system.processes) == {11, 12, 13}


def test_teardown_of_a_lab_that_never_started_is_harmless(tmp_path):
    system = FakeSystem({}, namespace=False)
    make_lab(tmp_path, system).down()
    assert system.calls == []


def test_a_stale_namespace_without_state_is_still_cleared(tmp_path):
    # the run was killed before lab.json was written: processes in the namespace are still found and stopped
    system = FakeSystem({20: "qemu-system-x86_64"}, namespace=True, namespace_pids=(20,))
    make_lab(tmp_path, system).down()
    assert system.calls == ["ip netns pids t-lab", "signal 20 SIGTERM", "ip netns pids t-lab",
                            "ip netns delete t-lab"]


def test_squid_config_allows_only_the_mirror_hosts_and_keeps_packages():
    conf = lab.squid_config(port=3999, allowed_hosts=["mirror.example.org", "security.example.org"],
                            cache_dir=Path("/c"), run_dir=Path("/r"))
    lines = conf.splitlines()
    assert "http_port 127.0.0.1:3999" in lines
    assert "acl mirrors dstdomain mirror.example.org security.example.org" in lines
    access = [l for l in lines if l.startswith("http_access")]
    assert access[-2:] == ["http_access allow mirrors", "http_access deny all"]
    assert "http_access deny CONNECT" in access
    assert any(l.startswith("refresh_pattern -i \\.(deb|udeb)$ 129600") for l in lines)
    assert "cache_dir ufs /c 8192 16 256" in lines


def test_squid_config_without_mirror_hosts_is_refused():
    with pytest.raises(lab.LabError):
        lab.squid_config(port=1, allowed_hosts=[], cache_dir=Path("/c"), run_dir=Path("/r"))


def test_squid_accepts_the_generated_config(tmp_path):
    squid = Path("/usr/sbin/squid")
    if not squid.exists():
        pytest.fail("squid is not installed: run scripts/setup")
    conf = tmp_path / "squid.conf"
    conf.write_text(lab.squid_config(port=3999, allowed_hosts=["mirror.example.org"], cache_dir=tmp_path / "c",
                                     run_dir=tmp_path))
    result = subprocess.run([str(squid), "-k", "parse", "-f", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "FATAL" not in result.stderr and "ERROR" not in result.stderr, result.stderr


def test_emulator_wrapper_shrinks_the_translation_cache_and_passes_everything_else(tmp_path):
    fake_qemu = tmp_path / "qemu"
    fake_qemu.write_text("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n")
    fake_qemu.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(lab.emulator_wrapper_script(str(fake_qemu)))
    wrapper.chmod(0o755)
    out = subprocess.run([str(wrapper), "-name", "guest=a b", "-accel", "tcg", "-m", "512", "tcg"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["-name", "guest=a b", "-accel", "tcg,tb-size=128", "-m", "512", "tcg"]


def test_vagrant_home_vagrantfile_holds_the_host_specific_provider_settings():
    text = lab.vagrant_home_vagrantfile(Path("/x/wrapper"))
    for setting in ('config.vm.boot_timeout = 900', 'libvirt.driver = "qemu"', 'libvirt.emulator_path = "/x/wrapper"',
                    'libvirt.graphics_type = "none"', 'libvirt.video_type = "none"'):
        assert setting in text


def test_lab_env_puts_the_venv_first_and_points_at_the_lab(tmp_path):
    paths = lab.LabPaths("t-lab", state_root=tmp_path)
    env = lab.lab_env(paths, venv_bin=Path("/venv/bin"), base_path="/usr/bin:/bin")
    assert env["PATH"] == "/venv/bin:/usr/bin:/bin"
    assert env["DEVBOX_LAB"] == "t-lab"
    assert env["DEVBOX_APT_PROXY"] == f"http://{lab.GATEWAY}:{lab.PROXY_PORT_IN_LAB}"
    assert env["LIBVIRT_DEFAULT_URI"] == "qemu:///system"
    assert not env["VAGRANT_HOME"].startswith("/root")
    assert env["DEVBOX_SSH_CONTROL_DIR"] == str(tmp_path / "labs" / "t-lab" / "ssh")  # never shared between labs


def test_lab_env_names_the_access_log_the_proxy_writes(tmp_path):
    paths = lab.LabPaths("t-lab", state_root=tmp_path)
    env = lab.lab_env(paths, venv_bin=Path("/venv/bin"), base_path="/usr/bin:/bin")
    conf = lab.squid_config(port=3999, allowed_hosts=["mirror.example.org"], cache_dir=paths.squid_cache,
                            run_dir=paths.dir)   # run_dir as Lab._start_proxy passes it
    access_log = next(l.split(None, 1)[1] for l in conf.splitlines() if l.startswith("access_log "))
    assert env["DEVBOX_LAB_PROXY_LOG"] == access_log == str(paths.logs / "squid-access.log")


def test_commands_enter_both_namespaces_of_the_holder_with_the_lab_env(tmp_path):
    system = FakeSystem({10: "sleep infinity"})
    the_lab = make_lab(tmp_path, system)
    write_state(the_lab, holder=10)
    argv = the_lab.command_argv(["pytest", "-m", "lab"], cwd="/src")
    assert argv[:6] == ["nsenter", "--target=10", "--net", "--mount", "--wd=/src", "--"]
    assert argv[6] == "env" and "DEVBOX_LAB=t-lab" in argv
    assert argv[-3:] == ["pytest", "-m", "lab"]


def test_commands_for_a_lab_that_is_not_up_fail_with_the_next_step(tmp_path):
    the_lab = make_lab(tmp_path, FakeSystem({}, namespace=False))
    with pytest.raises(lab.LabError) as err:
        the_lab.command_argv(["true"])
    assert "devbox lab up" in err.value.hint


class HolderStartingUp(FakeSystem):
    """The holder's PID shows the command lines it passes through before it sleeps in its own mount namespace."""

    STAGES = ["ip netns exec t-lab unshare --mount -- /bin/sh -c mkdir -p /run/libvirt && mount --bind a b && "
              "exec sleep infinity",
              "/bin/sh -c mkdir -p /run/libvirt && mount --bind a b && exec sleep infinity",
              "sleep infinity"]

    def __init__(self):
        super().__init__({})
        self.looks: list[str] = []

    def spawn(self, argv, *, log_path):
        self.processes[10] = self.STAGES[0]
        return 10

    def cmdline(self, pid):
        line = self.STAGES[min(len(self.looks), len(self.STAGES) - 1)]
        self.looks.append(line)
        return line


def test_the_holder_counts_as_ready_only_once_it_is_sleep_itself(tmp_path, monkeypatch):
    # "sleep" appears in the earlier command lines too; entering the PID then joins the wrong mount namespace
    # (seen: virtlogd outside the private /run/libvirt, so libvirtd could not start any domain)
    monkeypatch.setattr(lab.time, "sleep", lambda s: None)
    system = HolderStartingUp()
    the_lab = make_lab(tmp_path, system)
    the_lab.paths.logs.mkdir(parents=True, exist_ok=True)
    assert the_lab._start_holder() == 10
    assert system.looks == HolderStartingUp.STAGES
