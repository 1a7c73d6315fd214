"""What an outside probe broke (issue: hardening), each seen as a client sees it: malformed SockJS input,
tunneled header values, deeply nested JSON, claims of the wrong type.  Every bad input gets a clear
error, the session stays usable, and nothing reaches the log as an error."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from gateway.app.server import Gateway
from tests.conftest import Api, api_for
from tests.sockjs_clients import connect

#: Transports whose frames carry a JSON array of messages (the raw websocket has no frames).
FRAMED = ["websocket", "xhr-streaming", "xhr-polling"]
DEEP = "[" * 10000 + "]" * 10000


def errors_logged(caplog: Any) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("transport", FRAMED)
async def test_malformed_sockjs_messages_get_errors_and_the_session_stays(api: Api, gateway: Gateway, caplog: Any,
                                                                          transport: str) -> None:
    client = await connect(transport, api.base_url)
    try:
        for frame in ("[123]", "[null]", '[{"type":"request"}]', "[[1,2]]", '{"a":1}', "7"):
            await client.send_frame(frame)
            reply = await client.recv()
            assert (reply["type"], reply["code"]) == ("error", "invalid_message"), (frame, reply)
        await client.send(DEEP)  # a message nested 10,000 deep
        reply = await client.recv()
        assert (reply["code"], "nested deeper" in reply["error"]) == ("invalid_json", True)
        await client.send({"type": "request", "id": "s", "method": "POST", "path": "/accounts", "body": "\ud800"})
        assert await client.recv() == {"type": "error", "id": "s", "code": "invalid_field",
                                       "error": "Field 'body' must be valid Unicode (no lone surrogates)"}
        await client.send({"type": "subscribe", "id": "t", "token": "\udfff.x.y"})
        assert await client.recv() == {"type": "error", "id": "t", "code": "invalid_token", "error": "Invalid token"}
        assert (await client.request("GET", "/"))["status"] == 200  # still usable
    finally:
        await client.close()
    assert errors_logged(caplog) == []


@pytest.mark.gen_test(timeout=30)
async def test_a_frame_nested_too_deep_drops_the_websocket_quietly(api: Api, gateway: Gateway, caplog: Any) -> None:
    client = await connect("websocket", api.base_url)
    await client.send_frame(DEEP)  # the SockJS frame itself: broken JSON, which drops the connection
    await client.closed.wait()
    assert errors_logged(caplog) == []
    again = await connect("websocket", api.base_url)  # the server is fine
    assert (await again.request("GET", "/"))["status"] == 200
    await again.close()


@pytest.mark.gen_test(timeout=30)
async def test_tunneled_header_values_are_taken_as_http_takes_them(api: Api, gateway: Gateway, caplog: Any) -> None:
    _, token = await api.register("alice")
    padded = {"Authorization": f"  Bearer {token} \t"}  # HTTP trims the spaces around a value
    assert (await api.get("/accounts/me", headers=padded)).status == 200
    client = await connect("websocket", api.base_url)
    try:
        assert (await client.request("GET", "/accounts/me", headers=padded))["status"] == 200
        for bad in ("a\x01b", "a\x7fb", "caf\u0100", "x\x0by", "\u2028", "a\n", "a\r\n"):
            await client.send({"type": "request", "id": "h", "method": "GET", "path": "/", "headers": {"X-Bad": bad}})
            reply = await client.recv()
            assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_headers", "h"), bad
        await client.send({"type": "request", "id": "n", "method": "GET", "path": "/", "headers": {"X-Bad\n": "v"}})
        assert (await client.recv())["code"] == "invalid_headers"
        ok = await client.request("GET", "/", headers={"X-Latin": "caf\u00e9"})
        assert ok["status"] == 200
    finally:
        await client.close()
    assert errors_logged(caplog) == []


@pytest.mark.gen_test(timeout=30)
async def test_deeply_nested_json_bodies_are_invalid_json(api: Api, gateway: Gateway, caplog: Any) -> None:
    reply = await api.post("/accounts", raw=DEEP)
    assert (reply.status, reply.json["code"]) == (400, "invalid_json")
    assert "nested deeper than 64" in reply.json["message"]
    fine = await api.post("/accounts", raw=json.dumps({"username": "alice", "password": "correct horse", "x": [[[1]]]}))
    assert (fine.status, fine.json["code"]) == (400, "unknown_field")  # shallow nesting is parsed as usual
    client = await connect("websocket", api.base_url)
    try:
        tunneled = await client.request("POST", "/accounts", DEEP)
        assert (tunneled["status"], json.loads(tunneled["body"])["code"]) == (400, "invalid_json")
    finally:
        await client.close()
    assert errors_logged(caplog) == []


@pytest.mark.gen_test(timeout=60)
async def test_no_token_or_session_id_reaches_the_log(api: Api, gateway: Gateway, caplog: Any) -> None:
    """Every token and SockJS session id a run of requests used, grepped for in the whole log."""
    caplog.set_level(logging.DEBUG, logger="tornado.access")
    caplog.set_level(logging.INFO)
    _, token = await api.register("alice")
    secrets_used = [token]
    await api.get(f"/emails?token={token}", token=token)  # a token in the query string
    await api.get(f"/accounts/me?access_token={token}")
    for transport in FRAMED:
        client = await connect(transport, api.base_url)
        secrets_used.append(client.session_id)
        try:
            login = await client.login("alice", "correct horse battery")
            secrets_used.append(login)
            assert (await client.request("GET", "/accounts/me?x=1", token=login))["status"] == 200
        finally:
            await client.close()
    log_text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "/ws/" in log_text and "?***" in log_text  # the requests are logged, redacted
    leaked = [s for s in secrets_used if s in log_text]
    assert leaked == [], leaked
    assert len(secrets_used) == 1 + 2 * len(FRAMED) and all(secrets_used)


async def poll(base: str, path: str, body: bytes = b"", interface: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A POST to a SockJS URL from ``interface`` (a loopback address of its own), as a second client would."""
    reply = await AsyncHTTPClient().fetch(HTTPRequest(base + path, method="POST", body=body, headers=headers,
                                                      network_interface=interface, request_timeout=10),
                                          raise_error=False)
    return reply.code, reply.body


