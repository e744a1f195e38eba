"""Fixtures shared by the unit tests."""
from __future__ import annotations

import pytest

from sshd_server import Sshd, free_port  # tests/unit/sshd_server.py


@pytest.fixture
def sshd(tmp_path):
    """A running loopback sshd (see sshd_server.Sshd), its keys and log under ``tmp_path/sshd``."""
    server = Sshd(tmp_path / "sshd", free_port())
    server.start()
    yield server
    server.stop()
