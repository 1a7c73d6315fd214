"""Document ids and timestamps (gateway/ids.py)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from gateway import ids


def test_now_iso_is_the_clocks_time_in_fixed_width_iso_8601_across_seconds(monkeypatch: Any) -> None:
    """The date and time of day are made once a second: a call in the next second has that second's
    text, and each is what datetime formats for the clock's time (to the microsecond, truncated)."""
    base = 1_764_543_599 * 10**9  # 2025-11-30T22:59:59Z
    for offset in (0, 123_456_789, 999_999_999, 10**9, 10**9 + 1_000, 3600 * 10**9 + 5_000_000):
        monkeypatch.setattr(ids.time, "time_ns", lambda: base + offset)
        assert ids.now_iso() == iso_of(base + offset)


def iso_of(nanoseconds: int) -> str:
    seconds, rest = divmod(nanoseconds, 10**9)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_now_iso_follows_the_clock() -> None:
    before = time.time_ns()
    now = ids.now_iso()
    after = time.time_ns()
    assert iso_of(before) <= now <= iso_of(after) and len(now) == 27
