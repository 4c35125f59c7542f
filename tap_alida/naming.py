"""Stream and column names: readable, deterministic, unique, at most 63 bytes.

Warehouses truncate or reject long identifiers (PostgreSQL at 63 bytes), and
question texts are long, repeated and full of unicode. Names are derived from
the API's own text (activity name, field name, variable name) so analysts can
read them, and every collision is broken with a suffix taken from the thing's
*id*, so a name never depends on how many other things happen to share it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

MAX_NAME_BYTES = 63

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def snake_case(text: str) -> str:
    """Lower-case ASCII snake_case of ``text`` ('' when nothing is left).

    Accents are folded (``très`` → ``tres``); other characters become ``_``.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = _NON_ALNUM.sub("_", folded.lower()).strip("_")
    if name and name[0].isdigit():
        name = f"_{name}"
    return name


def truncate(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """Cut ``name`` (ASCII) to ``max_bytes`` without leaving a trailing ``_``."""
    return name[:max_bytes].rstrip("_") or name[:max_bytes]


def id_suffix(identifier: str, length: int = 8) -> str:
    """A short, stable suffix derived from an API id (GUID or not)."""
    alnum = re.sub(r"[^0-9a-z]", "", identifier.lower())
    if len(alnum) >= length:
        return alnum[:length]
    return hashlib.sha1(identifier.encode()).hexdigest()[:length]


def _with_suffix(base: str, suffix: str, max_bytes: int) -> str:
    room = max_bytes - len(suffix) - 1
    return f"{truncate(base, room)}_{suffix}"


def assign_names(
    items: Sequence[tuple[str, str]],
    *,
    fallback_prefix: str,
    reserved: Iterable[str] = (),
    max_bytes: int = MAX_NAME_BYTES,
) -> dict[str, str]:
    """Give each ``(id, text)`` item a unique snake_case name.

    Items are taken in the given order (callers pass a stable one: definition
    order, creation date). The first item to want a name gets it plain; a later
    item whose name is taken, or reserved, gets ``_<id suffix>`` appended. An
    item whose text has no usable characters is named ``<fallback_prefix>_<id
    suffix>``.
    """
    taken = set(reserved)
    names: dict[str, str] = {}
    for item_id, text in items:
        base = truncate(snake_case(text), max_bytes)
        if not base:
            base = f"{fallback_prefix}_{id_suffix(item_id)}"
        name = base
        if name in taken:
            name = _with_suffix(base, id_suffix(item_id), max_bytes)
        if name in taken:  # two ids sharing a prefix: fall back to a hash
            name = _with_suffix(base, hashlib.sha1(item_id.encode()).hexdigest()[:12], max_bytes)
        taken.add(name)
        names[item_id] = name
    return names
