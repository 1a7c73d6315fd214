"""The Python client (gateway/client/) against the real server: requests, errors, events once and in
order across a gateway restart, and token renewal with no gap."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from gateway.app.server import Gateway
from gateway.client import Client, GatewayError
from tests.conftest import PASSWORD, api_for, make_config, wait_until
from tests.peers import free_port
from tests.peers import mail as smtp_mail


async def mail(gateway: Gateway, subject: str, to: str = "alice@localhost") -> None:
    await smtp_mail(gateway.smtp_port, to, subject)


async def next_events(subscription: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events; an AssertionError if the subscription ends first."""
    events = []
    async for event in subscription:
        events.append(event)
        if len(events) == count:
            return events
    raise AssertionError(f"the subscription ended ({subscription.ended}) after {[e['name'] for e in events]}")


async def next_names(subscription: Any, count: int) -> list[str]:
    return [event["name"] for event in await next_events(subscription, count)]


@pytest.mark.gen_test(timeout=30)
async def test_requests_errors_and_events(start_gateway: Any) -> None:
    gateway = await start_gateway()
    async with Client(api_for(gateway).base_url) as client:
        created = await client.request("POST", "/accounts", {"username": "alice", "password": PASSWORD})
        assert created.status == 201 and created.body["account"]["username"] == "alice"
        login = await client.request("POST", "/tokens", {"username": "alice", "password": PASSWORD})
        token = login.body["token"]["value"]
        with pytest.raises(GatewayError) as refused:
            await client.request("GET", "/", headers={"Bad Name": "x"})
        assert refused.value.code == "invalid_headers" and not refused.value.outcome_unknown
        assert (await client.request("GET", "/nowhere")).status == 404
        subscription = await client.subscribe(token)
        assert subscription.cursor is not None
        await mail(gateway, "hello")
        assert await next_names(subscription, 1) == ["hello"]
        with pytest.raises(GatewayError) as bad:
            await client.subscribe("not a token")
        assert bad.value.code == "invalid_token"


@pytest.mark.gen_test(timeout=30)
async def test_status_events_with_detail(start_gateway: Any) -> None:
    gateway = await start_gateway()  # no relay: external mail fails at once
    async with Client(api_for(gateway).base_url) as client:
        await client.request("POST", "/accounts", {"username": "alice", "password": PASSWORD})
        token = (await client.request("POST", "/tokens", {"username": "alice", "password": PASSWORD})).body
        subscription = await client.subscribe(token["token"]["value"], events=["failed"], detail="full")
        headers = {"Authorization": f"Bearer {token['token']['value']}"}
        await client.request("POST", "/emails", {"to": ["dan@example.org"], "subject": "Out", "text": "body"},
                             headers=headers)
        [event] = await next_events(subscription, 1)
        assert (event["type"], event["name"], event["text"]) == ("failed", "Out", "body")
        assert event["recipients"][0]["permanent"] is True


@pytest.mark.gen_test(timeout=60)
async def test_events_once_and_in_order_across_a_gateway_restart(tmp_path: Any) -> None:
    config = make_config(tmp_path, port=free_port(), smtp=f"127.0.0.1:{free_port()}")
    gateway = Gateway(config)
    await gateway.start()
    client = Client(api_for(gateway).base_url, backoff=(0.05, 0.5))
    try:
        await client.start()
        await client.request("POST", "/accounts", {"username": "alice", "password": PASSWORD})
        token = (await client.request("POST", "/tokens", {"username": "alice", "password": PASSWORD})).body
        subscription = await client.subscribe(token["token"]["value"])
        for i in range(5):
            await mail(gateway, f"m{i}")
        assert await next_names(subscription, 5) == [f"m{i}" for i in range(5)]
        await gateway.stop()
        gateway = Gateway(config)  # the same port and data: what a restart is
        await gateway.start()
        for i in range(5, 10):  # at once: some may come before the client is back
            await mail(gateway, f"m{i}")
        assert await next_names(subscription, 5) == [f"m{i}" for i in range(5, 10)]
        await mail(gateway, "last")
        assert await next_names(subscription, 1) == ["last"]
    finally:
        await client.close()
        await gateway.stop()


@pytest.mark.gen_test(timeout=60)
async def test_token_renewal_moves_the_subscription_with_no_gap(start_gateway: Any) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    await api.register("alice")
    short = (await api.post("/tokens", {"username": "alice", "password": PASSWORD, "expires_in": 2})).json
    renewed: list[str] = []

    async def get_token() -> str:
        reply = await api.post("/tokens/renew", {"expires_in": 60}, token=subscription.token)
        renewed.append(reply.json["token"]["value"])
        return renewed[-1]

    async with Client(api.base_url) as client:
        subscription = await client.subscribe(short["token"]["value"], get_token=get_token)
        sent = after = 0
        while after < 3:  # mail flows, each event checked, until three came after the renewal
            await mail(gateway, f"r{sent}")
            assert await next_names(subscription, 1) == [f"r{sent}"]
            sent += 1
            after += 1 if renewed else 0
            assert sent < 1000, "the token was never renewed"
        assert subscription.token == renewed[-1] and subscription.ended is None
        await mail(gateway, "after")
        assert await next_names(subscription, 1) == ["after"]


@pytest.mark.gen_test(timeout=10)
async def test_a_cancelled_request_leaves_no_error_behind_when_the_client_closes(caplog: Any) -> None:
    """A caller that stops waiting (its task cancelled) takes its call with it: closing the client later
    does not fail a future nobody awaits ("Future exception was never retrieved" in the asyncio log)."""
    client = Client(f"http://127.0.0.1:{free_port()}")  # never started: the call waits in the queue
    task = asyncio.ensure_future(client.request("GET", "/accounts/me"))
    await wait_until(lambda: client._queue)  # the task ran up to its wait for the answer
    task.cancel()
    await asyncio.wait([task])  # (not pytest.raises: its traceback would keep the call alive)
    assert task.cancelled()
    del task
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await client.close()
        gc.collect()  # a future is reported when it is freed
    assert not [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
