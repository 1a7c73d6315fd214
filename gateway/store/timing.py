"""Timing every operation of a store, for the metrics, without touching its callers."""

from __future__ import annotations

import contextvars
import functools
import time
from typing import Any, Callable

from gateway.store.base import Store

#: The operations timed: every call that reads or writes the database (opening a feed is not one).
OPERATIONS = ("get", "insert", "insert_with", "update", "delete", "find", "find_listed", "count", "delete_where",
              "event_history", "latest_event_cursor", "ping")

#: Set while a timed operation runs, so one a backend makes of another (insert of insert_with, say) counts once.
_timing: contextvars.ContextVar[bool] = contextvars.ContextVar("store_timing", default=False)


def time_operations(store: Store, report: Callable[[str], Callable[[float], None]]) -> None:
    """From now on, every operation of ``store`` reports the seconds it took to ``report(operation)``
    (failures too: a refusal takes the store's time as well)."""
    for name in OPERATIONS:
        setattr(store, name, _timed(getattr(store, name), report(name)))


def _timed(method: Callable[..., Any], report: Callable[[float], None]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        if _timing.get():
            return await method(*args, **kwargs)
        token = _timing.set(True)
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            report(time.perf_counter() - start)
            _timing.reset(token)
    return timed
