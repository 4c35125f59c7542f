"""Sensitive member data: what leaves the tap for variables flagged ``isSensitive``.

Setting ``sensitive_values``:

* ``include``: values as exported;
* ``hash``: hex SHA-256 of ``sensitive_values_salt`` + the value as text (numbers
  in their JSON spelling, ``42`` not ``42.0``). Equal values give equal hashes, so
  hashed e-mails still join and count distinct; the salt keeps them from being
  reversed by hashing guesses;
* ``drop``: no value at all (the column is left out of ``member_profiles``).

A variable counts as sensitive when ``/membervariables`` or the export file
flags it: the file's flag is per value, so a variable flagged after discovery is
still protected.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tap_alida.modelling.types import to_text

INCLUDE, HASH, DROP = "include", "hash", "drop"


class SensitiveValues:
    """Applies the ``sensitive_values`` setting to one value or a list of values."""

    def __init__(self, mode: str, salt: str | None) -> None:
        self.mode = mode
        self._salt = salt or ""

    def digest(self, value: Any) -> str | None:
        text = to_text(value)
        if text is None:
            return None
        return hashlib.sha256((self._salt + text).encode("utf-8")).hexdigest()

    def protect(self, value: Any) -> Any:
        """The value to emit under ``hash`` (lists element-wise) or ``drop`` (None)."""
        if self.mode == DROP or value is None:
            return None
        if self.mode == HASH:
            if isinstance(value, list):
                return [self.digest(v) for v in value]
            return self.digest(value)
        return value

    def describe(self) -> str:
        """The sentence a sensitive column's schema description ends with."""
        if self.mode == HASH:
            return "Sensitive (isSensitive): hex SHA-256 of the salt + the value as text."
        if self.mode == DROP:
            return "Sensitive (isSensitive): values dropped."
        return "Sensitive (isSensitive): values as exported."

    def __repr__(self) -> str:  # never shows the salt
        return f"SensitiveValues(mode={self.mode!r})"
