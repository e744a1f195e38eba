"""The Ctrl-C hold shared by the playbook runner and the Vagrant driver, with real signals to this process."""
from __future__ import annotations

import signal
import threading

import pytest

from provisioner.adapters.sigint import SigintHold


@pytest.fixture
def previous_handler():
    """A recording SIGINT handler in place of whatever the process had, so a signal that gets through is seen
    instead of interrupting the test run."""
    received = []
    original = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGINT, original)


def test_sigint_is_held_and_recorded_then_the_previous_handler_is_back(previous_handler):
    calls = []

    class Recording(SigintHold):
        def on_sigint(self):
            calls.append("on_sigint")

    handler_before = signal.getsignal(signal.SIGINT)
    with Recording() as pressed:
        assert not pressed()
        signal.raise_signal(signal.SIGINT)
        assert pressed() and calls == ["on_sigint"]
        assert previous_handler == []  # held: the previous handler did not see it
    assert pressed()  # still answers after the block, where the caller decides what to do
    assert signal.getsignal(signal.SIGINT) is handler_before
    signal.raise_signal(signal.SIGINT)
    assert previous_handler == [signal.SIGINT] and calls == ["on_sigint"]


def test_on_sigint_can_let_the_next_one_through(previous_handler):
    class SecondGoesThrough(SigintHold):
        def on_sigint(self):
            signal.signal(signal.SIGINT, self.previous)

    with SecondGoesThrough() as pressed:
        signal.raise_signal(signal.SIGINT)
        assert pressed() and previous_handler == []
        signal.raise_signal(signal.SIGINT)
        assert previous_handler == [signal.SIGINT]


def test_off_the_main_thread_nothing_is_held(previous_handler):
    handler_before = signal.getsignal(signal.SIGINT)
    seen = {}

    def in_thread():
        with SigintHold() as pressed:
            seen["handler inside"] = signal.getsignal(signal.SIGINT)
            seen["pressed"] = pressed()

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert seen == {"handler inside": handler_before, "pressed": False}
    assert signal.getsignal(signal.SIGINT) is handler_before