@pytest.mark.gen_test(timeout=30)
async def test_a_polling_session_belongs_to_the_address_that_opened_it(api: Api, gateway: Gateway) -> None:
    """Scenario: another address polls or sends with a victim's session id: 404, as for an unknown one."""
    _, token = await api.register("alice")
    session = f"/ws/000/{secrets.token_hex(8)}/"
    assert (await poll(api.base_url, session + "xhr")) == (200, b"o\n")
    frame = json.dumps([json.dumps({"type": "request", "id": "me", "method": "GET", "path": "/accounts/me",
                                    "headers": {"Authorization": f"Bearer {token}"}})]).encode()
    assert (await poll(api.base_url, session + "xhr_send", frame))[0] == 204  # the victim's request
    for path, body in (("xhr", b""), ("xhr_send", frame), ("xhr_streaming", b""), ("jsonp_send", b"d=%5B%5D")):
        code, _ = await poll(api.base_url, session + path, body, interface="127.0.0.2")
        assert code == 404, path
    code, answer = await poll(api.base_url, session + "xhr")
    assert code == 200 and b'\\"id\\":\\"me\\"' in answer  # the victim still gets its own answer


@pytest.mark.gen_test(timeout=30)
async def test_behind_a_trusted_proxy_the_forwarded_address_owns_the_session(start_gateway: Any) -> None:
    gateway = await start_gateway(trusted_proxies="127.0.0.1")
    base = api_for(gateway).base_url
    session = f"/ws/000/{secrets.token_hex(8)}/"
    alice, mallory = {"X-Forwarded-For": "198.51.100.7"}, {"X-Forwarded-For": "203.0.113.9"}
    assert (await poll(base, session + "xhr", headers=alice)) == (200, b"o\n")
    assert (await poll(base, session + "xhr", headers=mallory))[0] == 404
    # from an untrusted peer, X-Forwarded-For is not believed: that peer is who it is
    assert (await poll(base, session + "xhr", headers=alice, interface="127.0.0.2"))[0] == 404
    assert (await poll(base, session + "xhr_send", b'["x"]', headers=alice))[0] == 204
