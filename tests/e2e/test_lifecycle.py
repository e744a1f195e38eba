"""The whole VM lifecycle on two real VMs, through the real CLI:
init -> up -> provision -> status -> the VMs by name (hosts block, glibc, ssh) -> ssh -> (a failing task) -> halt -> up -> destroy.

Also checks the Vagrant parsers on this run's real `vagrant status --machine-readable` / `vagrant ssh-config`
output (saved under the project's `captures/`; set DEVBOX_CAPTURE_DIR to keep them, e.g. for tests/data).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import git_head
from provisioner.adapters.vagrant_driver import PythonVagrantDriver, parse_ssh_config, parse_status

pytestmark = pytest.mark.lab

DATA = Path(__file__).resolve().parents[1] / "data" / "e2e-lifecycle"
VMS = ("web-1", "db-1")


def capture(project, name: str, *args: str) -> str:
    result = subprocess.run(["vagrant", *args], cwd=project.path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for folder in filter(None, (project.path / "captures", os.environ.get("DEVBOX_CAPTURE_DIR"))):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(result.stdout)
    return result.stdout


def status_json(project) -> dict:
    return {m["name"]: m for m in json.loads(project.devbox("status", "--json").stdout)["machines"]}


def test_lifecycle_on_two_vms(devbox_project, timings):
    p = devbox_project
    for item in ("prod", "playbooks", "devbox.yml"):
        p.copy_in(DATA / item)
    p.commit("prod", "playbooks", "devbox.yml")
    revision = git_head(p.path)

    with timings.measure("devbox init"):
        p.devbox("init")
    with timings.measure("devbox doctor"):
        doctor = p.devbox("doctor")
    assert "FAIL" not in doctor.stdout, doctor.stdout

    # Vagrant's own machine folder tells devbox, without a `vagrant status`, that nothing is created yet
    driver = PythonVagrantDriver(root=p.path, logs_dir=p.path / "driver-logs")
    assert driver.none_created(VMS)
    with timings.measure("devbox up (2 VMs, fresh)"):
        up = p.devbox("up")
    assert not driver.none_created(["web-1"]) and not driver.none_created(["db-1"])
    # connection details came from what the Vagrantfile recorded during `vagrant up`: no vagrant call of ours
    # read them (the comparison with `vagrant ssh-config` follows)
    reads = p.path / ".devbox" / "logs" / "vagrant-read.log"
    assert "ssh-config" not in (reads.read_text() if reads.exists() else ""), reads.read_text()
    assert {f.stem for f in (p.path / ".devbox" / "ssh-details").glob("*.json")} == set(VMS)
    assert "booted: web-1, db-1" in up.stdout, up.stdout
    # the serial console that a "no SSH" error points to holds the guest's own output, up to its login prompt
    for n in VMS:
        console = p.path / ".devbox" / "logs" / f"console-{n}.log"
        assert "login:" in console.read_text(errors="replace"), console

    status_text = capture(p, "status-running.txt", "status", "--machine-readable")
    assert {n: s.state for n, s in parse_status(status_text).items()} == {n: "running" for n in VMS}
    configs = parse_ssh_config(capture(p, "ssh-config-running.txt", "ssh-config"))
    assert set(configs) == set(VMS) and all(Path(c.identity_file).is_file() for c in configs.values())
    # the connection devbox cached is the one Vagrant reports, and Ansible got it through zz-connection.yml
    conn = yaml.safe_load((p.path / ".devbox" / "inventory" / "zz-connection.yml").read_text())["all"]["hosts"]
    assert {n: (conn[n]["ansible_host"], conn[n]["ansible_port"], conn[n]["ansible_user"],
                conn[n]["ansible_ssh_private_key_file"]) for n in VMS} == {
        n: (configs[n].host, configs[n].port, configs[n].user, configs[n].identity_file) for n in VMS}
    known_hosts = (p.path / ".devbox" / "known_hosts").read_text()
    assert all(configs[n].host in known_hosts for n in VMS)  # accept-new recorded both keys

    with timings.measure("devbox provision (nothing to change)"):
        again = p.devbox("provision")
    assert "web-1" in again.stdout and "db-1" in again.stdout

    with timings.measure("devbox status --json (x5)"):
        started = time.monotonic()
        for _ in range(5):
            machines = status_json(p)
        per_call = (time.monotonic() - started) / 5
    # printed, not asserted: a wall-clock limit fails under load for reasons that are not devbox's. The cached
    # `devbox status` (the same path, as a table) is timed by bench/speed_bench.py's status benchmark, alternating
    # with `vagrant status` and `devbox status --refresh`.
    print(f"[timing] devbox status --json: {per_call:.2f} s per call")
    for n in VMS:
        m = machines[n]
        assert (m["state"], m["ssh"], m["revision"]) == ("running", True, revision), m
        assert m["last_provisioned"]

    # each VM by its name: `devbox status` shows it, `devbox hosts --write` puts it into a hosts file (a file of the
    # test, never the machine's /etc/hosts), and glibc resolves it once that file is /etc/hosts in a private mount
    # namespace; ssh to the name reaches the VM whose host key devbox pinned
    plan = {m["name"]: m["address"] for m in json.loads((p.path / ".devbox" / "plan.json").read_text())["machines"]}
    assert {n: (machines[n]["fqdn"], machines[n]["private_address"]) for n in VMS} == {
        n: (f"{n}.devbox.test", plan[n]) for n in VMS}
    hosts = p.path / "hosts-under-test"
    hosts.write_bytes(b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost # kept as it is")
    with timings.measure("devbox hosts --write --file"):
        p.devbox("hosts", "--write", "--file", str(hosts))
    for n in VMS:
        config = configs[n]
        script = (f"mount --bind {hosts} /etc/hosts && getent hosts {n}.devbox.test && "
                  f"ssh -n -i {config.identity_file} -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=60 "
                  f"-o UserKnownHostsFile={p.path / '.devbox' / 'known_hosts'} -o StrictHostKeyChecking=yes "
                  f"-o HostKeyAlias={config.host} {config.user}@{n}.devbox.test cat /etc/devbox-marker")
        named = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
                               timeout=300)
        assert named.returncode == 0, named.stdout + named.stderr
        resolved, marker_line = named.stdout.splitlines()
        assert resolved.split() == [plan[n], f"{n}.devbox.test"]
        assert marker_line.startswith(f"{n} in ")
    with timings.measure("devbox hosts --remove --file"):
        p.devbox("hosts", "--remove", "--file", str(hosts))
    assert hosts.read_bytes() == b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost # kept as it is"

    with timings.measure("devbox ssh web-1 -c cat"):
        marker = p.devbox("ssh", "web-1", "-c", "cat /etc/devbox-marker /etc/devbox-web").stdout
    assert marker.splitlines() == ["web-1 in web", "web"]
    db_marker = p.devbox("ssh", "db-1", "-c", "cat /etc/devbox-marker").stdout
    assert db_marker.strip() == "db-1 in db"

    with timings.measure("devbox provision --tags breakage (fails)"):
        broken = p.devbox("provision", "--tags", "breakage", check=False)
    output = broken.stdout + broken.stderr
    assert broken.returncode == 1, output
    assert "web-1" in output and "broken on purpose" in output and "ansible.log" in output, output
    assert "Traceback" not in output

    with timings.measure("devbox halt"):
        p.devbox("halt")
    halted = capture(p, "status-halted.txt", "status", "--machine-readable")
    assert {n: s.state for n, s in parse_status(halted).items()} == {n: "poweroff" for n in VMS}
    assert {n: m["state"] for n, m in status_json(p).items()} == {n: "poweroff" for n in VMS}

    with timings.measure("devbox up (after halt)"):
        p.devbox("up")
    after = json.loads(p.devbox("status", "--json", "--refresh").stdout)["machines"]
    assert [(m["state"], m["ssh"]) for m in after] == [("running", True)] * 2

    with timings.measure("devbox destroy --yes"):
        p.devbox("destroy", "--yes")
    gone = {m["name"]: m for m in json.loads(p.devbox("status", "--json", "--refresh").stdout)["machines"]}
    assert {n: (m["state"], m["ssh"], m["last_provisioned"]) for n, m in gone.items()} == {
        n: ("not_created", None, None) for n in VMS}
    known_hosts = (p.path / ".devbox" / "known_hosts").read_text()
    assert not any(configs[n].host in known_hosts for n in VMS), known_hosts
    assert yaml.safe_load((p.path / ".devbox" / "inventory" / "zz-connection.yml").read_text())["all"]["hosts"] == {}
    assert driver.none_created(VMS)  # Vagrant removed the machines' ids with them
    assert not list((p.path / ".devbox" / "ssh-details").glob("*.json"))  # and the trigger their SSH details
