"""Accounts: the rules of registering, logging in, changing an account, and deleting it with all it owns."""

from __future__ import annotations

import re
from typing import Callable, Sequence

from gateway.auth.passwords import Passwords, password_problem
from gateway.auth.tokens import Identity, Tokens
from gateway.errors import Forbidden, Invalid, Taken
from gateway.ids import new_id, now_iso
from gateway.store import OWNED_TABLES, Conflict, Doc, Documents, Query

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,30}[a-z0-9]$")


def username_problem(name: str) -> str | None:
    if not USERNAME.fullmatch(name):
        return "must be 3-32 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    return None


def public_account(account: Doc) -> Doc:
    """An account as clients see it: no password hash."""
    view = account.copy()
    view.pop("password_hash", None)
    return view


class Accounts:
    """Registering, logging in, changing and deleting accounts, with ``user@domain`` addresses."""

    def __init__(self, store: Documents, passwords: Passwords, tokens: Tokens, domain: str,
                 forget: Sequence[Callable[[str], None]] = ()) -> None:
        self.store = store
        self.passwords = passwords
        self.tokens = tokens
        self.domain = domain
        #: Called with an account's id once it is deleted, before the response: other things this
        #: process keeps about accounts (inbound mail's recipients) drop it, as the token cache does.
        self.forget = list(forget)

    async def register(self, username: str, password: str, display_name: str | None = None) -> Doc:
        """A new account; :class:`Invalid` for a bad name or weak password, :class:`Taken` for a name in use."""
        username = username.strip().lower()
        problem = username_problem(username)
        if problem:
            raise Invalid("invalid_field", f"Field 'username' {problem}")
        problem = password_problem(password, username)
        if problem:
            raise Invalid("weak_password", f"Password {problem}")
        account_id = new_id()
        try:  # the username table's primary key makes the name unique, on every backend
            await self.store.insert("usernames", {"id": username, "account": account_id})
        except Conflict:
            raise Taken("username_taken", f"Username '{username}' is taken") from None
        now = now_iso()
        account = {
            "id": account_id,
            "username": username,
            "address": f"{username}@{self.domain}",
            "display_name": username if display_name is None else display_name,
            "password_hash": await self.passwords.hash(password),
            "created": now,
            "updated": now,
        }
        await self.store.insert("accounts", account)
        return account

    async def check_password(self, username: str, password: str) -> Doc | None:
        """The account whose name and password these are, or None (taking as long either way)."""
        entry = await self.store.get("usernames", username.strip().lower())
        account = await self.store.get("accounts", entry["account"]) if entry else None
        valid = await self.passwords.verify(account["password_hash"] if account else None, password)
        return account if account and valid else None

    async def update(self, caller: Identity, display_name: str | None = None, password: str | None = None,
                     current_password: str | None = None) -> Doc:
        """Change the caller's display name and/or password; the account as it is now.

        A new password needs the current one, and shuts out whoever had the old
        one: every other token of the account is revoked.
        """
        account = caller.account
        changes: dict[str, str] = {}
        if display_name is not None:
            changes["display_name"] = display_name
        if password is not None:
            if current_password is None:
                raise Invalid("missing_field", "Missing field: current_password (needed to change the password)")
            if not await self.passwords.verify(account["password_hash"], current_password):
                raise Forbidden("wrong_password", "current_password is wrong")
            problem = password_problem(password, account["username"])
            if problem:
                raise Invalid("weak_password", f"Password {problem}")
            changes["password_hash"] = await self.passwords.hash(password)
            for token in await self.store.find("tokens", Query({"owner": account["id"]})):
                if token["id"] != caller.token["id"]:
                    await self.tokens.revoke(token["id"])
        elif current_password is not None:
            raise Invalid("invalid_field", "current_password is only used with password")
        changes["updated"] = now_iso()
        try:
            return await self.store.update("accounts", account["id"], changes) or account
        finally:
            self.tokens.forget_account(account["id"])  # kept identities hold the account as it was

    async def delete(self, account: Doc) -> None:
        """Remove an account and everything it owns.

        The account record goes first: every token of it is refused from that
        moment (token checks need the account), and sessions bound to it hear
        ``account_deleted`` rather than ``revoked``.
        """
        try:
            await self.store.delete("accounts", account["id"])
        finally:
            self.tokens.forget_account(account["id"])
            for forget in self.forget:
                forget(account["id"])
        for table in OWNED_TABLES:
            await self.store.delete_where(table, {"owner": account["id"]})
        await self.store.delete("usernames", account["username"])
