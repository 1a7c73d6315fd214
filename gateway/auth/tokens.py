"""Bearer tokens: JWTs (HS256) with a stored record per ``jti``, and the secret that signs them.

A token is valid only while its signature checks out, every claim is present,
it has not expired, its record is still in the ``tokens`` table and its
account still exists: deleting the record revokes it.

Verified identities (token record and account) are kept in memory once
:meth:`Tokens.watch` names the ``tokens`` and ``accounts`` change feeds, and
dropped when those feeds report a change to them, so a request costs no store
read.  The rules (``docs/api.md``, "Token checks"): a revocation, password
change or account deletion made through :class:`Tokens` (every route does)
takes effect in this process before its response is sent; one made by another
process takes effect here within the feeds' latency; and while a feed is down
or has been reopened since an entry was made, nothing kept is trusted.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.ids import iso_from_epoch, new_id
from gateway.store import Change, Doc, Documents
from gateway.store.follow import FeedGuard, Follower

log = logging.getLogger("gateway.auth")

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "jti", "iat", "exp"]


#: Longer than any token this server issues: refused before any work is done on it.
MAX_TOKEN = 4096


def claims_problem(claims: dict[str, Any]) -> str | None:
    """What is wrong with the types of a signed token's claims (None when nothing is).

    PyJWT accepts an ``exp`` or ``iat`` given as a numeric string; this server issues
    integers only, and compares them with the clock, so anything else is refused.
    """
    for name in ("sub", "jti"):
        if not isinstance(claims.get(name), str):
            return f"claim '{name}' must be a string"
    for name in ("iat", "exp"):
        value = claims.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"claim '{name}' must be an integer"
    return None


class InvalidToken(Exception):
    """A token that must be refused; ``reason`` is one of missing, malformed, expired, revoked."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_or_create_secret(path: str) -> bytes:
    """The signing secret kept in ``path``, created (mode 0600) on first use."""
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
        if len(secret) >= 32:
            return secret
        raise ValueError(f"signing secret in {path} is shorter than 32 bytes")
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    log.info("created a new token signing secret in %s", path)
    return secret


@dataclass
class Identity:
    """Who presented a valid token: the account, and the token's stored record."""

    account: Doc
    token: Doc


class Tokens:
    """Issues and checks the API's bearer tokens."""

    #: Decoded tokens kept; a client sends the same token with every request.
    DECODED_CACHE = 10_000
    #: Verified identities kept (while the feeds that invalidate them are live).
    IDENTITY_CACHE = 10_000

    def __init__(self, store: Documents, secret: bytes, ttl: int) -> None:
        self.store = store
        self.secret = secret
        self.ttl = ttl
        # token -> claims of tokens whose signature and claims checked out. Safe to keep: the
        # token string and the secret never change, so neither does that verdict. Expiry is
        # checked against the clock on every use, revocation against the store in verify().
        self._decoded: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        # jti -> the identity verified from the store, trusted only while every watched feed is live
        # and has not been reopened since (the guard): a reopened feed may have missed changes.
        self._identities: collections.OrderedDict[str, Identity] = collections.OrderedDict()
        # a verify whose store reads straddle an invalidation keeps nothing
        self._guard = FeedGuard(self._identities.clear)

    def watch(self, feeds: list[Follower]) -> None:
        """Keep verified identities, dropped on these followers' changes to ``tokens`` and ``accounts``
        (before :meth:`Follower.start`; their other readers see each change after this cache does)."""
        self._guard.feeds = feeds
        for feed in feeds:
            feed.add("token cache", self._changed, first=True)

    async def _changed(self, change: Change) -> None:
        if change.old is None:
            return  # a new token or account: nothing kept can be about it
        if change.table == "tokens":
            self.forget(change.old["id"])
        elif change.table == "accounts":
            self.forget_account(change.old["id"])

    def forget(self, token_id: str) -> None:
        """Drop what is kept about one token (revoked here or elsewhere)."""
        self._guard.invalidated()
        self._identities.pop(token_id, None)

    def forget_account(self, account_id: str) -> None:
        """Drop what is kept about every token of an account (changed or deleted here or elsewhere)."""
        self._guard.invalidated()
        for token_id in [t for t, i in self._identities.items() if i.token["owner"] == account_id]:
            del self._identities[token_id]

    async def revoke(self, token_id: str) -> Doc | None:
        """Delete a token's record: refused from now on, here at once; the record, or None."""
        try:
            return await self.store.delete("tokens", token_id)
        finally:
            self.forget(token_id)

    async def issue(self, account_id: str, ttl: int | None = None, **info: Any) -> tuple[str, Doc]:
        """A new signed token for the account, and its stored record."""
        issued = int(time.time())
        expires = issued + (ttl or self.ttl)
        record = {
            "id": new_id(),
            "owner": account_id,
            "created": iso_from_epoch(issued),
            "expires": iso_from_epoch(expires),
            "exp": expires,
            **info,
        }
        await self.store.insert("tokens", record)
        claims = {"sub": account_id, "jti": record["id"], "iat": issued, "exp": expires}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), record

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a well-signed, unexpired token with every claim; raises :class:`InvalidToken`."""
        if not token:
            raise InvalidToken("missing", "No token given")
        if not (token.isascii() and token.isprintable()) or len(token) > MAX_TOKEN:
            raise InvalidToken("malformed", "Invalid token: not a JWT")
        claims = self._decoded.get(token)
        if claims is not None:
            if claims["exp"] <= time.time():  # as PyJWT judges it, with no leeway
                del self._decoded[token]
                raise InvalidToken("expired", "Token expired")
            self._decoded.move_to_end(token)
            return claims
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired", "Token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed", f"Invalid token: {exc}") from None
        problem = claims_problem(claims)
        if problem:
            raise InvalidToken("malformed", f"Invalid token: {problem}")
        self._decoded[token] = claims
        if len(self._decoded) > self.DECODED_CACHE:
            self._decoded.popitem(last=False)
        return claims

    async def verify(self, token: str) -> Identity:
        """The account and record of a token that is valid right now; raises :class:`InvalidToken`.

        Handlers must not change the documents of the identity: it may be shared by later requests.
        """
        claims = self.decode(token)
        token_id: str = claims["jti"]
        trusted = self._guard.trusted()
        if trusted:
            kept = self._identities.get(token_id)
            if kept is not None and kept.token["owner"] == claims["sub"]:
                self._identities.move_to_end(token_id)
                return kept
        invalidations = self._guard.invalidations
        record = await self.store.get("tokens", token_id)
        if record is None or record["owner"] != claims["sub"]:
            raise InvalidToken("revoked", "Token revoked")
        account = await self.store.get("accounts", record["owner"])
        if account is None:
            raise InvalidToken("revoked", "Account deleted")
        identity = Identity(account, record)
        if trusted and self._guard.trusted() and invalidations == self._guard.invalidations:
            self._identities[token_id] = identity
            if len(self._identities) > self.IDENTITY_CACHE:
                self._identities.popitem(last=False)
        return identity
