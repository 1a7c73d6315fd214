"""Identifiers and timestamps shared by every document."""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timezone

#: What :func:`new_id` makes: 12 hex digits of milliseconds, 12 random ones.
ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


def new_id() -> str:
    """A 24-hex-digit id that sorts by creation time (to the millisecond)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.fullmatch(value))


#: The second :func:`now_iso` last formatted, and its text up to the seconds.
_second: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """UTC now as fixed-width ISO 8601 (``2026-11-21T14:13:07.123456Z``), so text order is time order.

    The date and time of day are formatted once a second (``strftime`` was most of the 2.6 us a call
    took, three calls a stored email); the microseconds are the clock's, truncated."""
    global _second
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    second, text = _second
    if second != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, text)
    return f"{text}.{nanoseconds // 1000:06d}Z"


def iso_from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
