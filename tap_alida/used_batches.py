"""Which batches discovery made have already been loaded by a sync on this machine.

A sync re-uses the batch its discovery made (``catalog_keys``), but only once: a
catalog used again (Meltano's cached catalog, ``--full-refresh`` without STATE, a
hand-run sync) must not load that older snapshot over newer rows. STATE's marks
(``alida_last_export``) catch this when STATE is given; this record catches it
without STATE. It is one empty file per batch in ``cache_dir`` (atomic, so parallel
shards cannot corrupt it), pruned after a day; like the definitions cache, a
missing or unwritable folder only costs exports.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

logger = logging.getLogger("tap_alida.used_batches")

# Discovery batches are re-used for an hour at most; their records can go after a day.
KEEP_SECONDS = 24 * 3600


class UsedBatches:
    """Batch ids a sync has taken from a catalog, kept in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._warned = False

    def _path(self, batch_id: str) -> Path:
        return self.folder / hashlib.sha256(batch_id.encode()).hexdigest()[:32]

    def used(self, batch_id: str) -> bool:
        """Whether a sync on this machine already took this batch from a catalog."""
        try:
            return self._path(batch_id).exists()
        except OSError:
            return False

    def mark(self, batch_id: str) -> None:
        """Record that this sync takes the batch (before loading it: a rerun must not either)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._path(batch_id).touch()
            cutoff = time.time() - KEEP_SECONDS
            for old in self.folder.iterdir():
                if old.stat().st_mtime < cutoff:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "Could not record in %s which of discovery's batches this sync used (%s); a later "
                    "sync without STATE could load one again. Set 'cache_dir' to a writable folder.",
                    self.folder,
                    type(exc).__name__,
                )
