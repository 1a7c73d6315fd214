"""Delivery status on the socket: ``deferred`` and ``failed`` events beside ``delivery`` and ``receipt``,
and the richer event payloads ``subscribe`` can ask for with ``detail``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.stores import store_option
from tests.conftest import Api, api_for, settled
from tests.peers import Relay
from tests.sockjs_clients import next_event, subscribed




@pytest.mark.parametrize("backend", ["sqlite", "rethinkdb"])
@pytest.mark.gen_test(timeout=30)
async def test_a_refused_attempt_is_deferred_then_delivered(start_gateway: Any, relay: Relay, backend: str) -> None:
    relay.refuse = ["451 4.3.0 greylisted, try later"]
    gateway = await start_gateway(relay=relay.url, delivery_backoff=0.05, **store_option(backend))
    api = api_for(gateway)
    _, token = await api.register("alice")
    client = await subscribed("websocket", api.base_url, token)
    try:
        sent = (await api.post("/emails", {"to": ["dan@example.org"], "subject": "Hi", "text": "x"}, token=token)).json["email"]
        deferred = await next_event(client)
        assert deferred["type"] == "deferred" and deferred["id"] == sent["id"] and deferred["name"] == "Hi"
        assert (deferred["attempt"], deferred["reply"]) == (1, {"code": 451, "text": "4.3.0 greylisted, try later"})
        assert deferred["next_attempt"].endswith("Z") and deferred["next_attempt"] > sent["created"]
        assert deferred["recipients"] == [{"recipient": "dan@example.org", "code": 451,
                                           "text": "4.3.0 greylisted, try later", "permanent": False}]
        delivery = await next_event(client)
        assert (delivery["type"], delivery["id"]) == ("delivery", sent["id"])
        assert gateway.store is not None
        key = gateway.store.cursor_key
        assert key(delivery["cursor"]) > key(deferred["cursor"])
    finally:
        await client.close()
    assert len(relay.received) == 1


@pytest.mark.parametrize("backend", ["sqlite", "rethinkdb"])
@pytest.mark.gen_test(timeout=30)
async def test_delivery_that_gives_up_is_failed_with_a_reason_per_recipient(start_gateway: Any, relay: Relay,
                                                                            backend: str) -> None:
    relay.refuse = ["451 4.3.0 try later", "451 4.3.0 still busy"]
    gateway = await start_gateway(relay=relay.url, delivery_attempts=2, delivery_backoff=0.05, **store_option(backend))
    api = api_for(gateway)
    _, token = await api.register("alice")
    client = await subscribed("xhr-streaming", api.base_url, token, events=["failed", "deferred"])
    try:
        sent = (await api.post("/emails", {"to": ["dan@example.org", "nobody@localhost"], "subject": "Hi", "text": "x"},
                               token=token)).json["email"]
        deferred = await next_event(client)
        assert (deferred["type"], deferred["attempt"], deferred["reply"]["code"]) == ("deferred", 1, 451)
        failed = await next_event(client)
        assert (failed["type"], failed["id"], failed["attempt"]) == ("failed", sent["id"], 2)
        by_recipient = {f["recipient"]: f for f in failed["recipients"]}
        assert by_recipient["dan@example.org"] == {"recipient": "dan@example.org", "code": 451,
                                                   "text": "4.3.0 still busy", "permanent": False}
        assert by_recipient["nobody@localhost"]["permanent"] is True
        assert by_recipient["nobody@localhost"]["text"] == "no such local account"
        assert "dan@example.org: 451 4.3.0 still busy" in failed["reason"]
    finally:
        await client.close()
    await settled(gateway)
    email = (await api.get(f"/emails/{sent['id']}", token=token)).json["email"]
    assert email["status"] == "failed" and email["failures"] == failed["recipients"]


@pytest.mark.gen_test(timeout=30)
async def test_status_events_replay_on_resume(start_gateway: Any, relay: Relay) -> None:
    relay.refuse = ["451 4.3.0 try later"]
    gateway = await start_gateway(relay=relay.url, delivery_attempts=1)
    api = api_for(gateway)
    _, token = await api.register("alice")
    client = await subscribed("websocket", api.base_url, token)
    try:
        await api.post("/emails", {"to": ["dan@example.org"], "subject": "Hi", "text": "x"}, token=token)
        failed = await next_event(client)
        assert failed["type"] == "failed"
    finally:
        await client.close()
    again = await subscribed("websocket", api.base_url, token, since="0")
    try:
        assert await next_event(again) == failed
    finally:
        await again.close()


async def two_accounts(api: Api) -> tuple[str, str]:
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    return alice, bob


@pytest.mark.gen_test(timeout=30)
async def test_detail_message_carries_what_a_row_shows(api: Api) -> None:
    alice, bob = await two_accounts(api)
    summary = await subscribed("websocket", api.base_url, bob)
    message = await subscribed("websocket", api.base_url, bob, detail="message")
    full = await subscribed("xhr-polling", api.base_url, bob, detail="full")
    try:
        body = "Shall we meet at noon?\n\nThe usual place.  " + "x" * 300
        await api.post("/emails", {"to": ["bob@localhost"], "cc": ["carol@example.org"], "subject": "Lunch",
                                   "text": body, "html": "<p>Shall we</p>"}, token=alice)
        plain, rich, whole = await next_event(summary), await next_event(message), await next_event(full)
        assert set(plain) == {"type", "id", "name", "thread", "labels", "cursor"}
        base = {k: rich[k] for k in plain}
        assert base == plain and plain["type"] == "receipt"
        assert (rich["from"], rich["to"], rich["cc"], rich["subject"]) == (
            "alice@localhost", ["bob@localhost"], ["carol@example.org"], "Lunch")
        assert rich["snippet"].startswith("Shall we meet at noon? The usual place. xxx") and len(rich["snippet"]) == 200
        assert rich["date"].endswith("Z") and rich["attachments"] == 0 and "size" in rich
        assert "text" not in rich and "html" not in rich
        assert whole == {**rich, "text": body, "html": "<p>Shall we</p>"}
    finally:
        for client in (summary, message, full):
            await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_detail_is_refused(api: Api) -> None:
    _, token = await api.register("alice")
    from tests.sockjs_clients import connect
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token, "detail": "everything", "id": "s1"})
        reply = await client.recv()
        assert reply == {"type": "error", "id": "s1", "code": "invalid_field",
                         "error": "Field 'detail' must be one of: summary, message, full"}
    finally:
        await client.close()
