"""Fixtures shared by the unit tests."""
from __future__ import annotations

import pytest

from helpers import git_commit, no_converged_snapshot
from provisioner.app import Devbox
from sshd_server import Sshd, free_port  # tests/unit/sshd_server.py


@pytest.fixture(scope="module")
def two_vm_template(tmp_path_factory):
    """A project initialised from a production inventory of two groups (web-1, db-1), its playbook committed, the
    automatic `converged` snapshot off; tests copy it (``helpers.copy_project``) rather than change it."""
    root = tmp_path_factory.mktemp("project")
    (root / "prod").mkdir()
    (root / "prod" / "hosts.ini").write_text("[web]\nweb01.example.com\nweb02.example.com\n\n[db]\ndb01.example.com\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    git_commit(root, "prod", "playbooks", message="playbooks")
    Devbox(project_dir=root).init(inventory=root / "prod" / "hosts.ini")
    no_converged_snapshot(root)
    return root


@pytest.fixture
def sshd(tmp_path):
    """A running loopback sshd (see sshd_server.Sshd), its keys and log under ``tmp_path/sshd``."""
    server = Sshd(tmp_path / "sshd", free_port())
    server.start()
    yield server
    server.stop()


def loopback_only_resolver(host: str) -> frozenset[str]:
    """Name resolution for the production guard in tests: numeric spellings and ``localhost`` only, never DNS
    (test traffic stays on loopback; a name a test needs is mapped by its own ssh_config)."""
    from provisioner.environments import guard

    numeric = guard.numeric_addresses(host)
    if numeric is not None:
        return numeric
    return frozenset({"127.0.0.1", "::1"}) if str(host).lower().rstrip(".") == "localhost" else frozenset()


@pytest.fixture(autouse=True)
def _guard_resolves_on_loopback(monkeypatch):
    from provisioner.environments import guard

    monkeypatch.setattr(guard, "resolve_addresses", loopback_only_resolver)
