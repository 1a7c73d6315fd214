"""POST /emails with an Idempotency-Key: a send retried after an unknown outcome is stored and sent
once, over HTTP and the tunnel alike, on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import api_for, settled
from tests.stores import store_option
from tests.peers import Relay
from tests.sockjs_clients import connect


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("backend", ["sqlite", "rethinkdb"])
async def test_a_repeated_send_is_stored_and_sent_once(start_gateway: Any, relay: Relay, backend: str) -> None:
    gateway = await start_gateway(relay=relay.url, **store_option(backend))
    api = api_for(gateway)
    _, token = await api.register("alice")
    draft = {"to": ["dan@example.org", "alice@localhost"], "subject": "once", "text": "t"}
    key = {"Idempotency-Key": "send-1"}
    first = await api.post("/emails", draft, token=token, headers=key)
    again = await api.post("/emails", draft, token=token, headers=key)
    assert (first.status, again.status) == (201, 201)
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["email"]["id"] == first.json["email"]["id"]

    client = await connect("websocket", api.base_url)  # the tunnel shares the keys
    try:
        reply = await client.request("POST", "/emails", draft, token=token, headers=key)
        assert reply["status"] == 201 and reply["headers"]["Idempotent-Replayed"] == ["true"]
        assert json.loads(reply["body"])["email"]["id"] == first.json["email"]["id"]
        other = await client.request("POST", "/emails", {**draft, "text": "changed"}, token=token, headers=key)
        assert (other["status"], json.loads(other["body"])["code"]) == (409, "idempotency_key_reused")
    finally:
        await client.close()

    await settled(gateway)
    sent = await api.get("/emails?label=sent", token=token)
    inbox = await api.get("/emails?label=inbox", token=token)
    assert (sent.headers["X-Total-Count"], inbox.headers["X-Total-Count"]) == ("1", "1")
    assert [rcpts for _, rcpts, _ in relay.received] == [["dan@example.org"]]

    fresh = await api.post("/emails", draft, token=token, headers={"Idempotency-Key": "send-2"})
    assert fresh.status == 201 and fresh.json["email"]["id"] != first.json["email"]["id"]
    _, bob = await api.register("bob")  # keys are per account
    assert "Idempotent-Replayed" not in (await api.post("/emails", draft, token=bob, headers=key)).headers


@pytest.mark.gen_test(timeout=30)
async def test_a_malformed_key_is_refused(start_gateway: Any) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    draft = {"to": ["bob@localhost"], "text": "t"}
    for bad in ("x" * 256, "caf\u00e9"):
        reply = await api.post("/emails", draft, token=token, headers={"Idempotency-Key": bad}, check_spec=False)
        assert (reply.status, reply.json["code"]) == (400, "invalid_header"), bad
    assert (await api.get("/emails", token=token)).headers["X-Total-Count"] == "0"
