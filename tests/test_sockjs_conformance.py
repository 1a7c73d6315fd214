"""Each SockJS protocol fix, asserted without the public suite (which needs Python 2.7 and cannot run in CI).

The server is ``gateway conformance``'s application on a free port: the same
Router and settings as ``/ws``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import socket
import uuid
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.iostream import IOStream
from tornado.tcpclient import TCPClient
from tornado.websocket import websocket_connect

from gateway.config import Config
from gateway.app.web import sockjs_settings
from gateway.sockjs.conformance import conformance_app
from gateway.sockjs.rfc6455 import FrameProtocol
from tests.conftest import wait_until

NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"


class ErrorLog(logging.Handler):
    """ERROR records logged while a test runs (the server log must stay clean)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.http = AsyncHTTPClient()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @staticmethod
    def session(service: str = "echo") -> str:
        return f"/{service}/000/{uuid.uuid4().hex}"

    async def get(self, path: str, **kw: Any) -> HTTPResponse:
        return await self.http.fetch(self.url(path), raise_error=False, **kw)

    async def post(self, path: str, body: str = "", **kw: Any) -> HTTPResponse:
        return await self.http.fetch(self.url(path), method="POST", body=body, raise_error=False, **kw)

    async def raw(self, request: bytes) -> IOStream:
        stream = await TCPClient().connect("127.0.0.1", self.port)
        await stream.write(request)
        return stream


@pytest.fixture
def errors() -> Any:
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture
def server(io_loop: Any, errors: ErrorLog) -> Any:
    async def start() -> tornado.httpserver.HTTPServer:
        http = tornado.httpserver.HTTPServer(conformance_app(sockjs_settings(Config())))
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        http.add_sockets(sockets)
        return http, sockets[0].getsockname()[1]

    http, port = io_loop.run_sync(start)
    yield Server(port)
    http.stop()
    assert errors.records == []  # every test: nothing logged as an error


@pytest.mark.gen_test
async def test_not_cached_responses_have_no_transform(server: Server) -> None:
    assert (await server.get("/echo/info")).headers["Cache-Control"] == NO_CACHE
    url = server.session()
    assert (await server.post(url + "/xhr")).headers["Cache-Control"] == NO_CACHE
    assert (await server.post(url + "/xhr_send", '["x"]')).headers["Cache-Control"] == NO_CACHE


@pytest.mark.gen_test
async def test_info_entropy_fits_32_bits_and_no_cookie_needed(server: Server) -> None:
    for _ in range(50):
        info = json.loads((await server.get("/echo/info")).body)
        assert 0 <= info["entropy"] <= 2**32 - 1 and info["cookie_needed"] is False


@pytest.mark.gen_test
async def test_xhr_send_204_keeps_text_plain(server: Server) -> None:
    url = server.session()
    await server.post(url + "/xhr")
    reply = await server.post(url + "/xhr_send", '["x"]')
    assert reply.code == 204 and reply.headers.get("Content-Type") == "text/plain; charset=UTF-8"


@pytest.mark.gen_test
async def test_xhr_session_closed_in_on_open_answers_one_frame_per_poll(server: Server) -> None:
    url = server.session("close")
    assert (await server.post(url + "/xhr")).body == b"o\n"
    assert (await server.post(url + "/xhr")).body == b'c[3000,"Go away!"]\n'


@pytest.mark.gen_test
async def test_jsonp_session_closed_in_on_open_answers_one_frame_per_poll(server: Server) -> None:
    url = server.session("close")
    assert (await server.get(url + "/jsonp?c=x")).body == b'/**/x("o");\r\n'
    assert (await server.get(url + "/jsonp?c=x")).body == b'/**/x("c[3000,\\"Go away!\\"]");\r\n'


@pytest.mark.gen_test
async def test_jsonp_has_comment_prefix(server: Server) -> None:
    assert (await server.get(server.session() + "/jsonp?c=cb")).body == b'/**/cb("o");\r\n'


@pytest.mark.gen_test
@pytest.mark.parametrize("transport", ["jsonp", "htmlfile"])
async def test_callbacks_are_validated(server: Server, transport: str) -> None:
    for callback in ["%20", "*", "abc(", "abc%28", "alert(1)//", "%3Cscript%3E"]:
        reply = await server.get(f"/echo/a/a/{transport}?c={callback}")
        assert reply.code == 500 and b'invalid "callback" parameter' in reply.body, callback
    reply = await server.get(f"/echo/a/a/{transport}")
    assert (reply.code, reply.body) == (500, b'"callback" parameter required')


