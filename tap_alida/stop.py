"""The stop signal of one run.

Worker threads spend most of their time asleep: between status polls, in a
backoff, between download retries. When the run fails (or the process is about
to exit), they must wake up at once and give up, instead of polling exports
nobody will read. Each run owns its signal, so a later run in the same process
(an orchestrator, a notebook, a test) starts with a clear one.
"""

from __future__ import annotations

import threading

from tap_alida.errors import StoppedError


class RunStop:
    """A per-run stop event with an interruptible sleep."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Stop the run: every ``sleep`` in progress or to come raises StoppedError."""
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` that raises StoppedError as soon as the run is stopping."""
        if self._event.wait(max(0.0, seconds)):
            raise StoppedError("The run is stopping.")

    def check(self) -> None:
        """Raise StoppedError when the run is stopping (for loops that do not sleep)."""
        if self._event.is_set():
            raise StoppedError("The run is stopping.")
