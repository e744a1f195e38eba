"""Ctrl-C held while a child process runs, so devbox can stop it cleanly instead of abandoning it.

The playbook runner and the Vagrant driver both need this; they differ only in what the signal does
(``SigintHold.on_sigint``).
"""
from __future__ import annotations

import signal
import threading
from typing import Callable


class SigintHold:
    """While inside, SIGINT is recorded (and ``on_sigint`` called) instead of raising ``KeyboardInterrupt``;
    entering gives a function telling whether it came. The previous handler is back on exit.

    Python sets signal handlers only on the main thread: elsewhere nothing is held, and the function stays False.
    """

    def __enter__(self) -> Callable[[], bool]:
        self.pressed = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return lambda: self.pressed

    def _handler(self, signum, frame):
        self.pressed = True
        self.on_sigint()

    def on_sigint(self) -> None:
        """What Ctrl-C does besides being recorded: nothing here."""

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
