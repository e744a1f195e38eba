"""Opt-in Mitogen for the development VMs' Ansible runs, with a fallback to Ansible's own strategy.

With Ansible's default connection every task starts Python on the VM and imports the module and its
module_utils from a fresh zip file, compiling them each time (zip imports write no bytecode cache). On VMs under
software emulation that start-up is most of a task's time. Mitogen's strategy keeps one Python per VM for the
whole run and sends each module's code once; the playbooks themselves run unchanged (``mitogen_linear`` keeps the
linear order the reference service's plays rely on).

Mitogen is a third-party strategy plugin that follows ansible-core releases with a delay, so devbox never turns
it on by itself (``--mitogen`` or ``DEVBOX_MITOGEN=1``) and runs with Ansible's own strategy, saying why, when it
is missing or refuses the installed ansible-core.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

MITOGEN_STRATEGY = "mitogen_linear"
INSTALL_HINT = "pip install 'devbox[mitogen]'"


@dataclass(frozen=True)
class Strategy:
    """How ansible-playbook runs: its strategy plugin and the environment that selects it."""
    name: str = "linear"                                   # Ansible's default
    env: Mapping[str, str] = field(default_factory=dict)
    requested: bool = False                                # the user asked for Mitogen
    fallback: str | None = None                            # why Mitogen was asked for and not used

    @property
    def needs_known_host_keys(self) -> bool:
        """Mitogen runs OpenSSH with StrictHostKeyChecking=yes ahead of devbox's accept-new: a VM's key must be in
        the project's known_hosts before the run."""
        return self.name == MITOGEN_STRATEGY

    def describe(self) -> str:
        if self.fallback:
            return f"Mitogen not used ({self.fallback}); ran with Ansible's {self.name} strategy"
        return f"strategy: {self.name}"


DEFAULT = Strategy()


def _load_mitogen() -> Path:
    """The folder of Mitogen's strategy plugins; raises what Mitogen raises when it cannot run here."""
    import ansible_mitogen
    # the module Mitogen's strategy plugins import first: it raises AnsibleError on an unsupported ansible-core
    import ansible_mitogen.loaders  # noqa: F401
    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


def choose(requested: bool, *, load: Callable[[], Path] = _load_mitogen,
           environ: Mapping[str, str] | None = None) -> Strategy:
    """Mitogen's strategy if requested and usable here, else Ansible's default with the reason."""
    if not requested:
        return DEFAULT
    try:
        plugins = load()
    except ImportError:
        return Strategy(requested=True, fallback=f"Mitogen is not installed: {INSTALL_HINT}")
    except Exception as exc:  # Mitogen's own check raises AnsibleError with the versions in its message
        from ansible import __version__ as ansible_version
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Strategy(requested=True, fallback=f"it does not support ansible-core {ansible_version}: {first_line}")
    environ = os.environ if environ is None else environ
    # keep strategy plugins the user's own configuration adds
    existing = environ.get("ANSIBLE_STRATEGY_PLUGINS")
    search = os.pathsep.join(p for p in (str(plugins), existing) if p)
    return Strategy(name=MITOGEN_STRATEGY, requested=True,
                    env={"ANSIBLE_STRATEGY_PLUGINS": search, "ANSIBLE_STRATEGY": MITOGEN_STRATEGY})

