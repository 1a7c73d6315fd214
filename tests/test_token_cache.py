"""Verified tokens kept in memory, and the three rules that keep that safe (docs/api.md, "Token checks"):

1. a revocation, password change or account deletion takes effect on the process that made it
   before its response is sent (here the feeds are held back, so only that can make it so);
2. on another process it takes effect once the tokens/accounts feeds report it;
3. while a feed is down, nothing kept is trusted.
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
        # deleting the account
        assert (await api.delete("/accounts/me", token=first)).status == 200
        assert await status_both_ways(api, tunnel, first) == (401, 401)
    finally:
        release.set()
        await tunnel.close()


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

        watching2 = await subscribed("websocket", api_b.base_url, token)
        assert (await api_a.delete("/accounts/me", token=token)).status == 200
        ended = await watching2.wait_for(lambda m: m.get("type") == "unsubscribed")
        assert ended["reason"] == "account_deleted"
        assert await status_both_ways(api_b, tunnel, token) == (401, 401)
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

    server.kill()
    await wait_until(lambda: not all(f.live for f in gateway.registry.followers), timeout=30)
    # the account is not read from memory: the store is asked, and it is away
    down = await api.get("/accounts/me", token=token)
    assert (down.status, down.json["code"]) == (503, "store_unavailable")
    tunneled = await tunnel.request("GET", "/accounts/me", token=token)
    assert tunneled["status"] == 503

    await restart(server)
    await wait_ready(api)
    assert await status_both_ways(api, tunnel, token) == (200, 200)
    await tunnel.close()
