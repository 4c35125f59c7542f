"""tap-alida: a Singer tap for Alida Communities' Batch Data Extract API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tap-alida")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
