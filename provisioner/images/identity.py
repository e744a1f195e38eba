"""The identity reset a VM gets right before its disk is exported (``data/images/reset-identity.sh``).

The script takes ``--root DIR`` so that it is tested on a folder holding a guest's root file system; in the guest
the export runs it on ``/`` and powers the VM off in the same command: the reset puts Vagrant's insecure key back
in place of the VM's own, so a later SSH login with the VM's own key (a graceful ``vagrant halt``) would fail.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from provisioner import DATA_DIR

RESET_SCRIPT = DATA_DIR / "images" / "reset-identity.sh"
GUEST_SCRIPT = "/tmp/devbox-reset-identity.sh"
GUEST_KEY = "/tmp/devbox-vagrant.pub"


def reset_argv(root: str | Path, key: str | Path, *, script: str | Path = RESET_SCRIPT) -> list[str]:
    """The reset of the root file system under ``root``, with ``key`` (Vagrant's insecure public key)."""
    return ["sh", str(script), "--root", str(root), "--key", str(key)]


def guest_command(*, script: str = GUEST_SCRIPT, key: str = GUEST_KEY) -> str:
    """What the export runs over SSH once the script and the key are uploaded: the reset, every write on disk,
    then power-off (the SSH session ends with the VM)."""
    return (f"sudo {shlex.join(reset_argv('/', key, script=script))} && sudo sync && "
            "sudo systemctl poweroff")
