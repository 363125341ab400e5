"""Time handling: every stored time is a fixed-width UTC ISO-8601 string that sorts in time order."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"(\.\d{6})\d+")


def normalize_time(value: str) -> str:
    """``2026-01-01T02:00:00.5+02:00`` -> ``2026-01-01T00:00:00.500000Z``.

    Raises ValueError for a string that is not an ISO-8601 date-time with a time zone.
    """
    # Python parses at most microseconds: producers (Spark, dbt) send nanoseconds.
    text = _FRACTION.sub(r"\1", value.strip())
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"date-time without a time zone: {value!r}")
    return format_time(parsed)


def format_time(moment: datetime) -> str:
    m = moment.astimezone(UTC)
    # Zero-padded by hand: strftime's %Y does not pad years below 1000 on glibc.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


def now() -> str:
    return format_time(datetime.now(UTC))
