"""The sessions of ``bench/soak.py``: SockJS over websocket, xhr-streaming and xhr-polling, each a
hand-written asyncio client (one session: connect, subscribe, tunneled requests, events), and just
enough HTTP/1.1 for them and the set-up.

Imported as a sibling module (the script runs as ``python bench/soak.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsframes import FrameSender, xor

HOST = "127.0.0.1"
OPEN_TIMEOUT = 30.0  # connect, SockJS open frame, and subscribed: each
READ_TIMEOUT = 90.0  # a poll or stream silent that long (heartbeats come every 25 s) is dead


# -- HTTP/1.1, just enough ----------------------------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while (size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16)) > 0:
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readline()
        return b"".join(parts)
    return b""


async def http_request(host_header: str, port: int, method: str, target: str, body: bytes,
                       content_type: str = "application/json") -> tuple[int, bytes]:
    """One request on its own connection (``Connection: close``)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        status, headers = await asyncio.wait_for(read_head(reader), 60)
        content = await asyncio.wait_for(read_body(reader, headers), 60)
        return status, content
    finally:
        writer.close()


# -- the SockJS clients ------------------------------------------------------------------

@dataclass
class Slot:
    """One logical session: an account, a transport, and what it received across its reconnects."""

    index: int
    account: int
    token: str
    kind: str
    conn: Conn | None = None
    busy: bool = False  # being reconnected or resumed
    start_cursor: str | None = None  # of its first subscribed
    subscribed_at: float = 0.0  # monotonic, when that subscribed arrived
    last_cursor: str | None = None
    cursors: set[str] = field(default_factory=set)
    seqs: set[int] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        conn = self.conn
        return conn is not None and conn.ready and not conn.closing and not conn.dead


class Load(Protocol):
    """What a session reports to and asks of the soak that runs it (``soak.Soak``)."""

    port: int
    host_header: str
    api_ok: int
    stream_restarts: int

    def error(self, kind: str, detail: str) -> None: ...
    def on_event(self, slot: Slot, message: dict[str, Any]) -> None: ...
    def on_subscribed(self, slot: Slot, message: dict[str, Any], since: str | None) -> None: ...
    def session_lost(self, slot: Slot, conn: Conn) -> None: ...
    def spawn(self, coro: Any) -> asyncio.Task[Any]: ...


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # no "exception was never retrieved" for a session nobody waits on any more


