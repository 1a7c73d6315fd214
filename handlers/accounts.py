"""Accounts: register, read, update and delete your own (the rules are :class:`gateway.auth.Accounts`')."""

from __future__ import annotations

from gateway.auth import public_account
from handlers.base import APIHandler, Field


class AccountsHandler(APIHandler):
    """``POST /accounts``: register."""

    public_methods = frozenset({"POST"})

    async def post(self) -> None:
        body = self.body_fields({
            "username": Field(str, required=True, max_length=64),
            "password": Field(str, required=True, max_length=256),
            "display_name": Field(str, max_length=128),
        })
        account = await self.state.accounts.register(body["username"], body["password"], body.get("display_name"))
        self.reply(201, account=public_account(account))


class MeHandler(APIHandler):
    """``/accounts/me``: the caller's own account."""

    direct_methods = frozenset({"GET"})

    def get(self) -> None:
        self.reply(account=public_account(self.account))

    async def put(self) -> None:
        body = self.body_fields({
            "display_name": Field(str, max_length=128),
            "password": Field(str, max_length=256),
            "current_password": Field(str, max_length=256),
        }, partial=True)
        account = await self.state.accounts.update(self.auth, body.get("display_name"), body.get("password"),
                                                   body.get("current_password"))
        self.reply(account=public_account(account))

    async def delete(self) -> None:
        await self.state.accounts.delete(self.account)
        self.reply(message="Account deleted")


routes = [(r"/accounts", AccountsHandler), (r"/accounts/me", MeHandler)]
