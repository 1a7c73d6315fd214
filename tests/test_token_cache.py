"""Verified tokens kept in memory, and the three rules that keep that safe (docs/api.md, "Token checks"):

1. a revocation, password change or account deletion takes effect on the process that made it
   before its response is sent (here the feeds are held back, so only that can make it so);
2. on another process it takes effect once the tokens/accounts feeds report it;
3. while a feed is down, nothing kept is trusted.

Inbound SMTP keeps its recipients' accounts by the same rules (gateway/mail/recipients.py): each
test checks them with ``RCPT`` too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.app.server import Gateway
from tests import rethinkdb_server
from tests.conftest import PASSWORD, Api, api_for, restart, wait_ready, wait_until
from tests.sockjs_clients import Client, connect, subscribed
from tests.test_smtp_pipelining import replies


class SMTPClient:
    """A raw SMTP conversation with a gateway: each command's reply, as :func:`replies` reads it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, gateway: Gateway) -> SMTPClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.smtp_port)
        client = cls(reader, writer)
        assert (await replies(reader, 1))[0].startswith("220")
        assert (await client.send("EHLO client.example")).startswith("250")
        return client

    async def send(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return (await replies(self.reader, 1))[0]

    async def rcpt(self, *addresses: str) -> list[str]:
        """The reply codes to ``RCPT`` of each address, in a new transaction (RSET ends it)."""
        assert (await self.send("RSET")).startswith("250")
        assert (await self.send("MAIL FROM:<ann@example.org>")).startswith("250")
        return [(await self.send(f"RCPT TO:<{address}>"))[:3] for address in addresses]

    async def close(self) -> None:
        await self.send("QUIT")
        self.writer.close()


def hold_feeds(gateway: Gateway) -> asyncio.Event:
    """Hold the tokens and accounts feeds back (a reader ahead of every other waits) until the event is set:
    a feed as slow as it can be."""
    release = asyncio.Event()

    async def wait(_: Any) -> None:
        await release.wait()

    for follower in gateway.registry.followers:
        follower.add("held back", wait, first=True)
    return release


async def status_both_ways(api: Api, tunnel: Client, token: str) -> tuple[int, int]:
    """``GET /accounts/me`` with ``token`` over HTTP and through the tunnel: the two statuses."""
    http = (await api.get("/accounts/me", token=token)).status
    tunneled = (await tunnel.request("GET", "/accounts/me", token=token))["status"]
    return http, tunneled


async def login(api: Api, username: str, password: str = PASSWORD) -> dict[str, Any]:
    reply = await api.post("/tokens", {"username": username, "password": password})
    assert reply.status == 201, reply.body
    token: dict[str, Any] = reply.json["token"]
    return token


@pytest.mark.gen_test(timeout=30)
async def test_changes_made_here_take_effect_before_the_response(api: Api, gateway: Gateway) -> None:
    _, first = await api.register("alice")
    second, third, fourth = [await login(api, "alice") for _ in range(3)]
    tunnel = await connect("websocket", api.base_url)
    for token in (first, second["value"], third["value"], fourth["value"]):
        assert await status_both_ways(api, tunnel, token) == (200, 200)  # verified once: kept from now on
    smtp = await SMTPClient.connect(gateway)
    assert await smtp.rcpt("alice@localhost") == ["250"]  # found once: kept from now on
    release = hold_feeds(gateway)
    try:
        # revoking another token, over HTTP
        assert (await api.delete(f"/tokens/{second['id']}", token=first)).status == 200
        assert await status_both_ways(api, tunnel, second["value"]) == (401, 401)
        # revoking the token in use, through the tunnel
        assert (await tunnel.request("DELETE", "/tokens", token=third["value"]))["status"] == 200
        assert await status_both_ways(api, tunnel, third["value"]) == (401, 401)
        # a password change shuts out every other token; the caller's own sees the account as it is now
        change = await api.put("/accounts/me", {"password": "a new passphrase 42", "current_password": PASSWORD,
                                                "display_name": "Alice A."}, token=first)
        assert change.status == 200, change.body
        assert await status_both_ways(api, tunnel, fourth["value"]) == (401, 401)
        me = await tunnel.request("GET", "/accounts/me", token=first)
        assert json.loads(me["body"])["account"]["display_name"] == "Alice A."
        # deleting the account: mail for it is refused at once, and its name is free again
        assert (await api.delete("/accounts/me", token=first)).status == 200
        assert await status_both_ways(api, tunnel, first) == (401, 401)
        assert await smtp.rcpt("alice@localhost") == ["550"]
        await api.register("alice")
        assert await smtp.rcpt("alice@localhost") == ["250"]
    finally:
        release.set()
        await tunnel.close()
        await smtp.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_account_deleted_during_an_smtp_transaction_gets_no_copy(api: Api, gateway: Gateway) -> None:
    alice, alice_token = await api.register("alice")
    _, bob_token = await api.register("bob")
    smtp = await SMTPClient.connect(gateway)
    release = hold_feeds(gateway)  # only the deletion itself can drop what inbound mail keeps
    try:
        assert await smtp.rcpt("alice@localhost", "bob@localhost") == ["250", "250"]
        assert (await smtp.send("DATA")).startswith("354")
        assert (await api.delete("/accounts/me", token=alice_token)).status == 200
        reply = await smtp.send("Subject: during\r\n\r\nhello\r\n.")
        assert reply.startswith("250"), reply
    finally:
        release.set()
        await smtp.close()
    emails = (await api.get("/emails", token=bob_token)).json["emails"]
    assert [e["subject"] for e in emails] == ["during"]
    # nothing of the deleted account's is left behind (no client could ever see or remove it)
    assert await gateway.store.count("emails", {"owner": alice["id"]}) == 0


@pytest.mark.gen_test(timeout=90)
async def test_changes_made_elsewhere_take_effect_when_the_feeds_report_them(start_gateway: Any) -> None:
    url = rethinkdb_server.store_url()
    a = await start_gateway(store=url)
    b = await start_gateway(store=url, secret_file=a.config.secret_file)
    api_a, api_b = api_for(a), api_for(b)
    _, token = await api_a.register("carol")
    other = await login(api_a, "carol")
    tunnel = await connect("websocket", api_b.base_url)
    for value in (token, other["value"]):
        assert await status_both_ways(api_b, tunnel, value) == (200, 200)  # kept at B
    # B's sessions hear of a revocation from the same feed, after B's cache does
    watching = await subscribed("websocket", api_b.base_url, other["value"])
    try:
        assert (await api_a.delete(f"/tokens/{other['id']}", token=token)).status == 200
        ended = await watching.wait_for(lambda m: m.get("type") == "unsubscribed")
        assert ended["reason"] == "revoked"
        assert await status_both_ways(api_b, tunnel, other["value"]) == (401, 401)

        smtp = await SMTPClient.connect(b)
        assert await smtp.rcpt("carol@localhost") == ["250"]  # kept at B
        watching2 = await subscribed("websocket", api_b.base_url, token)
        assert (await api_a.delete("/accounts/me", token=token)).status == 200
        ended = await watching2.wait_for(lambda m: m.get("type") == "unsubscribed")
        assert ended["reason"] == "account_deleted"
        assert await status_both_ways(api_b, tunnel, token) == (401, 401)
        assert await smtp.rcpt("carol@localhost") == ["550"]
        await smtp.close()
        await watching2.close()
    finally:
        await watching.close()
        await tunnel.close()


@pytest.mark.gen_test(timeout=180)
async def test_nothing_kept_is_trusted_while_a_feed_is_down(start_gateway: Any, own_rethinkdb: Any) -> None:
    server = own_rethinkdb
    gateway = await start_gateway(store=server.url)
    api = api_for(gateway)
    _, token = await api.register("dave")
    tunnel = await connect("websocket", api.base_url)
    assert await status_both_ways(api, tunnel, token) == (200, 200)  # kept
    smtp = await SMTPClient.connect(gateway)
    assert await smtp.rcpt("dave@localhost") == ["250"]  # kept

    server.kill()
    await wait_until(lambda: not all(f.live for f in gateway.registry.followers), timeout=30)
    # the account is not read from memory: the store is asked, and it is away
    down = await api.get("/accounts/me", token=token)
    assert (down.status, down.json["code"]) == (503, "store_unavailable")
    tunneled = await tunnel.request("GET", "/accounts/me", token=token)
    assert tunneled["status"] == 503
    assert await smtp.rcpt("dave@localhost") == ["451"]  # try later, not taken on what was kept

    await restart(server)
    await wait_ready(api)
    assert await status_both_ways(api, tunnel, token) == (200, 200)
    assert await smtp.rcpt("dave@localhost") == ["250"]
    await smtp.close()
    await tunnel.close()
