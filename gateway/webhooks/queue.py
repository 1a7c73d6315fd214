"""The webhook queue: the store's event feed, made into durable jobs, posted with retries.

It reads the very feed the sockets' dispatcher follows (:meth:`WebhookQueue.attach`
adds it as a reader of that :class:`~gateway.store.follow.Follower`), never the
handlers.  Its reader notes each event, without a store read, unless its account
is known to have no webhook (the webhooks of each account are kept in memory,
dropped on the webhooks table's feed, and not trusted while that feed is down),
and a task of its own turns
them into jobs, in order, so the sockets never wait on it.  For each event, each
enabled webhook of its account that asks for its kind gets a job whose id is
derived from the webhook and the event's cursor: every process sees the event,
and the insert succeeds in one.  A
webhook remembers the cursor of the last event it took (``cursor``); at start
and after a feed outage each webhook reads its account's history after it, so
an event committed while no process followed the feed is not lost (its job is
made then, once, by the same id).

Jobs are a :class:`~gateway.store.leased_queue.LeasedQueue` (``pending`` ->
``sending``): one process posts a job at a time, a restart or another process
takes over what a dead one left, and each attempt is signed afresh and
recorded.  A 2xx ends the job ``succeeded``; anything else is retried after
``backoff`` seconds, doubling, up to ``attempts``, then ``failed``.  A newer
status event (``deferred``, ``delivery``, ``failed``) of one email supersedes
its older jobs still pending.  After ``disable_after`` consecutive failed
attempts the webhook is disabled, and its record says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from events.model import STATUS_KINDS, Event
from gateway.ids import iso_from_epoch, now_iso
from gateway.metrics import Metrics
from gateway.store import Change, Conflict, Doc, In, Query, Store, StoreError
from gateway.store.follow import Follower
from gateway.store.leased_queue import LeasedQueue, retry_due
from gateway.webhooks.documents import FAILED, PENDING, SENDING, SUCCEEDED, SUPERSEDED, new_job
from gateway.webhooks.registry import Webhooks

log = logging.getLogger("gateway.webhooks")

HISTORY_PAGE = 500
#: Finished jobs are kept this long (seconds): a job's id must stay taken until every process has
#: passed its event, or a process whose feed lags would make the job again.
FINISHED_KEPT = 24 * 3600


#: Fields of a webhook the queue itself writes as it goes; a change of only these leaves the cache as it is.
BOOKKEEPING = frozenset({"cursor", "consecutive_failures"})


def _settings(webhook: Doc) -> Doc:
    return {k: v for k, v in webhook.items() if k not in BOOKKEEPING}


class WebhookQueue:
    """Follows the event feed into jobs, and posts the jobs; :meth:`start` resumes what was left."""

    def __init__(self, store: Store, webhooks: Webhooks, attempts: int, backoff: float,
                 disable_after: int, lease: float, concurrency: int, per_webhook: int,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.webhooks = webhooks
        self.max_attempts = attempts
        self.backoff = backoff
        self.disable_after = disable_after
        self.metrics = metrics
        #: The enabled webhooks of accounts, as last read (an account without any: an empty list).
        self._hooks: dict[str, list[Doc]] = {}
        self.hooks_feed = Follower(lambda: store.changes("webhooks"), "webhooks feed").add(
            "webhook cache", self._hooks_changed, self._forget_hooks)
        #: Events to make jobs of, in feed order; None: catch up from the history first.
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.jobs = LeasedQueue(store, "webhook_jobs", "webhook queue", self._post, {"status": PENDING}, claimed=SENDING,
                                lease=lease, concurrency=concurrency, group="webhook", per_group=per_webhook)

    def attach(self, event_feed: Follower) -> None:
        """Read the events of ``event_feed`` (the dispatcher's); call before it starts."""
        event_feed.add("webhooks", self._changed, self._resumed)

    async def start(self) -> None:
        """Take the events missed while no process ran, then post what is queued; the events of the
        attached feed (live by now, or soon) wait for this in the queue."""
        await self.hooks_feed.start()
        await self.catch_up()
        self._worker = asyncio.ensure_future(self._take_events())
        await self.jobs.start()
        self._pruner = asyncio.ensure_future(self._prune_now_and_then())

    async def stop(self) -> None:
        for task in (self._pruner, self._worker):
            if task is not None:
                task.cancel()
        await self.hooks_feed.stop()
        await self.jobs.stop()

    async def prune(self, older_than: float = FINISHED_KEPT) -> int:
        """Delete finished jobs made over ``older_than`` seconds ago; how many went."""
        cutoff = iso_from_epoch(time.time() - older_than)
        finished = await self.store.find("webhook_jobs", Query({"status": In([SUCCEEDED, FAILED, SUPERSEDED])}))
        old = [job["id"] for job in finished if job.get("created", "") < cutoff]
        return await self.store.delete_where("webhook_jobs", {"id": In(old)}) if old else 0

    async def _prune_now_and_then(self) -> None:
        while True:
            try:
                pruned = await self.prune()
                if pruned:
                    log.info("pruned %d finished webhook job(s)", pruned)
            except StoreError as exc:
                log.warning("webhook job pruning skipped: %s", exc)
            await asyncio.sleep(3600)

    async def release(self, within: float) -> None:
        """Stop taking events (another process, or the next start, takes them from the history);
        let running posts finish within ``within`` seconds; hand back the rest."""
        if self._worker is not None:
            self._worker.cancel()
        await self.jobs.release(within)

    # -- events into jobs ---------------------------------------------------

    async def _changed(self, change: Change) -> None:
        """A reader of the shared event feed: note the events of accounts that may have webhooks, and
        return without a store read (the feed's other readers, the sockets, wait for this one)."""
        event = change.event()
        if event is None or event.owner is None:
            return
        known = self._hooks.get(event.owner) if self.hooks_feed.live else None
        if known is None or known:  # not known to have none: _take_events reads them
            self._events.put_nowait(event)

    async def _resumed(self) -> None:
        """The shared feed was reopened: catch up, before the events that come after."""
        self._events.put_nowait(None)

    async def _take_events(self) -> None:
        """Make the noted events' jobs, one after another, and catch up when told (a store error
        drops nothing: the webhook's cursor stays, and the next catch-up takes the event)."""
        while True:
            event = await self._events.get()
            try:
                if event is None:
                    await self.catch_up()
                    continue
                for webhook in await self._enabled(str(event.owner)):
                    await self.enqueue(webhook, event)
            except StoreError as exc:
                log.warning("webhook jobs not made now (%s); catching up in a second", exc)
                asyncio.get_running_loop().call_later(1.0, self._events.put_nowait, None)

    async def _enabled(self, owner: str) -> list[Doc]:
        """The account's enabled webhooks, read (with their cursors as they are now); kept in memory,
        while the webhooks feed is live, for :meth:`_changed` to pass by accounts without any."""
        hooks = await self.store.find("webhooks", Query({"owner": owner, "enabled": True}))
        if self.hooks_feed.live:
            self._hooks[owner] = hooks
        return hooks

    async def _hooks_changed(self, change: Change) -> None:
        if change.old is not None and change.new is not None and _settings(change.old) == _settings(change.new):
            return  # the queue's own bookkeeping (the cursor after each event, the failure count)
        for doc in (change.old, change.new):
            if doc is not None:
                self._hooks.pop(str(doc.get("owner")), None)

    async def _forget_hooks(self) -> None:
        self._hooks.clear()

    async def catch_up(self) -> None:
        """Each enabled webhook takes the events of its account after its cursor (at start, after an outage)."""
        for webhook in await self.store.find("webhooks", Query({"enabled": True})):
            after = webhook.get("cursor")
            while True:
                page = await self.store.event_history(webhook["owner"], after, HISTORY_PAGE)
                if not page.complete:
                    log.warning("webhook %s: events after cursor %s were pruned before it took them",
                                webhook["id"], after)
                for change in page.changes:
                    event = change.event()
                    if event is not None:
                        webhook = await self.enqueue(webhook, event)
                if len(page.changes) < HISTORY_PAGE:
                    break
                after = page.changes[-1].cursor

    async def enqueue(self, webhook: Doc, event: Event) -> Doc:
        """Make the event's job for the webhook (once, whoever else tries); the webhook as it now is."""
        if not (webhook.get("events") is None or event.kind in webhook["events"]):
            return webhook
        cursor = webhook.get("cursor")
        key = self.store.cursor_key(event.cursor, webhook["owner"])
        if cursor is not None and key <= self.store.cursor_key(cursor, webhook["owner"]):
            return webhook  # taken already, or older than the webhook
        job = new_job(webhook, event.kind, event.email["id"], event.cursor,
                      event.message(webhook.get("detail", "message")), event.written())
        try:
            await self.store.insert("webhook_jobs", job)
        except Conflict:
            pass  # another process made it
        else:
            if event.kind in STATUS_KINDS:
                await self._supersede(job, key)
        moved = await self.store.update("webhooks", webhook["id"], {"cursor": event.cursor}, only_if={"cursor": cursor})
        return moved or {**webhook, "cursor": event.cursor}

    async def _supersede(self, job: Doc, key: Any) -> None:
        """A newer status of an email makes its older pending status jobs for the webhook moot."""
        older = await self.store.find("webhook_jobs", Query({"webhook": job["webhook"], "email": job["email"],
                                                             "status": PENDING}))
        for other in older:
            if other["id"] != job["id"] and other.get("type") in STATUS_KINDS \
                    and self.store.cursor_key(other["cursor"], job["owner"]) < key:
                if await self.store.update("webhook_jobs", other["id"],
                                           {"status": SUPERSEDED, "superseded_by": job["id"]},
                                           only_if={"status": PENDING}):
                    log.info("webhook job %s superseded by %s", other["id"], job["id"])

    # -- posting ------------------------------------------------------------

    async def _post(self, job: Doc) -> None:
        """One attempt of a claimed job."""
        webhook = await self.store.get("webhooks", job["webhook"])
        if webhook is None or not webhook.get("enabled"):
            reason = "webhook deleted" if webhook is None else "webhook disabled"
            await self.store.update("webhook_jobs", job["id"], {"status": FAILED, "last_error": reason})
            return
        attempt = job.get("attempts", 0) + 1
        outcome = await self.webhooks.post(webhook, job, attempt)
        if self.metrics is not None:
            self.metrics.webhook_attempts.labels(SUCCEEDED if outcome.ok else FAILED).inc()
        # the job moves on first: once an attempt is on record, a restart cannot make it again
        await self._settle(job, attempt, outcome.ok, outcome.error)
        await self.webhooks.record(job, attempt, outcome.ok, outcome.code, outcome.duration_ms, outcome.error)
        if outcome.ok:
            if webhook.get("consecutive_failures"):
                await self.store.update("webhooks", webhook["id"], {"consecutive_failures": 0})
        else:
            await self._count_failure(webhook, outcome.error or "")

    async def _settle(self, job: Doc, attempt: int, ok: bool, error: str | None) -> None:
        """The job after an attempt: succeeded, failed for good, or pending until its retry is due."""
        if ok:
            await self.store.update("webhook_jobs", job["id"], {
                "status": SUCCEEDED, "attempts": attempt, "succeeded_at": now_iso(), "last_error": None})
        elif attempt >= self.max_attempts:
            await self.store.update("webhook_jobs", job["id"], {
                "status": FAILED, "attempts": attempt, "last_error": error, "failed_at": now_iso()})
            log.warning("webhook %s: job %s failed after %d attempt(s): %s", job["webhook"], job["id"], attempt, error)
        else:
            due = retry_due(self.backoff, attempt)
            await self.store.update("webhook_jobs", job["id"], {
                "status": PENDING, "attempts": attempt, "last_error": error, "next_attempt_at": due})

    async def _count_failure(self, webhook: Doc, error: str) -> None:
        failures = int(webhook.get("consecutive_failures") or 0) + 1
        changes: dict[str, Any] = {"consecutive_failures": failures}
        if failures >= self.disable_after:
            changes.update(enabled=False, disabled_at=now_iso(),
                           disabled_reason=f"Disabled after {failures} consecutive failed attempts; the last: {error}")
            log.warning("webhook %s disabled after %d consecutive failed attempts", webhook["id"], failures)
        try:
            await self.store.update("webhooks", webhook["id"], changes)
        except StoreError as exc:
            log.warning("webhook %s: failure count not recorded (%s)", webhook["id"], exc)
