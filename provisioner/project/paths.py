"""Where devbox keeps a project's files: ``.devbox/`` beside devbox.yml and the Vagrantfile."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def devbox(self) -> Path:
        return self.root / ".devbox"

    @property
    def plan(self) -> Path:
        return self.devbox / "plan.json"

    @property
    def state(self) -> Path:
        return self.devbox / "state.json"

    @property
    def snapshots(self) -> Path:
        return self.devbox / "snapshots.json"

    @property
    def lock(self) -> Path:
        return self.devbox / "lock"

    @property
    def logs(self) -> Path:
        return self.devbox / "logs"

    @property
    def inventory(self) -> Path:
        return self.devbox / "inventory"

    @property
    def connection_inventory(self) -> Path:
        return self.inventory / "zz-connection.yml"

    @property
    def known_hosts(self) -> Path:
        return self.devbox / "known_hosts"

    @property
    def runner(self) -> Path:
        return self.devbox / "runner"

    def console_log(self, name: str) -> str:
        """The serial console log if the Vagrantfile sends one there, else the log of `vagrant up`."""
        console = self.logs / f"console-{name}.log"
        return str(console if console.exists() else self.logs / "vagrant-up.log")
