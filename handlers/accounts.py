"""Accounts: register, read, update and delete your own."""

from __future__ import annotations

import re

from gateway.ids import new_id, now_iso
from gateway.mailbox import delete_account, public_account
from gateway.store import Conflict, Query
from handlers.base import APIError, APIHandler, Field

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,30}[a-z0-9]$")
COMMON_PASSWORDS = frozenset(
    {"password", "password1", "12345678", "123456789", "1234567890", "qwertyui", "qwerty123",
     "iloveyou", "letmein1", "abcdefgh", "abc12345", "passw0rd", "football", "baseball", "welcome1"}
)


def password_problem(password: str, username: str) -> str | None:
    """Why a password is too weak, or None."""
    if len(password) < 8:
        return "must be at least 8 characters long"
    if len(set(password)) < 4:
        return "must use at least 4 different characters"
    if password.lower() in COMMON_PASSWORDS or (username and username in password.lower()):
        return "is too easy to guess"
    return None


def username_problem(name: str) -> str | None:
    if not USERNAME.fullmatch(name):
        return "must be 3-32 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    return None


class AccountsHandler(APIHandler):
    """``POST /accounts``: register."""

    public_methods = frozenset({"POST"})

    async def post(self) -> None:
        body = self.body_fields({
            "username": Field(str, required=True, max_length=64),
            "password": Field(str, required=True, max_length=256),
            "display_name": Field(str, max_length=128),
        })
        username = body["username"].strip().lower()
        problem = username_problem(username)
        if problem:
            raise APIError(400, "invalid_field", f"Field 'username' {problem}")
        problem = password_problem(body["password"], username)
        if problem:
            raise APIError(400, "weak_password", f"Password {problem}")
        account_id = new_id()
        try:  # the username table's primary key makes the name unique, on every backend
            await self.store.insert("usernames", {"id": username, "account": account_id})
        except Conflict:
            raise APIError(409, "username_taken", f"Username '{username}' is taken") from None
        now = now_iso()
        account = {
            "id": account_id,
            "username": username,
            "address": f"{username}@{self.state.config.mail_domain}",
            "display_name": body.get("display_name", username),
            "password_hash": await self.state.passwords.hash(body["password"]),
            "created": now,
            "updated": now,
        }
        await self.store.insert("accounts", account)
        self.reply(201, account=public_account(account))


class MeHandler(APIHandler):
    """``/accounts/me``: the caller's own account."""

    def get(self) -> None:
        self.reply(account=public_account(self.account))

    async def put(self) -> None:
        body = self.body_fields({
            "display_name": Field(str, max_length=128),
            "password": Field(str, max_length=256),
            "current_password": Field(str, max_length=256),
        }, partial=True)
        changes: dict[str, str] = {}
        if "display_name" in body:
            changes["display_name"] = body["display_name"]
        if "password" in body:
            if "current_password" not in body:
                raise APIError(400, "missing_field", "Missing field: current_password (needed to change the password)")
            if not await self.state.passwords.verify(self.account["password_hash"], body["current_password"]):
                raise APIError(403, "wrong_password", "current_password is wrong")
            problem = password_problem(body["password"], self.account["username"])
            if problem:
                raise APIError(400, "weak_password", f"Password {problem}")
            changes["password_hash"] = await self.state.passwords.hash(body["password"])
            # a new password shuts out whoever had the old one: every other token is revoked
            for token in await self.store.find("tokens", Query({"owner": self.account["id"]})):
                if token["id"] != self.auth.token["id"]:
                    await self.store.delete("tokens", token["id"])
        elif "current_password" in body:
            raise APIError(400, "invalid_field", "current_password is only used with password")
        changes["updated"] = now_iso()
        account = await self.store.update("accounts", self.account["id"], changes)
        self.reply(account=public_account(account or self.account))

    async def delete(self) -> None:
        await delete_account(self.store, self.account)
        self.reply(message="Account deleted")


routes = [(r"/accounts", AccountsHandler), (r"/accounts/me", MeHandler)]