class Conn:
    """One SockJS session of a slot: the protocol part, shared by the transports."""

    def __init__(self, soak: Load, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        self.soak = soak
        self.slot = slot
        self.path = f"/ws/{random.randrange(1000):03d}/{secrets.token_hex(8)}"
        self.opened: asyncio.Future[None] = loop.create_future()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        for future in (self.opened, self.subscribed):
            future.add_done_callback(_retrieve)
        self.ready = False  # subscribed
        self.closing = False  # closed by us
        self.dead = False  # finished, whoever closed it
        self.since: str | None = None
        self.pending: dict[str, tuple[float, str]] = {}  # request id -> (sent, path)
        self.task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return not self.pending

    async def open(self, since: str | None) -> None:
        await asyncio.wait_for(self.connect(), OPEN_TIMEOUT)
        await asyncio.wait_for(asyncio.shield(self.opened), OPEN_TIMEOUT)
        self.since = since
        message: dict[str, Any] = {"type": "subscribe", "token": self.slot.token}
        if since is not None:
            message["since"] = since
        self.send(message)
        await asyncio.wait_for(asyncio.shield(self.subscribed), OPEN_TIMEOUT)
        self.ready = True

    async def connect(self) -> None:
        raise NotImplementedError

    def send(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the session from the client side and wait until its reading has stopped."""
        self.closing = True
        self.abort()
        if self.task is not None and not self.task.done():
            await asyncio.wait([self.task], timeout=10)
        self.dead = True

    # -- frames and messages ----------------------------------------------------------

    def frame(self, text: str) -> None:
        kind = text[:1]
        if kind == "h":
            return
        if kind == "a":
            for item in json.loads(text[1:]):
                self.message(json.loads(item))
        elif kind == "o":
            if self.opened.done():
                self.ended("a second open frame: the server no longer knew the session")
            else:
                self.opened.set_result(None)
        elif kind == "c":
            self.ended(f"close frame {text[1:]}")
        else:
            self.soak.error("unexpected frame", f"slot {self.slot.index} ({self.slot.kind}): {text[:100]!r}")

    def message(self, message: dict[str, Any]) -> None:
        soak, slot = self.soak, self.slot
        kind = message.get("type")
        if kind in ("receipt", "delivery"):
            if not self.closing:
                soak.on_event(slot, message)
        elif kind == "response":
            request = self.pending.pop(str(message.get("id")), None)
            status = message.get("status")
            if request is None:
                soak.error("response to no request", f"slot {slot.index}: id {message.get('id')}")
            elif isinstance(status, int) and 200 <= status < 300:
                soak.api_ok += 1
            else:
                soak.error("tunneled response not 2xx",
                           f"slot {slot.index} ({slot.kind}) GET {request[1]} -> {status} "
                           f"{str(message.get('body'))[:200]}")
        elif kind == "subscribed":
            if self.subscribed.done():
                soak.error("unexpected message", f"slot {slot.index}: {json.dumps(message)[:200]}")
            else:
                soak.on_subscribed(slot, message, self.since)
                self.subscribed.set_result(None)
        elif kind == "error":
            soak.error("error message", f"slot {slot.index} ({slot.kind}): {json.dumps(message)[:200]}")
            if not self.subscribed.done():
                self.subscribed.set_exception(ConnectionError(f"subscribe answered {message}"))
        elif kind == "unsubscribed":
            soak.error("unsubscribed", f"slot {slot.index} ({slot.kind}): {json.dumps(message)[:200]}")
        else:
            soak.error("unexpected message", f"slot {slot.index}: {json.dumps(message)[:200]}")

    def ended(self, reason: str) -> None:
        """The session is over for a reason other than our own close."""
        if self.dead:
            return
        self.dead = True
        for future in (self.opened, self.subscribed):
            if not future.done():
                future.set_exception(ConnectionError(reason))
        if not self.closing:
            if self.ready:  # before, open() raises and the failed open is the error
                self.soak.error("session closed by the server",
                                f"slot {self.slot.index} ({self.slot.kind}) {self.path}: {reason}")
                self.soak.session_lost(self.slot, self)
            self.abort()


class WebSocketConn(FrameSender, Conn):
    """``/ws/<server>/<session>/websocket``: one socket, frames read with ``readexactly``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.soak.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            f"GET {self.path}/websocket HTTP/1.1\r\nHost: {self.soak.host_header}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        status, _ = await read_head(self.reader)
        if status != 101:
            raise ConnectionError(f"websocket handshake answered {status}")
        self.task = asyncio.ensure_future(self.read_loop())

    async def read_loop(self) -> None:
        reader = self.reader
        reason = "EOF"
        fragments: list[bytes] = []
        try:
            while not self.dead:
                first, second = await reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", await reader.readexactly(8))[0]
                mask = await reader.readexactly(4) if second & 0x80 else b""
                payload = await reader.readexactly(length)
                if mask:
                    payload = xor(payload, mask)
                opcode = first & 0x0F
                if opcode in (0, 1, 2):
                    fragments.append(payload)
                    if first & 0x80:
                        text, fragments = b"".join(fragments).decode(), []
                        self.frame(text)
                elif opcode == 8:
                    code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else None
                    reason = f"websocket close {code} {payload[2:].decode(errors='replace')}"
                    break
                elif opcode == 9:
                    self.write_frame(0xA, payload)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            reason = f"{reason}: {exc!r}" if reason != "EOF" else repr(exc)
        self.ended(reason)

    def send(self, message: dict[str, Any]) -> None:
        self.send_json(message)

    def _write(self, frame: bytes) -> None:
        if self.writer is None or self.writer.is_closing():
            return
        self.writer.write(frame)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()

    async def close(self) -> None:
        self.closing = True
        if self.writer is not None and not self.writer.is_closing():
            self.write_frame(0x8, struct.pack("!H", 1000))  # a clean close: then wait for the server's
            if self.task is not None and not self.task.done():
                await asyncio.wait([self.task], timeout=5)
        await super().close()


class HttpConn(Conn):
    """What the two xhr transports share: sending with ``xhr_send``, one POST at a time (in order),
    each on its own connection."""

    def __init__(self, soak: Load, slot: Slot) -> None:
        super().__init__(soak, slot)
        self.outbox: list[str] = []
        self.sending = False
        self.writer: asyncio.StreamWriter | None = None  # the receiving connection

    @property
    def idle(self) -> bool:
        return not self.pending and not self.outbox and not self.sending

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.append(json.dumps(message))
        if not self.sending:
            self.sending = True
            self.soak.spawn(self.send_loop())

    async def send_loop(self) -> None:
        try:
            while self.outbox and not self.dead:
                batch, self.outbox = self.outbox, []
                status, body = await http_request(self.soak.host_header, self.soak.port, "POST",
                                                  f"{self.path}/xhr_send", json.dumps(batch).encode(),
                                                  "text/plain;charset=UTF-8")
                if status != 204 and not self.closing and not self.dead:
                    self.soak.error("xhr_send failed", f"slot {self.slot.index} ({self.slot.kind}): "
                                                       f"{status} {body[:100]!r}")
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            if not self.closing and not self.dead:
                self.soak.error("xhr_send failed", f"slot {self.slot.index} ({self.slot.kind}): {exc!r}")
        finally:
            self.sending = False

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class XhrStreamingConn(HttpConn):
    """POST ``.../xhr_streaming``: frames, one a line, in a chunked response; reopened when it ends."""

    reader: asyncio.StreamReader

    async def open_stream(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader, self.writer = await asyncio.open_connection(HOST, self.soak.port)
        self.writer.write(f"POST {self.path}/xhr_streaming HTTP/1.1\r\nHost: {self.soak.host_header}\r\n"
                          f"Content-Length: 0\r\n\r\n".encode())
        status, self.headers = await asyncio.wait_for(read_head(self.reader), READ_TIMEOUT)
        if status != 200:
            raise ConnectionError(f"xhr_streaming answered {status}")

    async def connect(self) -> None:
        await self.open_stream()
        self.task = asyncio.ensure_future(self.read_loop())

    async def read_stream(self) -> None:
        """Until the response ends (then return) or fails (raise)."""
        reader = self.reader
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        buffer = b""
        while not self.dead:
            if chunked:
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
                if not line:
                    raise ConnectionError("EOF inside a chunked stream")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readline()
                    return
                data = await asyncio.wait_for(reader.readexactly(size + 2), READ_TIMEOUT)
                data = data[:-2]
            else:
                data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                if not data:
                    return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line:
                    self.frame(line.decode())

    async def read_loop(self) -> None:
        reason = "the stream ended"
        try:
            while not self.dead:
                await self.read_stream()
                if self.dead or self.closing:
                    break
                self.soak.stream_restarts += 1  # the server's response limit: a client opens the next one
                await self.open_stream()
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            reason = repr(exc)
        self.ended(reason)


class XhrPollingConn(HttpConn):
    """POST ``.../xhr``: one frame per response, polled again at once, on a keep-alive connection."""

    reader: asyncio.StreamReader

    async def poll(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(HOST, self.soak.port)
        self.writer.write(f"POST {self.path}/xhr HTTP/1.1\r\nHost: {self.soak.host_header}\r\n"
                          f"Content-Length: 0\r\n\r\n".encode())
        status, headers = await asyncio.wait_for(read_head(self.reader), READ_TIMEOUT)
        body = await asyncio.wait_for(read_body(self.reader, headers), READ_TIMEOUT)
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
        if status != 200:
            raise ConnectionError(f"xhr poll answered {status} {body[:100]!r}")
        for line in body.decode().split("\n"):
            if line:
                self.frame(line)

    async def connect(self) -> None:
        await self.poll()  # the open frame
        self.task = asyncio.ensure_future(self.read_loop())

    async def read_loop(self) -> None:
        reason = "polling stopped"
        try:
            while not self.dead and not self.closing:
                await self.poll()
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            reason = repr(exc)
        self.ended(reason)


TRANSPORTS: dict[str, type[Conn]] = {
    "websocket": WebSocketConn, "xhr-streaming": XhrStreamingConn, "xhr-polling": XhrPollingConn,
}


# -- the run ----------------------------------------------------------------------------
