"""Fixtures for end-to-end tests on real VMs.

These tests run only inside the lab (``devbox lab run -- .venv/bin/pytest -m lab tests/e2e``), which sets
DEVBOX_LAB, VAGRANT_HOME, DEVBOX_APT_PROXY and LIBVIRT_DEFAULT_URI. Outside it they FAIL with the command to
use: a lab test that silently skips would be a tier that never runs.

- ``lab_env``: the lab's environment (fails outside the lab).
- ``vagrant_project``: a fresh folder with ``write_vagrantfile``/``vagrant``/``ssh``; destroys its VMs after.
- ``devbox_project``: a fresh project folder with ``devbox(*args)`` that runs the real CLI in the lab's env;
  destroys whatever VMs the project left.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import git_commit

DEVBOX = Path(sys.executable).parent / "devbox"
LAB_COMMAND = "devbox lab run -- .venv/bin/pytest -m lab tests/e2e"


@pytest.fixture(scope="session")
def lab_env() -> dict[str, str]:
    missing = [k for k in ("DEVBOX_LAB", "VAGRANT_HOME", "DEVBOX_APT_PROXY") if not os.environ.get(k)]
    if missing:
        pytest.fail(f"end-to-end tests boot real VMs and must run inside the lab ({', '.join(missing)} not set); "
                    f"run: sudo .venv/bin/{LAB_COMMAND}", pytrace=False)
    return {k: os.environ[k] for k in ("DEVBOX_LAB", "VAGRANT_HOME", "DEVBOX_APT_PROXY", "PATH")}


@dataclass
class Timings:
    """Wall-clock time of named steps, printed at the end of a test (run pytest with -s to see them live)."""
    steps: list[tuple[str, float]] = field(default_factory=list)

    def measure(self, name: str):
        timings = self

        class _Measure:
            def __enter__(self):
                self.start = time.monotonic()

            def __exit__(self, *exc):
                seconds = time.monotonic() - self.start
                timings.steps.append((name, seconds))
                print(f"[timing] {name}: {seconds:.1f} s", flush=True)

        return _Measure()

    def report(self) -> str:
        return ", ".join(f"{name} {sec:.0f}s" for name, sec in self.steps)


@pytest.fixture
def timings(request) -> Timings:
    t = Timings()
    yield t
    if t.steps:
        print(f"\n[timings] {request.node.name}: {t.report()}", flush=True)


def _run(argv, *, cwd, env=None, timeout=600, log: Path | None = None, input=None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            timeout=timeout, input=input, errors="replace")
    if log:
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(map(str, argv))}\n{result.stdout}{result.stderr}[exit {result.returncode}]\n")
    return result


def _require(result: subprocess.CompletedProcess, what: str, log: Path | None) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        pytest.fail(f"{what} exited with {result.returncode}\n{tail}\n(full log: {log})", pytrace=False)
    return result


class VagrantProject:
    def __init__(self, path: Path):
        self.path = path
        self.log = path / "e2e.log"
        self._ssh_config: Path | None = None

    def write_vagrantfile(self, text: str) -> None:
        (self.path / "Vagrantfile").write_text(text)

    def define_vms(self, addresses: dict[str, str], *, memory: int = 384) -> None:
        """Plain VMs of the devbox box, one CPU each, at fixed addresses on the lab's private network (tests
        pick addresses away from devbox's own, which start at .11)."""
        self.write_vagrantfile('\nVagrant.configure("2") do |config|\n  config.vm.box = "devbox/debian12"\n' + "".join(f"""
  config.vm.define "{name}" do |m|
    m.vm.hostname = "{name}"
    m.vm.network :private_network, ip: "{address}"
    m.vm.provider :libvirt do |lv|
      lv.memory = {memory}
      lv.cpus = 1
    end
  end
""" for name, address in addresses.items()) + "end\n")

    def define_reference_vm(self, name: str, address: str) -> None:
        """One small VM standing for a staging host."""
        self.define_vms({name: address})

    def vagrant(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        # `vagrant up` prints thousands of progress lines while uploading the box: they go to the log only
        result = _run(["vagrant", *args], cwd=self.path, timeout=timeout, log=self.log)
        return _require(result, f"vagrant {' '.join(args)}", self.log) if check else result

    def ssh(self, host: str, command: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        if self._ssh_config is None:
            self._ssh_config = self.path / "ssh-config"
            self._ssh_config.write_text(self.vagrant("ssh-config").stdout)
        result = _run(["ssh", "-F", str(self._ssh_config), "-o", "BatchMode=yes", host, command], cwd=self.path,
                      timeout=timeout, log=self.log)
        return _require(result, f"ssh {host} {command!r}", self.log) if check else result

    def destroy(self) -> None:
        if (self.path / ".vagrant").exists():
            self.vagrant("destroy", "-f", check=False, timeout=300)


@pytest.fixture
def vagrant_project(lab_env, tmp_path) -> VagrantProject:
    project = VagrantProject(tmp_path)
    yield project
    project.destroy()  # the lab's teardown would remove the VMs too; this keeps tests independent


class DevboxProject:
    """A project folder and the real `devbox` CLI, run with the lab's environment."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.env = env
        self.log = path / "e2e.log"

    def devbox(self, *args: str, timeout: float = 1800, check: bool = True, input: str | None = None
               ) -> subprocess.CompletedProcess:
        result = _run([str(DEVBOX), "-C", str(self.path), *args], cwd=self.path, env=self.env, timeout=timeout,
                      log=self.log, input=input)
        return _require(result, f"devbox {' '.join(args)}", self.log) if check else result

    def copy_in(self, source: Path, name: str | None = None) -> Path:
        """Copy a fixture folder or file (e.g. an inventory and playbooks from tests/data) into the project."""
        target = self.path / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return target

    def commit(self, *paths: str, message: str = "fixture") -> None:
        """Make the project a git checkout with ``paths`` committed, as a team's playbook repository is."""
        git_commit(self.path, *paths, message=message, author=("e2e", "e2e@example.com"))

    def cleanup(self) -> None:
        if (self.path / ".vagrant").exists():
            _run(["vagrant", "destroy", "-f"], cwd=self.path, timeout=300, log=self.log)


@pytest.fixture
def devbox_project(lab_env, tmp_path) -> DevboxProject:
    project = DevboxProject(tmp_path / "project", dict(lab_env))
    project.path.mkdir()
    yield project
    project.cleanup()
