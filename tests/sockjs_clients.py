"""SockJS clients for the tests, speaking the wire protocol over real sockets.

Each has ``open()``, ``send(obj)``, ``recv()`` (the next message as a dict),
``request(...)`` (send a request message, wait for the response with its id)
and ``close()``.  Messages that arrive while waiting for something else are
kept, in order, for the next ``recv``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient
from tornado.iostream import IOStream
from tornado.tcpclient import TCPClient
from tornado.websocket import websocket_connect

from events.model import EVENT_KINDS

TIMEOUT = 10


def session_url(base: str, transport: str) -> str:
    return f"{base}/ws/{secrets.randbelow(1000):03d}/{secrets.token_hex(8)}/{transport}"


class Client:
    """Frame handling shared by every transport: 'o', 'h', 'a[...]', 'c[...]'."""

    name = "base"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.opened = asyncio.get_event_loop().create_future()
        self.close_frame: list[Any] | None = None
        self.closed = asyncio.Event()
        self.heartbeat = asyncio.Event()  # set by each 'h' frame
        self.session_id = ""  # the SockJS session id in its URLs (none on the raw websocket)
        self._seq = 0

    def on_frame(self, frame: str) -> None:
        if frame == "o":
            if not self.opened.done():
                self.opened.set_result(True)
        elif frame == "h":
            self.heartbeat.set()
        elif frame.startswith("a"):
            for text in json.loads(frame[1:]):
                self.inbox.put_nowait(json.loads(text))
        elif frame.startswith("c"):
            self.close_frame = json.loads(frame[1:])
            self.closed.set()
        else:
            raise AssertionError(f"unexpected SockJS frame {frame!r}")

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def send(self, *messages: Any) -> None:
        """Send messages in one SockJS frame; dicts are JSON-encoded, strings go as they are."""
        await self.send_frame(json.dumps([m if isinstance(m, str) else json.dumps(m) for m in messages]))

    async def send_frame(self, frame: str) -> None:
        raise NotImplementedError

    def next_id(self) -> str:
        self._seq += 1
        return f"r{self._seq}"

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                      headers: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Send a request message (``fields``: more of its fields, e.g. ``accept_json_body=True``); its response."""
        message: dict[str, Any] = {"type": "request", "id": self.next_id(), "method": method, "path": path, **fields}
        if body is not None:
            message["body"] = body
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if all_headers:
            message["headers"] = all_headers
        await self.send(message)
        return await self.wait_for(lambda m: m.get("type") == "response" and m.get("id") == message["id"])

    async def wait_for(self, predicate: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first message matching ``predicate``; the others stay queued, in order."""
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.recv(timeout)
                if predicate(message):
                    return message
                skipped.append(message)
        finally:
            rest = []
            while not self.inbox.empty():
                rest.append(self.inbox.get_nowait())
            for message in skipped + rest:
                self.inbox.put_nowait(message)

    async def login(self, username: str, password: str) -> str:
        reply = await self.request("POST", "/tokens", {"username": username, "password": password})
        assert reply["status"] == 201, reply
        return json.loads(reply["body"])["token"]["value"]


class WebsocketClient(Client):
    """The SockJS websocket transport: ``/ws/<server>/<session>/websocket``."""

    name = "websocket"
    path = "websocket"

    async def open(self) -> "WebsocketClient":
        url = session_url(self.base_url, self.path).replace("http://", "ws://")
        self.session_id = url.rsplit("/", 2)[-2]
        self.ws = await websocket_connect(url, on_message_callback=self._on_message)
        await asyncio.wait_for(self.opened, TIMEOUT)
        return self

    def _on_message(self, message: str | bytes | None) -> None:
        if message is None:
            self.closed.set()
        else:
            self.on_frame(message if isinstance(message, str) else message.decode())

    async def send_frame(self, frame: str) -> None:
        await self.ws.write_message(frame)

    async def close(self) -> None:
        self.ws.close()
        await asyncio.wait_for(self.closed.wait(), TIMEOUT)


class RawWebsocketClient(WebsocketClient):
    """``/ws/websocket``: one plain websocket message per SockJS message, no framing."""

    name = "raw-websocket"

    async def open(self) -> "RawWebsocketClient":
        url = f"{self.base_url}/ws/websocket".replace("http://", "ws://")
        self.ws = await websocket_connect(url, on_message_callback=self._on_message)
        return self

    def _on_message(self, message: str | bytes | None) -> None:
        if message is None:
            self.closed.set()
        else:
            self.inbox.put_nowait(json.loads(message))

    async def send(self, *messages: Any) -> None:
        for m in messages:
            await self.ws.write_message(m if isinstance(m, str) else json.dumps(m))


class HttpTransportClient(Client):
    """The xhr transports: receiving on raw HTTP/1.1 connections (closed for real on ``close``), sending on xhr_send."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.http = AsyncHTTPClient()
        self.url = session_url(base_url, "")  # ends with the slash before the transport
        self.session_id = self.url.rstrip("/").rsplit("/", 1)[-1]
        self.streams: list[IOStream] = []
        self.task: asyncio.Future[Any] | None = None

    async def open(self) -> "HttpTransportClient":
        self.task = asyncio.ensure_future(self._receive())
        await asyncio.wait_for(self.opened, TIMEOUT)
        return self

    async def send_frame(self, frame: str) -> None:
        response = await self.http.fetch(self.url + "xhr_send", method="POST", body=frame, raise_error=False)
        assert response.code == 204, (response.code, response.body)

    async def post(self, transport: str) -> tuple[IOStream, str]:
        """POST to a receiving transport; the stream (left after the response headers) and the headers."""
        parts = urlsplit(self.url + transport)
        stream = await TCPClient().connect(parts.hostname, parts.port)
        self.streams.append(stream)
        await stream.write(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: 0\r\n\r\n".encode())
        head = (await stream.read_until(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 200"), head
        return stream, head.lower()

    @staticmethod
    async def chunks(stream: IOStream) -> AsyncIterator[bytes]:
        while True:
            size = int((await stream.read_until(b"\r\n")).strip(), 16)
            data = await stream.read_bytes(size + 2)
            if size == 0:
                return
            yield data[:-2]

    async def _receive(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Drop the receiving connection; the server closes the session after its disconnect delay."""
        self.closed.set()
        if self.task is not None:
            self.task.cancel()
        for stream in self.streams:
            stream.close()


class XhrPollingClient(HttpTransportClient):
    name = "xhr-polling"

    async def _receive(self) -> None:
        while not self.closed.is_set():
            stream, head = await self.post("xhr")
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            body = await stream.read_bytes(length)
            stream.close()
            self.streams.remove(stream)
            for line in body.decode().splitlines():
                self.on_frame(line)


class XhrStreamingClient(HttpTransportClient):
    name = "xhr-streaming"

    async def _receive(self) -> None:
        while not self.closed.is_set():  # the server ends a stream after response_limit bytes
            stream, head = await self.post("xhr_streaming")
            assert "transfer-encoding: chunked" in head, head
            buffer, prelude = "", True
            async for chunk in self.chunks(stream):
                buffer += chunk.decode()
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    if prelude and set(line) == {"h"}:  # 2048 'h' first, to defeat proxy buffering
                        prelude = False
                        continue
                    prelude = False
                    self.on_frame(line)
            stream.close()
            self.streams.remove(stream)


TRANSPORTS = {c.name: c for c in (WebsocketClient, RawWebsocketClient, XhrPollingClient, XhrStreamingClient)}


async def connect(transport: str, base_url: str) -> Client:
    return await TRANSPORTS[transport](base_url).open()


async def subscribed(transport: str, base_url: str, token: str, **fields: Any) -> Client:
    """A client on ``transport`` whose session is subscribed with ``token``."""
    client = await connect(transport, base_url)
    await client.send({"type": "subscribe", "token": token, **fields})
    reply = await client.recv()
    assert reply["type"] == "subscribed", reply
    return client


async def next_event(client: Client) -> dict[str, Any]:
    """The next event (receipt, delivery, deferred, failed) the client gets (other messages are passed over)."""
    return await client.wait_for(lambda m: m.get("type") in EVENT_KINDS)


def without_cursor(reply: dict[str, Any]) -> dict[str, Any]:
    """A ``subscribed`` reply without its ``cursor`` (checked to be one: an opaque, non-empty string)."""
    cursor = reply.get("cursor")
    assert isinstance(cursor, str) and cursor, reply
    return {k: v for k, v in reply.items() if k != "cursor"}
