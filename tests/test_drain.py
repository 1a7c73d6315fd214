"""A stopping gateway (SIGTERM) drains: it stops accepting, tells sessions to reconnect at once (4001),
lets the work in flight finish, and hands its delivery claims back for another process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from tornado.tcpclient import TCPClient

from gateway.ids import new_id, now_iso
from handlers.base import APIHandler
from tests.conftest import api_for
from tests.peers import Served
from tests.sockjs_clients import connect


class _Slow(APIHandler):
    """An API request that takes as long as the test says."""

    public_methods = frozenset({"GET"})
    started: asyncio.Event
    release: asyncio.Event

    async def get(self) -> None:
        type(self).started.set()
        await type(self).release.wait()
        self.reply(message="done")


@pytest.mark.gen_test(timeout=30)
async def test_draining_finishes_work_in_flight_and_releases_claims(start_gateway: Any) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    alice, _ = await api.register("alice")
    # a claim this process holds on an email it is delivering
    claimed = {"id": new_id(), "owner": alice["id"], "direction": "out", "status": "queued", "from": "alice@localhost",
               "to": ["dan@example.org"], "cc": [], "bcc": [], "subject": "s", "text": "t", "labels": ["sent"],
               "read": True, "created": now_iso(), "thread": new_id(), "message_id": "<c@localhost>",
               "next_attempt_at": time.time() + 3600}
    await gateway.store.insert("emails", claimed)
    claimed_at = time.time()
    await gateway.store.update("emails", claimed["id"], {"status": "sending", "claimed_at": claimed_at})
    gateway.delivery.queue._claims[claimed["id"]] = claimed_at  # as _attempt records it

    _Slow.started, _Slow.release = asyncio.Event(), asyncio.Event()
    assert gateway.services is not None
    gateway.services.app.add_handlers(r".*", [(r"/test/slow", _Slow)])
    session = await connect("websocket", api.base_url)
    slow = asyncio.ensure_future(api.call("GET", "/test/slow", check_spec=False))
    await _Slow.started.wait()
    draining = asyncio.ensure_future(gateway.drain(10))
    await session.closed.wait()
    assert session.close_frame == [4001, "Server restarting: reconnect now"]
    assert gateway.services.state.draining and not draining.done()  # the slow request is still in flight
    _Slow.release.set()
    assert (await slow).json["message"] == "done"  # finished, not cut
    await draining
    email = await gateway.store.get("emails", claimed["id"])
    assert email is not None and email["status"] == "queued"  # back for another process, not after the lease


def test_sigterm_drains_and_exits(tmp_path: Any) -> None:
    served = Served(tmp_path, {"GATEWAY_DRAIN": "5"})
    assert served.stop() == 0  # SIGTERM
    log = "".join(served.lines)
    assert "draining: 0 request(s) and 0 SMTP message(s) in flight" in log and "Traceback" not in log


@pytest.mark.gen_test(timeout=30)
async def test_readiness_is_false_while_draining(start_gateway: Any) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    assert gateway.services is not None
    gateway.services.state.draining = True  # as drain() sets it; the listener would be closed already
    reply = await api.get("/health/ready")
    assert (reply.status, reply.json["message"]) == (503, "Not ready: draining")
    gateway.services.state.draining = False
    assert (await api.get("/health/ready")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_a_draining_gateway_turns_new_requests_away_and_closes_their_connection(start_gateway: Any) -> None:
    """A balancer's kept-alive connection to a draining gateway: a new request on it gets 503
    draining and the connection closes, so the balancer sends it on to another gateway."""
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    assert gateway.services is not None
    stream = await TCPClient().connect("127.0.0.1", gateway.port)
    request = (f"GET /accounts/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    await stream.write(request)
    first = await stream.read_until(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    length = int(next(line.split(b":")[1] for line in first.split(b"\r\n") if line.lower().startswith(b"content-length")))
    await stream.read_bytes(length)
    gateway.services.state.draining = True  # as drain() sets it: the kept-alive connection is still open
    await stream.write(request)
    head = await stream.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"Connection: close" in head and b"Retry-After: 1" in head
    body = await stream.read_until_close()
    assert json.loads(body) == {"success": False, "message": "This gateway is restarting; try again",
                                "code": "draining"}
    assert (await api.get("/health/ready")).status == 503  # the probes still answer
    gateway.services.state.draining = False
