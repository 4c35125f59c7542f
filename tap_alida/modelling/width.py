"""Warehouse column limits: say at discovery when a stream is wider than a warehouse allows.

Why: a survey with hundreds of questions, or ``set_columns: indicators`` on
multi-select questions with many options, can make a stream with thousands of
columns. The load then fails in the warehouse, hours later, with that
warehouse's own message. Discovery knows the width already and can name the
ways out.

Per-table column caps (vendor documentation): Oracle 1,000; SQL Server 1,024
(non-wide tables); PostgreSQL and Redshift 1,600; MySQL 4,096; BigQuery
10,000. Snowflake, DuckDB and Databricks have no fixed column cap (row and
metadata sizes bound them instead).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("tap_alida.modelling.width")

COLUMN_LIMITS: tuple[tuple[str, int], ...] = (
    ("Oracle", 1000),
    ("SQL Server", 1024),
    ("PostgreSQL", 1600),
    ("Redshift", 1600),
    ("MySQL", 4096),
    ("BigQuery", 10000),
)


def too_wide_for(width: int) -> list[str]:
    """The warehouses whose per-table column cap ``width`` exceeds."""
    return [f"{name} {limit:,}" for name, limit in COLUMN_LIMITS if width > limit]


def warn_if_too_wide(stream_name: str, label: str, schema: Mapping[str, Any], set_columns: str) -> bool:
    """Log one WARNING when the stream has more columns than some warehouse allows."""
    properties = schema.get("properties") or {}
    width = len(properties)
    exceeded = too_wide_for(width)
    if not exceeded:
        return False
    indicators = sum(1 for p in properties.values() if "boolean" in (p.get("type") or []))
    ways = []
    if indicators and set_columns != "array":
        ways.append(f"set 'set_columns' to 'array' ({indicators} of the columns are option indicators)")
    ways.append("deselect fields of the stream in the catalog")
    ways.append("load activity_answers (one row per value) instead of this stream")
    logger.warning(
        "Stream %s (%s) has %d columns, more than some warehouses allow per table (%s). If yours is "
        "one of them: %s.",
        stream_name,
        label,
        width,
        ", ".join(exceeded),
        "; or ".join(ways),
    )
    return True
