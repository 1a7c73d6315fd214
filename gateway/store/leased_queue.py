"""A work queue kept in a table: each waiting document is worked on by one process, once at a time.

Documents waiting for work match ``waiting`` (for example ``{"status":
"queued"}``) and may say when they are due (``next_attempt_at``, seconds since
the epoch).  Every process follows a feed of the documents entering that state
and schedules each; when one is due, a process claims it atomically (its status
becomes ``claimed`` with a ``claimed_at`` stamp, only if it still matches
``waiting``), so one process works on it however many watch.  The work moves the
document on: done, given up, or waiting again with a later ``next_attempt_at``.

A claim older than ``lease`` seconds belongs to a process that died: on a
shared store every process sweeps for those now and then and puts them back;
an embedded store is one process's alone, so at start it takes back all its
claims.  A process that stops on purpose puts its claims back at once
(:meth:`LeasedQueue.release`).

The delivery worker (``gateway/mail/delivery.py``) and the webhook queue
(``gateway/webhooks/queue.py``) are both one of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable

from gateway.store.base import Change, Documents
from gateway.store.documents import Doc, Query, StoreError
from gateway.store.follow import Follower

log = logging.getLogger("gateway.queue")


def retry_due(backoff: float, attempt: int, now: float | None = None) -> float:
    """When a document whose ``attempt`` failed (at ``now``, epoch seconds) is due again: the wait
    doubles from ``backoff`` with each attempt.  Both users of the queue (deliveries, webhook posts) retry so."""
    return (time.time() if now is None else now) + backoff * 2 ** (attempt - 1)


class LeasedQueue:
    """Schedules, claims and works the waiting documents of ``table``; see the module's docstring.

    ``work(doc)`` gets each claimed document (as claimed) and must move it on; a
    :class:`StoreError` out of it leaves the claim for the lease to free.
    """

    def __init__(self, store: Documents, table: str, name: str, work: Callable[[Doc], Awaitable[None]],
                 waiting: dict[str, Any], claimed: str = "sending", lease: float = 300.0,
                 concurrency: int = 8, group: str | None = None, per_group: int = 0) -> None:
        self.store = store
        self.table = table
        self.name = name
        self.work = work
        self.waiting = waiting
        self.claimed = claimed
        self.lease = lease
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._claims: dict[str, float] = {}  # document id -> the claimed_at of this process's claim on it
        self._slots = asyncio.Semaphore(concurrency)
        # With ``group`` (a field), at most ``per_group`` documents of one group are worked on at once,
        # and one waiting for its group holds no slot: a slow group cannot hold up the others.
        self.group = group
        self.per_group = per_group
        self._group_of: dict[str, Any] = {}
        self._group_slots: dict[Any, asyncio.Semaphore] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # the store filters the feed: only documents entering the waiting state reach this process
        self.feed = Follower(lambda: store.changes(table, waiting), f"{name} feed").add(
            name, self._changed, self._rescan)

    async def start(self) -> None:
        """Follow the queue and resume it: the feed is live first, so nothing that waits in between is missed."""
        await self.feed.start()
        await self._requeue_claims(older_than=None if not self.store.shared else self.lease)
        await self._rescan()
        if self.store.shared:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def stop(self) -> None:
        await self.feed.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def release(self, within: float) -> None:
        """Stop, letting running work finish for up to ``within`` seconds, and put back what this
        process still has claimed, so another process takes it at once rather than after the lease."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=within)
        claims = dict(self._claims)
        await self.stop()
        for doc_id, claimed_at in claims.items():
            try:
                if await self._unclaim(doc_id, claimed_at):
                    log.info("%s %s: claim released for another process", self.name, doc_id)
            except StoreError as exc:
                log.warning("%s %s: claim not released (%s); the lease frees it", self.name, doc_id, exc)

    def pending(self) -> int:
        """Documents this process has scheduled or is working on (the queue as it sees it)."""
        return len(self._timers) + len(self._running)

    def schedule(self, doc: Doc) -> None:
        """Work on the document when it is due (once, however often it is scheduled)."""
        if doc["id"] in self._timers:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, float(doc.get("next_attempt_at") or 0) - time.time())
        self._timers[doc["id"]] = loop.call_later(delay, self._launch, doc["id"])
        if self.group is not None:
            self._group_of[doc["id"]] = doc.get(self.group)

    async def _changed(self, change: Change) -> None:
        new = change.new
        if new and (change.old is None or change.old.get("status") != self.waiting["status"]):
            self.schedule(new)

    async def _rescan(self) -> None:
        """Schedule everything waiting (at start, and after the feed was down)."""
        for doc in await self.store.find(self.table, Query(dict(self.waiting))):
            self.schedule(doc)

    async def _unclaim(self, doc_id: str, claimed_at: Any) -> bool:
        return await self.store.update(self.table, doc_id, {"status": self.waiting["status"]},
                                       only_if={"status": self.claimed, "claimed_at": claimed_at}) is not None

    async def _requeue_claims(self, older_than: float | None) -> None:
        """Put claimed documents back: all of them, or those claimed over ``older_than`` seconds ago."""
        for doc in await self.store.find(self.table, Query({**self.waiting, "status": self.claimed})):
            claimed = doc.get("claimed_at")
            if older_than is None or not isinstance(claimed, (int, float)) or claimed < time.time() - older_than:
                if await self._unclaim(doc["id"], claimed):
                    log.info("%s %s: claim from %s released", self.name, doc["id"], claimed)

    async def _sweep(self) -> None:
        """On a shared store: release the claims of processes that died, now and then."""
        while True:
            await asyncio.sleep(self.lease / 4)
            try:
                await self._requeue_claims(older_than=self.lease)
            except StoreError as exc:
                log.warning("%s claim sweep skipped: %s", self.name, exc)

    def _launch(self, doc_id: str) -> None:
        del self._timers[doc_id]
        task = asyncio.ensure_future(self._attempt(doc_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _group_gate(self, doc_id: str) -> Any:
        """The semaphore of the document's group, or a no-op without groups."""
        if self.group is None:
            return contextlib.nullcontext()
        key = self._group_of.pop(doc_id, None)
        gate = self._group_slots.get(key)
        if gate is None:
            gate = self._group_slots[key] = asyncio.Semaphore(self.per_group)
        return gate

    async def _attempt(self, doc_id: str) -> None:
        async with self._group_gate(doc_id), self._slots:
            claimed_at = time.time()
            try:
                doc = await self.store.update(self.table, doc_id, {"status": self.claimed, "claimed_at": claimed_at},
                                              only_if={"status": self.waiting["status"]})
                if doc is None:
                    return  # done, deleted or claimed by another process meanwhile
                self._claims[doc_id] = claimed_at
                await self.work(doc)
            except StoreError as exc:
                # the claim (if made) is released by the lease sweep, or at the next start
                log.warning("%s %s interrupted: %s", self.name, doc_id, exc)
            finally:
                self._claims.pop(doc_id, None)
