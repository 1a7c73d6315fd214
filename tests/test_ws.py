"""The SockJS endpoint at /ws: info, transports, tunneled requests, subscribe and unsubscribe."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from typing import Any

import jwt
import pytest
import tornado.httputil
import tornado.web
from sockjs.tornado import proto
from tornado.tcpclient import TCPClient

from gateway.sockjs.transports.common import decode_messages
from gateway.ws.frames import json_body_frame_string, json_body_message, response_frame_string, response_message
from gateway.app.server import Gateway
from gateway.ws.messages import MessageError, Request, parse
from gateway.ws.tunnel import CapturingConnection, Tunnel, TunneledResponse
from tests.conftest import Api, PASSWORD, api_for, settled, wait_until
from tests.sockjs_clients import TRANSPORTS, connect, without_cursor
from tests.peers import mail as smtp_mail
from tests.stores import BACKENDS, store_option

ALL = list(TRANSPORTS)


@pytest.mark.gen_test
async def test_info_answers_the_contract(api: Api) -> None:
    for _ in range(50):
        reply = await api.get("/ws/info", check_spec=False)
        info = reply.json
        assert reply.status == 200 and set(info) == {"websocket", "cookie_needed", "origins", "entropy"}
        assert (info["websocket"], info["cookie_needed"], info["origins"]) == (True, False, ["*:*"])
        assert isinstance(info["entropy"], int) and 0 <= info["entropy"] <= 2**32 - 1


@pytest.mark.gen_test
async def test_greeting(api: Api) -> None:
    reply = await api.get("/ws", check_spec=False)
    assert reply.status == 200 and reply.body == b"Welcome to SockJS!\n"


@pytest.mark.gen_test
@pytest.mark.parametrize("transport", ALL)
async def test_scenario_on_every_transport(api: Api, transport: str) -> None:
    """Register, log in and use the API over the tunnel; subscribe; unsubscribe."""
    client = await connect(transport, api.base_url)
    try:
        created = await client.request("POST", "/accounts", {"username": "alice", "password": PASSWORD})
        assert created["status"] == 201 and json.loads(created["body"])["account"]["username"] == "alice"
        token = await client.login("alice", PASSWORD)
        sent = await client.request("POST", "/emails", json.dumps({"to": ["bob@x.org"], "text": "hi"}), token=token)
        assert sent["status"] == 201
        listed = await client.request("GET", "/emails?limit=20", token=token)
        assert listed["status"] == 200 and listed["headers"]["X-Total-Count"] == ["1"]
        me = await client.request("GET", "/accounts/me", token=token)
        assert me["headers"]["Content-Type"] == ["application/json; charset=utf-8"]

        await client.send({"type": "subscribe", "token": token})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        await client.send({"type": "unsubscribe"})
        assert await client.recv() == {"type": "unsubscribed"}
        await client.send({"type": "unsubscribe"})
        assert (await client.recv())["code"] == "not_subscribed"
    finally:
        await client.close()


def normalized(body: bytes) -> bytes:
    """Ids, timestamps and tokens differ between two creations; everything else must not."""
    text = re.sub(rb"[0-9a-f]{24}", b"<id>", body)
    text = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", b"<time>", text)
    text = re.sub(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d -0000", b"<date>", text)  # Date:, to the second
    return re.sub(rb"eyJ[\w-]+\.[\w-]+\.[\w-]+", b"<jwt>", text)


@pytest.mark.gen_test(timeout=60)
async def test_tunnel_answers_byte_for_byte_like_http(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("alice")
    _, bob = await api.register("bob")
    email = (await api.post("/emails", {"to": ["b@x.org"], "subject": "s", "text": "t"}, token=token)).json["email"]
    label = (await api.post("/labels", {"name": "Work"}, token=token)).json["label"]
    contact = (await api.post("/contacts", {"name": "C", "email": "c@x.org"}, token=token)).json["contact"]
    bobs_token_id = (await api.get("/tokens", token=bob)).json["tokens"][0]["id"]
    auth = {"Authorization": f"Bearer {token}", "User-Agent": "tests"}
    big = json.dumps({"name": "x" * (1 << 20), "email": "b@x.org"})
    table: list[tuple[str, str, str | None, dict[str, str], bool]] = [
        # method, path, body, headers, creates something (compare with ids/times normalized)
        ("GET", "/", None, {}, False),
        ("GET", "/health", None, {}, False),
        ("POST", "/accounts", json.dumps({"username": "alice", "password": PASSWORD}), {}, False),
        ("POST", "/accounts", json.dumps({"username": "x"}), {}, False),
        ("POST", "/accounts", "{not json", {}, False),
        ("GET", "/accounts/me", None, auth, False),
        ("GET", "/accounts/me", None, {}, False),
        ("GET", "/accounts/me", None, {"Authorization": "Bearer forged.token.value"}, False),
        ("PUT", "/accounts/me", json.dumps({"display_name": "Al"}), auth, True),
        ("PUT", "/accounts/me", json.dumps({"display_name": "Zo\u00eb \u2603 \U0001f600"}), auth, True),  # UTF-8 out
        ("PUT", "/accounts/me", json.dumps({"nope": 1}), auth, False),
        ("POST", "/tokens", json.dumps({"username": "alice", "password": "wrong password"}), {}, False),
        ("POST", "/tokens", json.dumps({"username": "alice", "password": PASSWORD}), {}, True),
        ("GET", "/tokens", None, auth, False),
        ("DELETE", f"/tokens/{bobs_token_id}", None, auth, False),
        ("POST", "/emails", json.dumps({"to": "b@x.org"}), auth, False),
        ("POST", "/contacts", big, auth, False),
        ("GET", "/emails?limit=1&sort=subject", None, auth, False),
        ("GET", "/emails?q=S&label=sent", None, auth, False),
        ("GET", f"/emails/{email['id']}/raw", None, auth, False),
        ("GET", f"/emails/{email['id']}/attachments/0", None, auth, False),
        ("GET", "/emails?limit=0", None, auth, False),
        ("GET", f"/emails/{email['id']}", None, auth, False),
        ("PUT", f"/emails/{email['id']}", json.dumps({"read": True}), auth, False),
        ("PUT", f"/emails/{email['id']}", json.dumps({"labels": ["nope"]}), auth, False),
        ("DELETE", "/emails/" + "0" * 24, None, auth, False),
        ("GET", "/threads", None, auth, False),
        ("GET", f"/threads/{email['thread']}", None, auth, False),
        ("PUT", f"/threads/{email['thread']}", json.dumps({"read": True}), auth, False),
        ("DELETE", "/threads/nope", None, auth, False),
        ("GET", "/labels", None, auth, False),
        ("POST", "/labels", json.dumps({"name": "Work"}), auth, False),
        ("GET", f"/labels/{label['id']}", None, auth, False),
        ("PUT", f"/labels/{label['id']}", json.dumps({"name": "Work"}), auth, False),
        ("DELETE", "/labels/inbox", None, auth, False),
        ("GET", "/contacts", None, auth, False),
        ("POST", "/contacts", json.dumps({"name": "D", "email": "c@x.org"}), auth, False),
        ("GET", f"/contacts/{contact['id']}", None, auth, False),
        ("PUT", f"/contacts/{contact['id']}", json.dumps({"phone": "1"}), auth, False),
        ("DELETE", f"/contacts/{contact['id']}", None, {}, False),
        ("GET", "/nowhere", None, {}, False),
        ("PATCH", "/accounts", "{}", {}, False),
        ("HEAD", "/", None, {}, False),
        ("POST", "/emails", json.dumps({"to": ["b@x.org"], "text": "again"}), auth, True),  # last: it changes lists
    ]
    await settled(gateway)  # no email changes status while the table runs
    client = await connect("websocket", api.base_url)
    try:
        for number, (method, path, body, headers, creates) in enumerate(table):
            # each request has an id of its own (X-Request-Id): the same one on both paths
            headers = {"User-Agent": "tests", "X-Request-Id": f"parity-{number}", **headers}
            http = await api.call(method, path, raw=body, headers=headers, check_spec=False)
            tunneled = await client.request(method, path, body, headers=headers)
            http_headers: dict[str, list[str]] = {}
            for name, value in http.headers.get_all():
                http_headers.setdefault(name, []).append(value)
            for both in (http_headers, tunneled["headers"]):
                both.pop("Date")  # the clock moves between the two calls
            # hop-by-hop: the HTTP/1.1 layer says it will close this test client's socket
            assert http_headers.pop("Connection") == ["close"]
            http_body, tunneled_body = http.body, tunneled["body"].encode()
            if creates:
                http_body, tunneled_body = normalized(http_body), normalized(tunneled_body)
            assert (tunneled["status"], tunneled["headers"], tunneled_body) == (http.status, http_headers, http_body), \
                (method, path)
            # with the opt-in, a JSON body comes as a JSON value: the same bytes, unescaped once less
            as_value = await client.request(method, path, body, headers=headers, accept_json_body=True)
            as_value["headers"].pop("Date")
            if "body_encoding" in as_value:
                assert as_value["body_encoding"] == "json" and http_headers["Content-Type"][0].startswith(
                    "application/json")
                value_body = json.dumps(as_value["body"], separators=(",", ":"), ensure_ascii=False).encode()
            else:
                assert not http_body or not http_headers.get("Content-Type", [""])[0].startswith("application/json")
                value_body = as_value["body"].encode()
            if creates:
                value_body = normalized(value_body)
            assert (as_value["status"], as_value["headers"], value_body) == (http.status, http_headers, http_body), \
                (method, path, "accept_json_body")
    finally:
        await client.close()


@pytest.mark.parametrize("body", [
    b"", b'{"success":true,"emails":[{"subject":"a \\"quoted\\" \\\\ path"}]}', "caf\u00e9 \u2603 \U0001f600".encode(),
    bytes(range(128)), bytes(range(127)), b"\xff\xfe invalid utf-8 \xc3", b"</script>\\u2028", bytes(range(0x20, 0x7F)), b"a\x7f",
    b"line\n", json.dumps({"s": 'a "b" \\ c \\" \\\\', "u": "\u00e9\n\x00", "list": [1, None, "x"]}).encode(),
])
def test_response_message_is_exactly_what_json_dumps_gives(body: bytes) -> None:
    """The hand-assembled envelope, and the frame element made of it, are byte for byte the generic encoding."""
    headers = {"Content-Type": ["application/json; charset=utf-8"], "Set-Cookie": ["a=1", "b=\"2\""],
               "X-Odd": ["\u00e9\t\x7f"]}
    response = TunneledResponse(status=404, headers=headers, body=body)
    try:
        as_sent: dict[str, str] = {"body": body.decode("utf-8")}
    except UnicodeDecodeError:  # binary: base64, marked
        as_sent = {"body": base64.b64encode(body).decode(), "body_encoding": "base64"}
    generic = json.dumps({"type": "response", "id": "id \"7\" \u00e9", "status": 404, "headers": headers,
                          **as_sent}, separators=(",", ":"))
    assert response_message('id "7" \u00e9', response) == generic
    assert response_frame_string('id "7" \u00e9', response) == proto.json_encode(generic)
    # the JSON-value form (accept_json_body): the body's text in the message as it is, the frame as json.dumps gives
    as_value = json_body_message('id "7" \u00e9', response)
    assert as_value == generic.rsplit(',"body":', 1)[0] + ',"body":' + body.decode("utf-8", "replace") \
        + ',"body_encoding":"json"}'
    try:
        value = json.loads(body)
    except ValueError:  # not JSON: never sent in this form (only JSON response bodies are)
        pass
    else:  # a JSON body reads back as the generic envelope with the body as a value
        assert json.loads(as_value) == {**json.loads(generic), "body": value, "body_encoding": "json"}
    assert json_body_frame_string('id "7" \u00e9', response) == proto.json_encode(as_value)


#: Frames and messages orjson reads differently from json (a huge integer: a float) or refuses (NaN, an
#: infinity, a lone surrogate), and the usual kinds.
ODD_JSON = ['["a","b"]', '"one"', "[]", "[1,2]", "[123456789012345678901234567890]", "[NaN]", "[1e400]",
            '["\\ud800"]', '{"a":1}', "null", '["caf\u00e9 \\u2603"]']


@pytest.mark.parametrize("text", ODD_JSON)
def test_a_frame_reads_as_json_loads_reads_it(text: str) -> None:
    """The transports read a client's frame by orjson where that gives json.loads's objects, else by json."""
    expected = json.loads(text)
    found = decode_messages(text)
    assert (repr(found), type(found)) == (repr(expected), type(expected))


@pytest.mark.parametrize("body", ['{"n":123456789012345678901234567890}', "[NaN, -0, 1.5e300]", '"\\ud800 x"',
                                  '{"deep":[[[{"x":null}]]]}', '"text"'])
def test_a_message_reads_as_json_loads_reads_it(body: str) -> None:
    """A tunneled request's body given as JSON is passed on as json.loads would read it (a huge integer stays
    an integer), and one orjson refuses is read all the same."""
    raw = '{"type":"request","id":"r1","method":"POST","path":"/x","body":%s}' % body
    value = json.loads(body)
    try:
        request = parse(raw, 65536, "/ws")
    except MessageError as exc:  # the lone surrogate: refused with the same error as before
        assert isinstance(value, str) and exc.code == "invalid_field"
        return
    assert isinstance(request, Request)
    expected = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    assert request.body == expected.encode("utf-8")


@pytest.mark.gen_test
async def test_tunneled_client_address_is_the_connections(api: Api, gateway: Gateway) -> None:
    await api.register("alice")
    client = await connect("websocket", api.base_url)
    try:
        reply = await client.request("POST", "/tokens", {"username": "alice", "password": PASSWORD},
                                     headers={"X-Forwarded-For": "203.0.113.9", "X-Real-Ip": "203.0.113.9"})
        token_id = json.loads(reply["body"])["token"]["id"]
        assert (await gateway.store.get("tokens", token_id))["ip"] == "127.0.0.1"
    finally:
        await client.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("message,code", [
    ({"type": "request", "id": "1", "method": "GET", "path": "/ws/info"}, "forbidden_path"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/ws"}, "forbidden_path"),
    ({"type": "request", "id": "1", "method": "GET", "path": "//ws/info"}, "invalid_field"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/%77s/info"}, "forbidden_path"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/./ws/x"}, "forbidden_path"),
    ({"type": "request", "id": "1", "method": "GET", "path": "http://evil/"}, "invalid_field"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/a b"}, "invalid_field"),
    ({"type": "request", "method": "GET", "path": "/"}, "missing_field"),
    ({"type": "request", "id": "1", "path": "/"}, "missing_field"),
    ({"type": "request", "id": "1", "method": "GET"}, "missing_field"),
    ({"type": "request", "id": 1, "method": "GET", "path": "/"}, "invalid_field"),
    ({"type": "request", "id": "1", "method": "BREW", "path": "/"}, "invalid_field"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "headers": ["Host: x"]}, "invalid_headers"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "headers": {"X-A": 1}}, "invalid_headers"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "headers": {"X-A": "a\r\nX-B: b"}}, "invalid_headers"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "headers": {"Bad Name": "x"}}, "invalid_headers"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "body": 5}, "invalid_field"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "extra": 5}, "unknown_field"),
    ({"type": "request", "id": "1", "method": "GET", "path": "/", "accept_json_body": "yes"}, "invalid_field"),
    ({"id": "1"}, "missing_field"),
    ({"type": "publish", "id": "1"}, "unknown_type"),
    ({"type": "subscribe", "id": "1"}, "missing_field"),
    ([1, 2], "invalid_message"),
    ("just a string", "invalid_message"),
    (17, "invalid_message"),
])
async def test_bad_messages_get_an_error_and_the_session_stays_usable(api: Api, message: Any, code: str) -> None:
    client = await connect("websocket", api.base_url)
    try:
        await client.send(json.dumps(message))
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == code and error["error"]
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            assert error["id"] == message["id"]
        assert (await client.request("GET", "/"))["status"] == 200
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_non_json_and_oversized_messages(api: Api, gateway: Gateway) -> None:
    client = await connect("websocket", api.base_url)
    try:
        await client.send("{not json")
        assert (await client.recv())["code"] == "invalid_json"
        huge = json.dumps({"type": "request", "id": "big", "method": "POST", "path": "/accounts",
                           "body": "x" * gateway.config.ws_max_message})
        await client.send(huge)
        assert await client.recv() == {"type": "error", "error": f"Message exceeds {gateway.config.ws_max_message} bytes",
                                       "code": "too_large"}
        assert (await client.request("GET", "/health"))["status"] == 200
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_requests_run_concurrently_and_the_limit_answers_429(start_gateway: Any) -> None:
    # full-cost Argon2id makes a login take far longer than a GET; two requests may run at once
    slow_gateway = await start_gateway(argon2_memory=65536, ws_max_inflight=2)
    api = api_for(slow_gateway)
    await api.register("alice")
    client = await connect("websocket", api.base_url)
    try:
        login = {"type": "request", "method": "POST", "path": "/tokens",
                 "body": {"username": "alice", "password": PASSWORD}}
        # one frame: a slow login, a fast GET, then three more that exceed the limit of 2
        await client.send({**login, "id": "slow"}, {"type": "request", "id": "fast", "method": "GET", "path": "/"},
                          *({**login, "id": f"over{i}", "accept_json_body": i == 1} for i in range(3)))
        answers = [await client.recv() for _ in range(5)]
        assert [(a["id"], a["status"]) for a in answers[:3]] == [("over0", 429), ("over1", 429), ("over2", 429)]
        assert json.loads(answers[0]["body"])["code"] == "rate_limited"
        assert (answers[1]["body_encoding"], answers[1]["body"]["code"]) == ("json", "rate_limited")
        assert answers[0]["headers"]["Retry-After"] == ["1"]
        assert [(a["id"], a["status"]) for a in answers[3:]] == [("fast", 200), ("slow", 201)]
    finally:
        await client.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming"])
async def test_subscribe_refuses_bad_tokens_and_rebinds(api: Api, gateway: Gateway, transport: str) -> None:
    alice, token = await api.register("alice")
    bob, bob_token = await api.register("bob")
    secret = gateway.state.tokens.secret
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, secret, algorithm="HS256")
    revoked = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]
    await api.delete(f"/tokens/{revoked['id']}", token=token)
    client = await connect(transport, api.base_url)
    try:
        for bad in ("", "forged", jwt.encode(claims, b"k" * 32, algorithm="HS256"), expired, revoked["value"], 42):
            await client.send({"type": "subscribe", "token": bad, "id": "s"})
            assert await client.recv() == {"type": "error", "error": "Invalid token", "code": "invalid_token", "id": "s"}
        await client.send({"type": "subscribe", "token": token})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        assert gateway.registry.binding(next(iter(gateway.ws.live))).account_id == alice["id"]
        await client.send({"type": "subscribe", "token": bob_token})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        assert [b.account_id for b in gateway.registry.bindings(bob["id"])] == [bob["id"]]
        assert gateway.registry.bindings(alice["id"]) == []
    finally:
        await client.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
async def test_revocation_anywhere_unsubscribes_the_session(api: Api, transport: str) -> None:
    _, token = await api.register("alice")
    client = await connect(transport, api.base_url)
    other = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        # revoked over plain HTTP
        assert (await api.delete("/tokens", token=token)).status == 200
        assert await client.recv() == {"type": "unsubscribed", "reason": "revoked"}
        # revoked from another session's tunnel
        second = await other.login("alice", PASSWORD)
        await client.send({"type": "subscribe", "token": second})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        assert (await other.request("DELETE", "/tokens", token=second))["status"] == 200
        assert await client.recv() == {"type": "unsubscribed", "reason": "revoked"}
    finally:
        await client.close()
        await other.close()


@pytest.mark.gen_test
async def test_account_deletion_and_expiry_unsubscribe(api: Api) -> None:
    _, token = await api.register("alice")
    short = (await api.post("/tokens", {"username": "alice", "password": PASSWORD, "expires_in": 2})).json["token"]
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": short["value"]})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        assert await client.recv(timeout=5) == {"type": "unsubscribed", "reason": "expired"}
        await client.send({"type": "subscribe", "token": token})
        assert without_cursor(await client.recv()) == {"type": "subscribed"}
        assert (await api.delete("/accounts/me", token=token)).status == 200
        assert await client.recv() == {"type": "unsubscribed", "reason": "account_deleted"}
        await client.send({"type": "unsubscribe"})
        assert (await client.recv())["code"] == "not_subscribed"
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("transport", ALL)
async def test_closing_a_session_releases_its_binding_and_work(start_gateway: Any, transport: str) -> None:
    gateway = await start_gateway(ws_disconnect_delay=0.2, argon2_memory=65536)
    api = api_for(gateway)
    _, token = await api.register("alice")
    client = await connect(transport, api.base_url)
    await client.send({"type": "subscribe", "token": token})
    assert without_cursor(await client.recv()) == {"type": "subscribed"}
    # a slow login still running when the session goes away
    await client.send({"type": "request", "id": "slow", "method": "POST", "path": "/tokens",
                       "body": {"username": "alice", "password": PASSWORD}})
    await wait_until(lambda: any(c.running_requests for c in gateway.ws.live))
    await client.close()
    await wait_until(lambda: not gateway.ws.live)
    assert gateway.registry.counts() == {"subscribers": 0, "accounts": 0}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming"])
async def test_heartbeats_come_at_the_configured_interval(start_gateway: Any, transport: str) -> None:
    gateway = await start_gateway(ws_heartbeat=0.2)
    client = await connect(transport, f"http://127.0.0.1:{gateway.port}")
    try:
        for _ in range(2):  # and keep coming
            client.heartbeat.clear()
            await asyncio.wait_for(client.heartbeat.wait(), 10)
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(("transport", "heartbeat"), [("eventsource", b"data: h\r\n"),
                                                      ("htmlfile?c=cb", b'p("h");')])
async def test_heartbeats_on_the_browser_streaming_transports(start_gateway: Any, transport: str,
                                                              heartbeat: bytes) -> None:
    gateway = await start_gateway(ws_heartbeat=0.2)
    stream = await TCPClient().connect("127.0.0.1", gateway.port)
    try:
        await stream.write(f"GET /ws/000/{secrets.token_hex(8)}/{transport} HTTP/1.1\r\n"
                           f"Host: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while received.count(heartbeat) < 2:  # the open frame, then heartbeats, on an idle stream
            received += await asyncio.wait_for(stream.read_bytes(65536, partial=True), 10)
    finally:
        stream.close()


@pytest.mark.gen_test(timeout=30)
async def test_htmlfile_frames_cannot_end_their_script(api: Api) -> None:
    session = f"/ws/000/{secrets.token_hex(8)}"
    stream = await TCPClient().connect("127.0.0.1", int(api.base_url.rsplit(":", 1)[1]))
    try:
        await stream.write(f"GET {session}/htmlfile?c=cb HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = await stream.read_until(b'p("o");\n</script>')
        hostile = "</script><script>parent.pwned=1</script><!--"
        sent = await api.http.fetch(f"{api.base_url}{session}/xhr_send", method="POST", raise_error=False,
                                      body=json.dumps([json.dumps({"type": "bogus", "id": hostile})]))
        assert sent.code == 204
        received += await stream.read_until(b"</script>\r\n")
    finally:
        stream.close()
    frame = received.decode().rsplit("<script>\n", 1)[1]
    assert frame.count("</script>") == 1 and "<!--" not in frame and "<script>" not in frame
    text = re.fullmatch(r'p\((".*")\);\n</script>\r\n', frame, re.S).group(1)
    assert json.loads(json.loads(json.loads(text)[1:])[0]) == {
        "type": "error", "error": "Unknown message type: 'bogus'", "code": "unknown_type", "id": hostile}


@pytest.mark.gen_test
async def test_sending_to_a_closing_websocket_ends_the_session_quietly(api: Api, gateway: Gateway, caplog: Any) -> None:
    client = await connect("websocket", api.base_url)
    connection = next(iter(gateway.ws.live))
    connection.session.handler.ws_connection.close()  # closing: the client has not answered yet
    connection.send_json({"type": "probe"})  # flushed on the next loop turn, to a closing websocket
    await wait_until(lambda: not gateway.ws.live)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    await client.close()


@tornado.web.stream_request_body
class _StreamingEcho(tornado.web.RequestHandler):
    async def prepare(self) -> None:
        self.chunks: list[bytes] = []
        await asyncio.sleep(0)  # set up across a loop turn, as a real one might

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def put(self) -> None:
        self.set_header("X-Twice", "a")
        self.add_header("X-Twice", "b")
        self.finish(b"got " + b"".join(self.chunks))


class _Hanging(tornado.web.RequestHandler):
    closed: asyncio.Event
    finished: asyncio.Event

    async def get(self) -> None:
        await type(self).closed.wait()
        self.finish(b"too late")  # its connection is gone: nobody takes this
        type(self).finished.set()

    def on_connection_close(self) -> None:
        type(self).closed.set()


class _Arguments(tornado.web.RequestHandler):
    """What Tornado's request gives a handler, tunneled: its attributes' names and values, and the
    arguments it parses into, as JSON."""

    def get(self) -> None:
        request = self.request
        self.finish({"seen": sorted(vars(request)), "host": [request.host, request.host_name],
                     "path": [request.path, request.query, request.uri, request.version, request.protocol,
                              request.remote_ip], "labels": self.get_arguments("label"), "q": self.get_argument("q")})
        request.arguments["label"].append(b"changed")  # a handler may change them: the next gets its own
        request.query_arguments.clear()


@pytest.mark.gen_test
async def test_a_tunneled_request_is_the_request_tornado_makes() -> None:
    """The tunnel's request (its host checked once, each target's query parsed once) has every
    attribute Tornado's own has, with the same values, and each request its own arguments."""
    app = tornado.web.Application([("/args", _Arguments)])
    tunnel = Tunnel(app, "10.0.0.1", "Example.org:8080")
    target = "/args?label=a&label=b&q=&x=%C3%A9"
    tornados = tornado.httputil.HTTPServerRequest(
        connection=CapturingConnection(tunnel, None), server_connection=tunnel,
        start_line=tornado.httputil.RequestStartLine("GET", target, "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": "Example.org:8080"}))
    expected = {"seen": sorted(vars(tornados)), "host": [tornados.host, tornados.host_name],
                "path": [tornados.path, tornados.query, tornados.uri, tornados.version, tornados.protocol,
                         tornados.remote_ip], "labels": ["a", "b"], "q": ""}
    for _ in range(2):
        answered: asyncio.Future[TunneledResponse] = asyncio.get_running_loop().create_future()
        assert tunnel.start("GET", target, [], b"", answered.set_result) is None
        response = await answered
        assert (response.status, json.loads(response.body)) == (200, expected)
    assert tunnel.routes.targets.found[target][2] == tornados.arguments  # as parsed, whatever handlers did


