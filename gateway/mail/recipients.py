"""Local accounts by address, kept in memory: inbound SMTP asks at RCPT and again when DATA ends.

The rules are the token cache's (:mod:`gateway.auth.tokens`, ``docs/api.md``
"Token checks"): an entry is dropped when the ``accounts`` feed reports a
change to its account; a deletion made in this process drops it before its
response is sent (``Accounts`` calls :meth:`Recipients.forget`); one made by
another process, within the feed's latency; and while the feed is down, or has
been reopened since an entry was made, nothing kept is trusted (the store is
asked).  Only accounts that exist are kept: an unknown address is asked of the
store every time, so a new account is found at once.
"""

from __future__ import annotations

from gateway.mail.mailbox import local_account
from gateway.store import Change, Documents
from gateway.store.follow import FeedGuard, Follower


class Recipients:
    """``user@domain`` → account id, for the local ``domain``."""

    #: Addresses kept (a bound on memory; the oldest goes first).
    KEPT = 100_000

    def __init__(self, store: Documents, domain: str) -> None:
        self.store = store
        self.domain = domain.lower()
        # address (lowercased) -> account id, trusted only while every watched feed is live and has
        # not been reopened since (the guard): a reopened feed may have missed a deletion. A lookup
        # whose store reads straddle an invalidation keeps nothing.
        self._kept: dict[str, str] = {}
        self._guard = FeedGuard(self._kept.clear)

    def watch(self, feeds: list[Follower]) -> None:
        """Keep accounts found, dropped on these followers' changes to ``accounts`` (before
        :meth:`Follower.start`; their other readers see each change after this does)."""
        self._guard.feeds = feeds
        for feed in feeds:
            feed.add("recipient cache", self._changed, first=True)

    async def _changed(self, change: Change) -> None:
        if change.table == "accounts" and change.old is not None:
            self.forget(change.old["id"])

    def forget(self, account_id: str) -> None:
        """Drop every address of an account (changed or deleted, here or elsewhere)."""
        self._guard.invalidated()
        for address in [name for name, kept in self._kept.items() if kept == account_id]:
            del self._kept[address]

    async def account(self, address: str) -> str | None:
        """The id of the account behind ``user@domain``, or None (another domain, no such user)."""
        key = address.lower()
        trusted = self._guard.trusted()
        if trusted:
            kept = self._kept.get(key)
            if kept is not None:
                return kept
        invalidations = self._guard.invalidations
        account_id = await local_account(self.store, address, self.domain)
        if account_id is None:
            return None
        if trusted and self._guard.trusted() and invalidations == self._guard.invalidations:
            self._kept[key] = account_id
            if len(self._kept) > self.KEPT:
                del self._kept[next(iter(self._kept))]
        return account_id
