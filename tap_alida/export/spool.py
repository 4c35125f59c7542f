"""The run's spool folder: where export files wait on disk between download and parse.

Why a module: three things about that folder must hold whatever happens to a run.

* It is findable as ours: ``tap-alida-*`` under the temp folder, holding an
  ``owner`` file with the host name and process id of the run that made it.
* A run killed with ``kill -9`` (or OOM-killed) never runs its ``atexit``
  clean-up, and its folder may hold gigabytes. Each run therefore removes the
  folders of dead runs when it creates its own (``remove_stale``): owner on
  this host, process gone, nothing touched for ``STALE_AFTER_SECONDS``. Folders
  without an owner file are left alone (they may not be ours).
* A full disk (``ENOSPC``/``EDQUOT``) is a setup problem, not a bug: it becomes
  one ``SpoolError`` naming the folder and what to do (``disk_full``).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from tap_alida.errors import AlidaError

logger = logging.getLogger("tap_alida.export.spool")

PREFIX = "tap-alida-"
OWNER_FILE = "owner"
# A dead run's folder is removed only when nothing in it changed for this long:
# a guard against a process id that is not visible from here (another container
# with the same host name sharing the temp folder).
STALE_AFTER_SECONDS = 300.0
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class SpoolError(AlidaError):
    """The spool folder cannot be created or written (disk full, no permission)."""


def make_workdir(parent: str | None = None) -> Path:
    """A new private spool folder with its owner file, after removing dead runs' folders."""
    parent = parent or tempfile.gettempdir()
    remove_stale(Path(parent))
    try:
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        (path / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
    except OSError as exc:
        msg = (
            f"Could not create the spool folder for export files in {parent} ({exc.strerror or exc}). "
            "Point TMPDIR at a writable folder with room for the largest export, then rerun."
        )
        raise SpoolError(msg) from None
    return path


def disk_full(exc: BaseException, folder: Path | str, what: str) -> SpoolError | None:
    """The SpoolError to raise for a full disk while ``what``, or None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL:
        return None
    return SpoolError(
        f"No space left in the spool folder {folder} while trying to {what} ({exc.strerror}). Nothing "
        "from that file was emitted and the bookmark was not advanced. Free space there, or point "
        "TMPDIR at a folder on a disk with room for the largest export, then rerun the sync."
    )


def remove_stale(parent: Path, now: float | None = None) -> list[Path]:
    """Remove the spool folders of runs on this host that are gone; returns what was removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        candidates = sorted(parent.glob(f"{PREFIX}*"))
    except OSError:
        return removed
    for folder in candidates:
        if _is_stale(folder, now):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
                logger.info("Removed the spool folder %s of an earlier run that is gone.", folder)
    return removed


def _is_stale(folder: Path, now: float) -> bool:
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        host, _, pid_text = (folder / OWNER_FILE).read_text(encoding="utf-8").strip().rpartition(" ")
        newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
    except (OSError, ValueError, UnicodeDecodeError):
        return False  # no owner file: not provably ours
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if _alive(int(pid_text)):
        return False
    return now - newest >= STALE_AFTER_SECONDS


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