@pytest.mark.gen_test
async def test_jsonp_send_bad_payload_is_not_a_server_error(server: Server) -> None:
    url = server.session()
    await server.get(url + "/jsonp?c=x")
    reply = await server.post(url + "/jsonp_send", "p=p", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (reply.code, reply.body) == (500, b"Payload expected.")
    reply = await server.post(url + "/jsonp_send", "d=%5B%22x%22%5D",
                              headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert (reply.code, reply.body) == (200, b"ok")


@pytest.mark.gen_test
async def test_htmlfile_uses_the_client_callback_verbatim(server: Server) -> None:
    stream = await server.raw(b"GET %s/htmlfile?c=_jp.a1b2c3 HTTP/1.1\r\nHost: x\r\n\r\n" % server.session().encode())
    assert b"var c = parent._jp.a1b2c3;" in await stream.read_until(b"</script>")
    stream.close()


@pytest.mark.gen_test
async def test_eventsource_content_type_has_no_charset(server: Server) -> None:
    stream = await server.raw(b"GET %s/eventsource HTTP/1.1\r\nHost: x\r\n\r\n" % server.session().encode())
    assert b"\r\nContent-Type: text/event-stream\r\n" in await stream.read_until(b"\r\n\r\n")
    stream.close()


@pytest.mark.gen_test
async def test_http10_keep_alive_streaming_ends_with_eof(server: Server) -> None:
    stream = await server.raw(b"POST %s/xhr_streaming HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
                              % server.session("close").encode())
    data = await asyncio.wait_for(stream.read_until_close(), 10)  # returns only when the server closes
    assert data.endswith(b'o\nc[3000,"Go away!"]\n')
    assert b"Transfer-Encoding" not in data.split(b"\r\n\r\n")[0]


@pytest.mark.gen_test
async def test_iframe_page_is_the_current_template(server: Server) -> None:
    body = (await server.get("/echo/iframe.html")).body.decode()
    assert re.search(r'<script src="[^"]*"></script>\s*<script>\s*document\.domain = document\.domain;'
                     r"\s*SockJS\.bootstrap_iframe\(\);\s*</script>", body)


@pytest.mark.gen_test
async def test_websocket_non_get_is_a_bodiless_405(server: Server) -> None:
    for headers in ({"Upgrade": "WebSocket", "Connection": "Upgrade"}, {}):
        reply = await server.post("/echo/0/0/websocket", headers=headers)
        assert (reply.code, reply.headers.get("Allow"), reply.headers.get("Content-Type"), reply.body) == \
            (405, "GET", None, b"")


@pytest.mark.gen_test
async def test_hixie76_handshake_and_echo(server: Server) -> None:
    path = server.session() + "/websocket"
    stream = await server.raw(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n"
        b"Origin: http://127.0.0.1\r\nSec-WebSocket-Key1: 4 @1  46546xW%%0l 1 5\r\n"
        b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n" % path.encode())
    head = await stream.read_until(b"\r\n\r\n")  # the headers come before key3 is sent
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-location: ws://127.0.0.1%s\r\n" % path.lower().encode() in head.lower()
    await stream.write(b"aaaaaaaa")
    assert await stream.read_bytes(16) == b"\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{"  # the suite's digest
    assert await stream.read_until(b"\xff") == b"\x00o\xff"
    await stream.write(b'\x00["a"]\xff')
    assert await stream.read_until(b"\xff") == b'\x00a["a"]\xff'
    stream.close()


@pytest.mark.gen_test
async def test_raw_websocket_close_carries_code_and_reason(server: Server) -> None:
    ws = await websocket_connect(f"ws://127.0.0.1:{server.port}/close/websocket")
    assert await ws.read_message() is None
    assert (ws.close_code, ws.close_reason) == (3000, "Go away!")


@pytest.mark.gen_test
async def test_websocket_broken_json_drops_the_connection_quietly(server: Server) -> None:
    ws = await websocket_connect(f"ws://127.0.0.1:{server.port}{server.session()}/websocket")
    assert await ws.read_message() == "o"
    await ws.write_message('["a')
    assert await ws.read_message() is None


# -- RFC 6455 framing (gateway/sockjs/rfc6455.py: frames on an asyncio transport after Tornado's upgrade) --

UPGRADE = (b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def client_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True, first: int = 0) -> bytes:
    """A client's frame: masked (as RFC 6455 requires of clients) unless told otherwise."""
    head = bytes([(0x80 if fin else 0) | first | opcode])
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 0x10000:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = b"\x5a\x17\xc3\x09"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(stream: IOStream) -> tuple[int, bytes]:
    """The server's next frame: (its first byte, its payload)."""
    first, length = await stream.read_bytes(2)
    assert not length & 0x80, "server frames are not masked"
    length &= 0x7F
    if length == 126:
        length = int.from_bytes(await stream.read_bytes(2), "big")
    elif length == 127:
        length = int.from_bytes(await stream.read_bytes(8), "big")
    return first, await stream.read_bytes(length) if length else b""


async def upgraded(server: Server, early: bytes = b"", headers: bytes = b"") -> tuple[IOStream, bytes]:
    """A websocket to a new /echo session, ``early`` sent in the same write as the handshake; (stream, 101 head)."""
    stream = await server.raw(UPGRADE % (server.session() + "/websocket").encode() + headers + b"\r\n" + early)
    head = await stream.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await read_frame(stream) == (0x81, b"o")
    return stream, head


async def closed_by_server(stream: IOStream) -> bytes:
    """What the server sends until it closes the connection."""
    return await asyncio.wait_for(stream.read_until_close(), 10)


@pytest.mark.gen_test
async def test_frames_sent_with_the_handshake_split_or_batched_are_all_read(server: Server) -> None:
    stream, head = await upgraded(server, early=client_frame(1, b'["early"]'),
                                  headers=b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
    assert b"sec-websocket-extensions" not in head.lower()  # no compression is negotiated
    assert await read_frame(stream) == (0x81, b'a["early"]')
    for byte in client_frame(1, b'["split"]'):  # one byte per write
        await stream.write(bytes([byte]))
    assert await read_frame(stream) == (0x81, b'a["split"]')
    await stream.write(client_frame(1, b'["one"]') + client_frame(1, b'["two"]'))
    echoed: list[str] = []
    while len(echoed) < 2:  # in one frame when both are read at once (the session flushes once a loop turn)
        first, payload = await read_frame(stream)
        echoed += json.loads(payload[1:])
    assert echoed == ["one", "two"]
    big = json.dumps(["x" * 70000]).encode()  # a 64-bit length
    await stream.write(client_frame(1, big))
    assert await read_frame(stream) == (0x81, b"a" + big)
    stream.close()


@pytest.mark.gen_test
async def test_fragments_with_a_ping_between_make_one_message_and_the_ping_gets_its_pong(server: Server) -> None:
    stream, _ = await upgraded(server)
    await stream.write(client_frame(1, b'["fr', fin=False) + client_frame(9, b"are you there")
                       + client_frame(0, b"agm", fin=False) + client_frame(0, b'ent"]'))
    assert await read_frame(stream) == (0x8A, b"are you there")
    assert await read_frame(stream) == (0x81, b'a["fragment"]')
    stream.close()


@pytest.mark.gen_test
async def test_a_client_close_is_answered_with_its_code(server: Server) -> None:
    stream, _ = await upgraded(server)
    await stream.write(client_frame(8, (1000).to_bytes(2, "big") + b"bye"))
    assert await closed_by_server(stream) == b"\x88\x02\x03\xe8"


@pytest.mark.gen_test
async def test_an_unmasked_client_frame_is_closed_with_1002(server: Server) -> None:
    stream, _ = await upgraded(server)
    await stream.write(client_frame(1, b'["x"]', masked=False))
    assert (await closed_by_server(stream))[:4] == b"\x88\x1e\x03\xea"  # 1002 and a reason


@pytest.mark.gen_test
async def test_a_message_over_the_limit_is_closed_with_1009_before_its_payload_comes(server: Server) -> None:
    stream, _ = await upgraded(server)
    await stream.write(client_frame(1, b"", fin=True)[:1] + bytes([0x80 | 127]) + (2**40).to_bytes(8, "big") + b"mask")
    assert (await closed_by_server(stream)).startswith(b"\x88\x11\x03\xf1message too big")


@pytest.mark.gen_test
@pytest.mark.parametrize("bad", [client_frame(1, b'["\xff"]'),            # not UTF-8
                                 client_frame(1, b'["x"]', first=0x40),   # a reserved bit: no extension agreed
                                 client_frame(3, b"x"),                   # an unknown opcode
                                 client_frame(9, b"x", fin=False),        # a fragmented control frame
                                 client_frame(0, b'["x"]')])              # a continuation of nothing
async def test_protocol_errors_drop_the_connection_quietly(server: Server, bad: bytes) -> None:
    stream, _ = await upgraded(server)
    await stream.write(bad)
    assert await closed_by_server(stream) == b""


@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_does_not_read_its_answers_is_not_read_either(server: Server) -> None:
    stream, _ = await upgraded(server)
    count, text = 200, "x" * 60000
    sending = stream.write(client_frame(1, json.dumps([text]).encode()) * count)  # 12 MB to echo, none read yet

    def paused() -> list[FrameProtocol]:  # the server's side of this connection, once it stopped reading
        return [p for p in gc.get_objects() if isinstance(p, FrameProtocol) and p._paused]

    await wait_until(paused)
    assert paused()[0].unsent() < 1 << 20  # what it holds: the high-water mark and one read's echoes, not 12 MB
    echoed = 0
    while echoed < count:  # reading resumes once the client reads
        _, payload = await read_frame(stream)
        echoed += len(json.loads(payload[1:]))
    await sending
    stream.close()