@pytest.mark.gen_test
async def test_tunnel_streams_bodies_and_aborts_requests_on_close() -> None:
    """``Tunnel.start`` directly: a ``@stream_request_body`` handler, and a request cut off by ``close``."""
    app = tornado.web.Application([("/echo", _StreamingEcho), ("/hang", _Hanging)])
    tunnel = Tunnel(app, "10.0.0.1", "example.org")
    answered: asyncio.Future[TunneledResponse] = asyncio.get_running_loop().create_future()
    rest = tunnel.start("PUT", "/echo", [("X-A", "1")], b"payload", answered.set_result)
    assert rest is not None  # the handler is set up before the body is delivered
    await rest
    response = await answered
    assert (response.status, response.body, response.headers["X-Twice"]) == (200, b"got payload", ["a", "b"])

    _Hanging.closed, _Hanging.finished = asyncio.Event(), asyncio.Event()
    responses: list[TunneledResponse] = []
    assert tunnel.start("GET", "/hang", [], b"", responses.append) is None
    assert tunnel.open
    tunnel.close()
    await _Hanging.finished.wait()
    assert (responses, tunnel.open) == ([], set())


@pytest.mark.gen_test(timeout=30)
async def test_a_tunneled_read_is_answered_without_a_request_handler_and_logged_as_its_route(
        api: Api, monkeypatch: Any, caplog: Any) -> None:
    """``GET /accounts/me``, ``/emails`` and the other lists over the tunnel are answered without a Tornado
    ``RequestHandler`` (none is made: checked) and logged as the route's handler would log them;
    what that path does not take (a bad token, an Origin, a bad parameter) goes the usual way."""
    from handlers.accounts import MeHandler
    from handlers.contacts import ContactsHandler
    from handlers.emails import EmailsHandler
    from handlers.threads import ThreadsHandler
    from handlers.tokens import TokensHandler

    account, token = await api.register("alice")
    made: list[str] = []
    for handler in (MeHandler, EmailsHandler, ThreadsHandler, ContactsHandler, TokensHandler):
        monkeypatch.setattr(handler, "initialize", lambda self, **kwargs: made.append(type(self).__name__))
    client = await connect("websocket", api.base_url)
    try:
        caplog.set_level("INFO", logger="tornado.access")
        me = await client.request("GET", "/accounts/me", token=token, headers={"X-Request-Id": "me-1"})
        page = await client.request("GET", "/emails?limit=5", token=token)
        assert (me["status"], json.loads(me["body"])["account"]["id"]) == (200, account["id"])
        assert (page["status"], page["headers"]["X-Total-Count"]) == (200, ["0"])
        assert made == []  # no RequestHandler was made for either
        fields = [record.fields for record in caplog.records if record.name == "tornado.access"]
        assert [(f["route"], f["status"], f["path"], f["account_id"]) for f in fields] == [
            ("MeHandler", 200, "/accounts/me", account["id"]), ("EmailsHandler", 200, "/emails?***", account["id"])]
        assert fields[0]["request_id"] == "me-1" and fields[1]["request_id"] == page["headers"]["X-Request-Id"][0]

        # what it does not take goes the usual way: a RequestHandler is made, and answers as over HTTP
        refused = await client.request("GET", "/accounts/me", token="forged.token.value")
        assert (refused["status"], json.loads(refused["body"])["code"]) == (401, "invalid_token")
        bad = await client.request("GET", "/emails?limit=abc", token=token)
        assert (bad["status"], json.loads(bad["body"])["code"]) == (400, "invalid_parameter")
        cors = await client.request("GET", "/accounts/me", token=token, headers={"Origin": "https://app.example"})
        assert cors["status"] == 200 and "Access-Control-Allow-Origin" in cors["headers"]
        assert made == ["MeHandler", "EmailsHandler", "MeHandler"]
        for path in ("/threads?label=inbox", "/contacts", "/tokens"):  # the other lists that take this path
            assert (await client.request("GET", path, token=token))["status"] == 200, path
        assert made == ["MeHandler", "EmailsHandler", "MeHandler"]
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_a_tunneled_read_the_store_cannot_serve_is_answered_503_once(
        api: Api, gateway: Gateway, monkeypatch: Any, caplog: Any) -> None:
    """With the store away, a tunneled ``GET`` on the direct path gets HTTP's own 503 there and then:
    it is not run a second time the usual way, which would wait for the store again."""
    from handlers.emails import EmailsHandler

    _, token = await api.register("alice")
    client = await connect("websocket", api.base_url)
    made: list[str] = []
    try:
        await gateway.store.close()
        over_http = await api.get("/emails?limit=5", token=token)
        monkeypatch.setattr(EmailsHandler, "initialize", lambda self, **kwargs: made.append(type(self).__name__))
        caplog.set_level("INFO")
        caplog.clear()  # what the tunneled request logs, alone
        tunneled = await client.request("GET", "/emails?limit=5", token=token)
    finally:
        await gateway.store.open()
        await client.close()
    assert (over_http.status, tunneled["status"]) == (503, 503)
    assert tunneled["body"].encode() == over_http.body and json.loads(over_http.body)["code"] == "store_unavailable"
    assert tunneled["headers"]["Content-Type"] == [over_http.headers["Content-Type"]]
    assert made == []  # answered on the direct path: no RequestHandler ran it again
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.api"]
    access = [r.fields for r in caplog.records if r.name == "tornado.access"]
    assert [w.startswith("GET /emails?***: ") for w in warnings] == [True]
    assert [(f["route"], f["status"]) for f in access] == [("EmailsHandler", 503)]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_direct_read_that_waits_for_its_store_is_answered_the_same(start_gateway: Any, backend: str,
                                                                          monkeypatch: Any) -> None:
    """A tunneled read on the direct path runs at once; one that waits for its store (RethinkDB) goes on
    in the session's task, in the context it began in (the store's timing spans the wait), and answers
    as HTTP does; on SQLite it never waits."""
    from handlers.accounts import MeHandler
    from handlers.emails import EmailsHandler

    gateway = await start_gateway(**store_option(backend))
    api = api_for(gateway)
    _, token = await api.register("alice")
    for subject in ("one", "two"):  # filed once SMTP accepts them: nothing changes them afterwards
        await smtp_mail(gateway.smtp_port, "alice@localhost", subject)
    paths = ("/accounts/me", "/emails?limit=5", "/emails?limit=5&offset=1")
    over_http = [normalized((await api.get(path, token=token)).body) for path in paths]
    made: list[str] = []
    for handler in (MeHandler, EmailsHandler):
        monkeypatch.setattr(handler, "initialize", lambda self, **kwargs: made.append(type(self).__name__))
    client = await connect("websocket", api.base_url)
    try:
        for path, expected in zip(paths, over_http):
            tunneled = await client.request("GET", path, token=token)
            assert (tunneled["status"], normalized(tunneled["body"].encode())) == (200, expected)
        assert made == []  # none was run again the usual way (a failure on the direct path would be)
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_an_event_goes_to_a_websocket_at_once_and_after_what_is_queued() -> None:  # (a loop: call_soon)
    """``send_jsonified_now`` (events): written at once to a websocket with nothing queued; after what
    is queued when something is (a tunneled response), in order; queued as usual for a transport that
    gathers frames (a poll)."""
    from types import SimpleNamespace

    from tornado.ioloop import IOLoop

    from gateway.sockjs.router import Session

    class Transport:
        active = True

        def __init__(self, sends_at_once: bool) -> None:
            self.sends_at_once = sends_at_once
            self.sent: list[str] = []

        def send_pack(self, message: str, binary: bool = False) -> None:
            self.sent.append(message)

    loop = IOLoop.current()
    server = SimpleNamespace(settings={"heartbeat_delay": 25, "immediate_flush": False, "verify_ip": False},
                             stats=SimpleNamespace(on_pack_sent=lambda count: None), io_loop=loop)
    session = Session(lambda owner: SimpleNamespace(), server, "s1")
    websocket = session.handler = Transport(sends_at_once=True)
    session.send_jsonified_now('"e1"')
    assert websocket.sent == ['a["e1"]']  # before any turn of the loop
    session.send_jsonified('"response"')  # a tunneled response: queued for the turn's frame
    session.send_jsonified_now('"e2"')
    assert websocket.sent == ['a["e1"]']
    session.flush()  # what the flush the queue scheduled for the loop's next turn does
    assert websocket.sent == ['a["e1"]', 'a["response","e2"]']
    poll = session.handler = Transport(sends_at_once=False)
    session.send_jsonified_now('"e3"')
    assert poll.sent == [] and session._pending_flush  # gathered for the turn's one frame
    session.flush()
    assert poll.sent == ['a["e3"]']
