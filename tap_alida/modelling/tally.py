"""Counted data warnings: one line per problem and field (or activity) per run, with a count.

Why not ``WarnOnce``: some problems are worth a number ("1,204 values of field
q-nps were too big for a double"), and the number is known only when a file
has been read. A stream adds each occurrence here while it maps records and
calls ``flush`` when its file is done (or failed); every key is logged once per
run, so the activity stream and ``activity_answers``, which read the same file
and see the same problems, give one line between them.

Messages carry ids and counts, never values: answers are member data.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

logger = logging.getLogger("tap_alida.modelling.tally")


@dataclass
class _Entry:
    message: str
    args: tuple[object, ...]
    count: int = 0


class Tally:
    """Counts occurrences per key; ``flush`` logs each key not logged before, once."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self._log = log
        self._pending: dict[tuple[str, ...], _Entry] = {}
        self._logged: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def add(self, key: tuple[str, ...], message: str, *args: object) -> None:
        """One occurrence. ``message`` % ``args`` is followed by the count when logged."""
        with self._lock:
            if key in self._logged:
                return
            entry = self._pending.get(key)
            if entry is None:
                entry = self._pending[key] = _Entry(message, args)
            entry.count += 1

    def count(self, key: tuple[str, ...]) -> int:
        entry = self._pending.get(key)
        return 0 if entry is None else entry.count

    def flush(self) -> None:
        """Log every pending key once: ``<message> (<n> occurrence(s) in this file).``"""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._logged.update(pending)
        for entry in pending.values():
            self._log.warning(entry.message + " (%d occurrence(s) in this file).", *entry.args, entry.count)
