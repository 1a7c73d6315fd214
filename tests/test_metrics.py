"""/metrics (Prometheus text) and the health probes, as a scraper and a load balancer see them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import api_for, settled
from tests.peers import Relay, free_port, in_thread, smtp_send
from tests.sockjs_clients import connect, next_event, subscribed


def value(text: str, name: str, **labels: str) -> float:
    """The sample of metric ``name`` with exactly these labels (0 when there is none)."""
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


@pytest.mark.gen_test(timeout=30)
async def test_metrics_count_requests_sessions_events_and_deliveries(start_gateway: Any, relay: Relay) -> None:
    gateway = await start_gateway(relay=relay.url)
    api = api_for(gateway)
    _, token = await api.register("alice")
    await api.get("/accounts/me", token=token)
    websocket = await subscribed("websocket", api.base_url, token)
    polling = await connect("xhr-polling", api.base_url)
    try:
        assert (await websocket.request("GET", "/accounts/me", token=token))["status"] == 200
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["alice@localhost"], "Subject: m\r\n\r\nb")
        await next_event(websocket)
        await api.post("/emails", {"to": ["dan@example.org"], "text": "t"}, token=token)
        await settled(gateway)
        text = (await api.get("/metrics", check_spec=False)).body.decode()
        assert value(text, "gateway_requests_total", route="MeHandler", method="GET", status="200", via="http") == 1
        assert value(text, "gateway_requests_total", route="MeHandler", method="GET", status="200", via="tunnel") == 1
        assert value(text, "gateway_request_seconds_count", route="MeHandler", via="tunnel") == 1
        assert value(text, "gateway_sessions", transport="websocket") == 1
        assert value(text, "gateway_sessions", transport="xhr-polling") == 1
        assert value(text, "gateway_subscriptions") == 1
        assert value(text, "gateway_events_delivered_total", kind="receipt") == 1
        assert value(text, "gateway_event_lag_seconds_count") >= 1
        assert value(text, "gateway_delivery_attempts_total") == 1 and value(text, "gateway_delivery_queue") == 0
        for feed in ("event feed", "delivery queue feed", "token feed", "account feed"):
            assert value(text, "gateway_feed_live", feed=feed) == 1, feed
        # store operations, each counted once (the inserts a backend makes of insert_with are not counted again)
        stored = {op: value(text, "gateway_store_seconds_count", backend="sqlite", operation=op)
                  for op in ("get", "insert", "insert_with", "update", "find", "count", "latest_event_cursor")}
        assert all(stored.values()), stored
        assert value(text, "gateway_store_seconds_bucket", backend="sqlite", operation="get", le="+Inf") \
            == stored["get"]
    finally:
        await websocket.close()
        await polling.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_event_sent_to_three_sessions_counts_three_deliveries(start_gateway: Any) -> None:
    """The delivered-events counter is added to once per event routed, by the sessions it went to."""
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    sessions = [await subscribed("websocket", api.base_url, token) for _ in range(3)]
    try:
        for n in (1, 2):
            await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["alice@localhost"], f"Subject: {n}\r\n\r\nb")
            for session in sessions:
                assert (await next_event(session))["name"] == str(n)
            text = (await api.get("/metrics", check_spec=False)).body.decode()
            assert value(text, "gateway_events_delivered_total", kind="receipt") == 3 * n
    finally:
        for session in sessions:
            await session.close()


@pytest.mark.gen_test(timeout=30)
async def test_metrics_on_a_listener_of_their_own(start_gateway: Any) -> None:
    port = free_port()
    gateway = await start_gateway(metrics=f"127.0.0.1:{port}")
    api = api_for(gateway)
    assert (await api.get("/metrics", check_spec=False)).status == 404  # not on the API's listener
    reply = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/metrics")
    assert reply.code == 200 and b"gateway_sessions" in reply.body
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.gen_test(timeout=30)
async def test_liveness_and_readiness(start_gateway: Any) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    assert (await api.get("/health/live")).json["status"] == "ok"
    ready = await api.get("/health/ready")
    assert ready.status == 200 and all(ready.json["feeds"].values()) and len(ready.json["feeds"]) == 6
    await gateway.dispatcher.feed.stop()  # a feed down, as while the store is away
    down = await api.get("/health/ready")
    assert (down.status, down.json["code"], down.json["feeds"]["event feed"]) == (503, "not_ready", False)
    assert (await api.get("/health/live")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_store_operations_are_timed_once_each(tmp_path: Any) -> None:
    """Every store operation reports its time once: one a backend makes of another (SQLite's
    insert_with inserts one document after another) is not counted again."""
    from gateway.store import store_from_url
    from gateway.store.timing import time_operations

    store = store_from_url(f"sqlite:{tmp_path}/timed.db")
    await store.open()
    seen: list[tuple[str, float]] = []
    time_operations(store, lambda operation: lambda seconds: seen.append((operation, seconds)))
    try:
        await store.insert_with("emails", {"id": "e1", "owner": "a", "direction": "in"},
                                ("threads", {"id": "t1", "owner": "a"}))
        await store.get("emails", "e1")
        assert [operation for operation, _ in seen] == ["insert_with", "get"]
    finally:
        await store.close()
