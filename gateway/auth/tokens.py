"""Bearer tokens: JWTs (HS256) with a stored record per ``jti``, and the secret that signs them.

A token is valid only while its signature checks out, every claim is present,
it has not expired, and its record is still in the ``tokens`` table: deleting
the record revokes it everywhere at once.
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
from gateway.store import Doc, Documents

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

    def __init__(self, store: Documents, secret: bytes, ttl: int) -> None:
        self.store = store
        self.secret = secret
        self.ttl = ttl
        # token -> claims of tokens whose signature and claims checked out. Safe to keep: the
        # token string and the secret never change, so neither does that verdict. Expiry is
        # checked against the clock on every use, revocation against the store in verify().
        self._decoded: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()

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
        """The account and record of a token that is valid right now; raises :class:`InvalidToken`."""
        claims = self.decode(token)
        record = await self.store.get("tokens", str(claims["jti"]))
        if record is None or record["owner"] != claims["sub"]:
            raise InvalidToken("revoked", "Token revoked")
        account = await self.store.get("accounts", record["owner"])
        if account is None:
            raise InvalidToken("revoked", "Account deleted")
        return Identity(account, record)
