"""Putting concurrent writers' events back in cursor order, for a backend whose feed can report them out of order.

A backend that numbers events with a shared counter (RethinkDB does) takes a
seq just before the write that carries it, so two writers can commit, and
their feed report, seq 8 before seq 7.  :class:`SeqOrder` holds a later
event until the earlier seqs arrive.  While it waits it looks the missing seqs
up in the history (after each of ``checks`` seconds) and reports those it finds
from there; after the last look it skips the rest.  A report arriving after its
seq was taken from the history is dropped; one arriving after its seq was
skipped is still delivered, out of order, rather than lost.  Seqs at or below
the baseline (taken before the feed started) are not reported.

It knows nothing of any database: the backend gives it a ``receive`` and a
``lookup`` function, so a third backend could reuse it as it is.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from gateway.store.base import Change

log = logging.getLogger(__name__)

#: The next (seq, change) from the live feed, or None when ``timeout`` seconds (None: forever) pass first.
Receive = Callable[[float | None], Awaitable[tuple[int, Change] | None]]
#: The history's (seq, change) for as many of the given seqs as it holds.
Lookup = Callable[[list[int]], Awaitable[list[tuple[int, Change]]]]

#: When to look a missing seq up in the history (seconds after the wait began); after the last, skip it.
GAP_CHECKS = (0.1, 0.5, 2.0)
#: How many seqs are remembered as taken from the history or skipped (to tell a late report
#: that is a duplicate from one that is still news).
GAP_MEMORY = 10_000
#: Most seqs looked up in one history read.
LOOKUP_BATCH = 1000


class SeqOrder:
    """Reports the events of a feed in seq order, filling gaps from the history (see the module)."""

    def __init__(self, receive: Receive, lookup: Lookup, baseline: int,
                 checks: tuple[float, ...] = GAP_CHECKS) -> None:
        self._receive = receive
        self._lookup = lookup
        self._checks = checks
        self._next = baseline + 1  # the seq to report next
        self._held: dict[int, Change] = {}
        self._late: collections.deque[Change] = collections.deque()
        self._waiting_since: float | None = None  # when we began holding events back for self._next
        self._looks = 0  # how many checks have passed since then
        self._recovered: set[int] = set()  # seqs taken from the history whose reports have not come
        self._skipped: set[int] = set()

    async def next(self) -> Change:
        """The next event in seq order (errors of ``receive`` and ``lookup`` pass through)."""
        loop = asyncio.get_running_loop()
        while True:
            if self._late:
                return self._late.popleft()
            change = self._held.pop(self._next, None)
            if change is not None:
                self._next += 1
                self._waiting_since = None
                return change
            timeout = None
            if self._held:
                if self._waiting_since is None:
                    self._waiting_since, self._looks = loop.time(), 0
                timeout = self._waiting_since + self._checks[self._looks] - loop.time()
                if timeout <= 0:
                    await self._recover(min(self._held))
                    self._looks += 1
                    if self._looks == len(self._checks) and self._next not in self._held:
                        self._skip(min(self._held))
                    continue
            received = await self._receive(timeout)
            if received is not None:
                self._take(*received)

    def _take(self, seq: int, change: Change) -> None:
        if seq in self._recovered:  # reported (or about to be) from the history
            self._recovered.discard(seq)
        elif seq >= self._next:
            self._held[seq] = change
        elif seq in self._skipped:
            self._skipped.discard(seq)
            log.warning("event feed: seq %d arrived after it was skipped; delivered out of order", seq)
            self._late.append(change)
        # else: an event that took its seq before the feed started; not this feed's to report

    async def _recover(self, upto: int) -> None:
        """Hold the events of the missing seqs below ``upto`` that the history has."""
        missing = [seq for seq in range(self._next, upto) if seq not in self._held][:LOOKUP_BATCH]
        if not missing:
            return
        found = await self._lookup(missing)
        for seq, change in found:
            self._held[seq] = change
            self._recovered.add(seq)
        if found:
            log.info("event feed: %d event(s) of seqs %d-%d taken from the history (their reports were late)",
                     len(found), missing[0], missing[-1])
        _forget_below(self._recovered, self._next - GAP_MEMORY)

    def _skip(self, resume: int) -> None:
        log.warning("event feed: seqs %d-%d are in neither the feed nor the history after %.1fs; skipped",
                    self._next, resume - 1, self._checks[-1])
        self._skipped.update(range(max(self._next, resume - GAP_MEMORY), resume))
        _forget_below(self._skipped, resume - GAP_MEMORY)
        self._next, self._waiting_since = resume, None


def _forget_below(seqs: set[int], floor: int) -> None:
    if len(seqs) > GAP_MEMORY:
        seqs.difference_update([seq for seq in seqs if seq < floor])
