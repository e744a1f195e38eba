"""The project a workflow works on: its folders, devbox.yml, progress, the lock and the adapters.

Workflows receive a ``Project`` instead of the app object, so none of them imports the app or calls back up
into it. The app builds one per call from its own fields (tests build the app with fake adapters).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from provisioner.adapters.playbook_runner import PlaybookRunner
from provisioner.adapters.ssh_probe import SshProbe
from provisioner.adapters.vagrant_driver import VagrantDriver
from provisioner.config.schema import CONFIG_NAME, Config, load_config
from provisioner.project.lock import ProjectLock
from provisioner.project.paths import ProjectPaths

Progress = Callable[[str, str], None]  # (subject, message), e.g. ("web-1", "SSH ready")
# called under the lock after a successful provisioning run, with the run's result; returns a note for the user
AfterProvision = Callable[["Project", Any], "str | None"]


def no_progress(subject: str, message: str) -> None:
    pass


def load_rules(project_dir: Path, config: str | Path | None = None) -> Config:
    """devbox.yml: the file named (it must exist), else the project's own (defaults when there is none)."""
    if config is not None:
        return load_config(Path(config), required=True)
    return load_config(Path(project_dir) / CONFIG_NAME)


def playbook_path(config: Config, project_dir: Path) -> Path:
    """The playbook production runs: devbox.yml's ``playbook:``, relative to devbox.yml (the project folder when
    there is none)."""
    return ((config.path.parent if config.path else Path(project_dir)) / config.playbook).resolve()


@dataclass
class Project:
    root: Path
    vagrant: VagrantDriver
    playbooks: PlaybookRunner
    ssh_probe: SshProbe
    progress: Progress = field(default=no_progress)
    after_provision: AfterProvision | None = None  # the app wires the automatic `converged` snapshot here

    @cached_property
    def paths(self) -> ProjectPaths:
        return ProjectPaths(Path(self.root))

    def config(self) -> Config:
        """devbox.yml of this project (defaults when there is none), read afresh: init may have rewritten it."""
        return load_rules(self.paths.root)

    def playbook(self, config: Config | None = None) -> Path:
        """The playbook production runs (devbox.yml's ``playbook:``, relative to devbox.yml)."""
        return playbook_path(config or self.config(), self.paths.root)

    def lock(self, command: str) -> ProjectLock:
        return ProjectLock(self.paths.lock, command)
