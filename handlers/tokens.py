"""Tokens: log in, renew, list your live tokens, read one, revoke the one in use or any of yours."""

from __future__ import annotations

import time

from gateway.store import Query, public
from handlers.base import APIError, APIHandler, Field, not_found


def expires_in(ttl: int) -> Field:
    return Field(int, check=lambda v: None if 1 <= v <= ttl else f"must be between 1 and {ttl} seconds")


def token_view(record: dict, current_id: str | None = None) -> dict:
    view = public(record, "exp")
    if current_id is not None:
        view["current"] = record["id"] == current_id
    return view


class TokensHandler(APIHandler):
    """``/tokens``: ``POST`` logs in; ``GET`` lists; ``DELETE`` revokes the token in use."""

    public_methods = frozenset({"POST"})
    direct_methods = frozenset({"GET"})

    async def post(self) -> None:
        body = self.body_fields({
            "username": Field(str, required=True, max_length=64),
            "password": Field(str, required=True, max_length=256),
            "expires_in": expires_in(self.state.config.token_ttl),
        })
        account = await self.state.accounts.check_password(body["username"], body["password"])
        if account is None:
            raise APIError(401, "invalid_credentials", "Wrong username or password", {"WWW-Authenticate": "Bearer"})
        await self.issue(account["id"], body.get("expires_in"))

    async def issue(self, account_id: str, ttl: int | None) -> None:
        """Answer 201 with a new token for the account (its value is only ever shown here)."""
        token, record = await self.state.tokens.issue(
            account_id, ttl, ip=self.request.remote_ip, user_agent=self.request.headers.get("User-Agent", "")[:256],
        )
        self.reply(201, token={**token_view(record), "value": token})

    async def get(self) -> None:
        now = time.time()
        records = await self.store.find("tokens", Query({"owner": self.account["id"]}, [("created", True)]))
        live = [token_view(r, self.auth.token["id"]) for r in records if r["exp"] > now]
        self.set_header("X-Total-Count", str(len(live)))
        self.reply(tokens=live)

    async def delete(self) -> None:
        await self.state.tokens.revoke(self.auth.token["id"])
        self.reply(message="Token revoked")


class RenewHandler(TokensHandler):
    """``POST /tokens/renew``: a new token for the bearer's account, without the password.

    The token in use stays valid until its own expiry (revoke it with ``DELETE /tokens``
    once the new one is in use), so a client can switch with no gap.
    """

    public_methods: frozenset[str] = frozenset()
    SUPPORTED_METHODS = ("POST", "OPTIONS")

    async def post(self) -> None:
        body = self.body_fields({"expires_in": expires_in(self.state.config.token_ttl)}) \
            if self.request.body.strip() else {}
        await self.issue(self.account["id"], body.get("expires_in"))


class TokenHandler(APIHandler):
    """``/tokens/{id}``: read or revoke one of your tokens."""

    async def get(self, token_id: str) -> None:
        record = await self.owned("tokens", token_id, "Token")
        if record["exp"] <= time.time():
            raise not_found("Token")  # as in the list: only live tokens
        self.reply(token=token_view(record, self.auth.token["id"]))

    async def delete(self, token_id: str) -> None:
        record = await self.owned("tokens", token_id, "Token")
        await self.state.tokens.revoke(record["id"])
        self.reply(message="Token revoked")


routes = [(r"/tokens", TokensHandler), (r"/tokens/renew", RenewHandler), (r"/tokens/([^/]+)", TokenHandler)]
