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
from collections.abc import Iterable, Mapping, Sequence

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
    naming: str = "name",
    max_bytes: int = MAX_NAME_BYTES,
    pinned: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Give each ``(id, text)`` item a unique snake_case name.

    Items are taken in the given order (callers pass a stable one: definition
    order, creation date). The first item to want a name gets it plain; a later
    item whose name is taken, or reserved, gets ``_<id suffix>`` appended. An
    item whose text has no usable characters is named ``<fallback_prefix>_<id
    suffix>``. With ``naming="id"`` (settings ``column_naming``/``stream_naming``)
    the text is ignored and every name is ``<fallback_prefix>_<id>``: it changes
    only when the id does, never when a question or activity is reworded.

    ``pinned`` (id → name) names some items beforehand: the names a catalog in
    use gave them (``catalog_keys``), kept whatever their text says now.
    """
    pinned = pinned or {}
    taken = set(reserved) | set(pinned.values())
    names: dict[str, str] = {}
    for item_id, text in items:
        if item_id in pinned:
            names[item_id] = pinned[item_id]
            continue
        if naming == "id":
            text = f"{fallback_prefix} {item_id}"
        base = truncate(snake_case(text), max_bytes)
        if not base:
            base = f"{fallback_prefix}_{id_suffix(item_id)}"
        names[item_id] = unique(base, item_id, taken, max_bytes)
    return names


def compose(base: str, part: str, *, part_max: int = 36, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``<base>__<part>`` in at most ``max_bytes``: the part keeps up to ``part_max``
    bytes, the base is cut to the rest (indicator columns: question + option)."""
    part = truncate(part, part_max)
    room = max_bytes - len(part) - 2
    return f"{truncate(base, room)}__{part}"


def unique(name: str, identifier: str, taken: set[str], max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name``, or ``name`` with a suffix from ``identifier`` when it is taken; marks it taken."""
    if name in taken:
        name = _with_suffix(name, id_suffix(identifier), max_bytes)
    if name in taken:
        name = _with_suffix(name, hashlib.sha1(identifier.encode()).hexdigest()[:12], max_bytes)
    taken.add(name)
    return name
