"""Stopping a training run on request: SIGTERM (a scheduler's preemption) or SIGINT (Ctrl-C) ends the run
after the current step, with a checkpoint, and the trainer then raises :class:`TrainingStopped`.

It is raised rather than returned so that no caller (``s4c train``, ``s4c cv``, ``s4c compare``, a
script) takes the stopped run's ``model.pt`` for a finished one. The CLI exits with ``128 + signal``,
the shell's code for a process ended by that signal, so job schedulers and ``set -e`` scripts see it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class TrainingStopped(Exception):
    """A run ended early by a signal after checkpointing ``iteration`` steps; the same command resumes it."""

    def __init__(self, out: str | Path, iteration: int, signum: int) -> None:
        self.out, self.iteration, self.signum = Path(out), int(iteration), int(signum)
        super().__init__(f"{self.out} stopped by {signal.Signals(self.signum).name} after iteration "
                         f"{self.iteration} (checkpointed); run the same command to resume it")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_requests() -> Iterator[dict[str, int]]:
    """Inside the block SIGTERM and SIGINT set ``requests["signal"]`` (0 until one arrives) instead of
    ending the process; the previous handlers come back afterwards. Python delivers signals to the main
    thread only, so off it the block installs nothing and the flag stays 0."""
    requests = {"signal": 0}
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda num, _frame: requests.update(signal=num))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
