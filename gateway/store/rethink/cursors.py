"""The RethinkDB store's event cursors: ``v2.<owner>.<seq>``, a sequence per account.

The seq is zero-padded to 12 digits so one account's cursors sort as text in
seq order (the client libraries compare cursors as text unless both are all
digits), and the ``v`` sorts them after every all-digit cursor, which is what
the earlier layout issued (one sequence for every event).  Those are still
accepted, up to the last one issued, and read as pruned: before every event of
the log, with no way to tell what came in between.
"""

from __future__ import annotations

import re

from gateway.store.base import seq_cursor

PREFIX = "v2."
WIDTH = 12
_FORM = re.compile(r"^v2\.(.+)\.([0-9]{12})$", re.DOTALL)


def cursor(owner: str, seq: int) -> str:
    """The cursor of the owner's event ``seq`` (0: before their first)."""
    return f"{PREFIX}{owner}.{seq:0{WIDTH}d}"


def parse(cursor: str) -> tuple[str | None, int]:
    """``(owner, seq)`` of a cursor; ``(None, n)`` for an all-digit one (``"0"``, or the earlier
    layout's); ValueError for anything else."""
    seq = seq_cursor(cursor)
    if seq is not None:
        return None, seq
    match = _FORM.match(cursor)
    if match is None:
        raise ValueError(f"malformed cursor {cursor[:40]!r}")
    return match.group(1), int(match.group(2))
