"""Tokens: log in, list your live tokens, revoke the one in use or any of yours."""

from __future__ import annotations

import time

from gateway.store import Query, public
from handlers.base import APIError, APIHandler, Field


def token_view(record: dict, current_id: str | None = None) -> dict:
    view = public(record, "exp")
    if current_id is not None:
        view["current"] = record["id"] == current_id
    return view


class TokensHandler(APIHandler):
    """``/tokens``: ``POST`` logs in; ``GET`` lists; ``DELETE`` revokes the token in use."""

    public_methods = frozenset({"POST"})

    async def post(self) -> None:
        ttl = self.state.config.token_ttl
        body = self.body_fields({
            "username": Field(str, required=True, max_length=64),
            "password": Field(str, required=True, max_length=256),
            "expires_in": Field(int, check=lambda v: None if 1 <= v <= ttl else f"must be between 1 and {ttl} seconds"),
        })
        account = await self.state.accounts.check_password(body["username"], body["password"])
        if account is None:
            raise APIError(401, "invalid_credentials", "Wrong username or password", {"WWW-Authenticate": "Bearer"})
        token, record = await self.state.tokens.issue(
            account["id"], body.get("expires_in"), ip=self.request.remote_ip,
            user_agent=self.request.headers.get("User-Agent", "")[:256],
        )
        self.reply(201, token={**token_view(record), "value": token})

    async def get(self) -> None:
        now = time.time()
        records = await self.store.find("tokens", Query({"owner": self.account["id"]}, [("created", True)]))
        live = [token_view(r, self.auth.token["id"]) for r in records if r["exp"] > now]
        self.set_header("X-Total-Count", str(len(live)))
        self.reply(tokens=live)

    async def delete(self) -> None:
        await self.store.delete("tokens", self.auth.token["id"])
        self.reply(message="Token revoked")


class TokenHandler(APIHandler):
    """``DELETE /tokens/{id}``: revoke one of your tokens."""

    async def delete(self, token_id: str) -> None:
        record = await self.owned("tokens", token_id, "Token")
        await self.store.delete("tokens", record["id"])
        self.reply(message="Token revoked")


routes = [(r"/tokens", TokensHandler), (r"/tokens/([^/]+)", TokenHandler)]
