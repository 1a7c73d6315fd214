"""The subscribed sessions of ``bench/events.py`` (and ``bench/fanout.py``): bare asyncio SockJS
websocket clients, one ``asyncio.Protocol`` per socket, in client processes of their own, each
tallying the events it gets (latency, order, duplicates).

Imported as a sibling module (the scripts run as ``python bench/NAME.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import struct
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from wsframes import FrameSender, xor

CONNECT_CONCURRENCY = 64  # websocket handshakes in flight per client process
SUBSCRIBE_TIMEOUT = 30.0


def cursor_key(cursor: str) -> tuple[int, int | str]:
    """A cursor as something ordered, as the client libraries order them: numbers when all digits
    (SQLite's), else as text (RethinkDB's: one account's sort as text)."""
    return (0, int(cursor)) if cursor.isdigit() else (1, cursor)


@dataclass
class ClientTally:
    """What one client process saw, across its sessions."""

    latencies: array = field(default_factory=lambda: array("d"))  # seconds, one per event received
    stamps: array = field(default_factory=lambda: array("d"))  # when each of those was written (epoch seconds)
    duplicates: int = 0
    out_of_order: int = 0
    foreign: int = 0  # events whose subject is not a bench stamp
    last_event: float = 0.0


class SockJSClient(FrameSender, asyncio.Protocol):
    """One SockJS websocket session, subscribed with a token; counts the ``receipt`` events it gets."""

    def __init__(self, index: int, token: str, host: str, port: int, tally: ClientTally, counter: Any) -> None:
        self.index = index
        self.token = token
        self.host = f"{host}:{port}"
        self.tally = tally
        self.counter = counter
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.seqs: list[int] = []
        self.seen: set[int] = set()
        self.last_cursor: tuple[int, int | str] = (-1, -1)
        self.closed_by_server: str | None = None
        self.errors: list[str] = []

    # -- socket -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        session = secrets.token_hex(8)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /ws/000/{session}/websocket HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_by_server is None:
            self.closed_by_server = f"connection lost ({exc or 'EOF'})"
        self._fail(self.closed_by_server)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake answered {head[:60]!r}")
                self.close()
                return
            self.upgraded = True
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, at = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, at = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, at = struct.unpack_from("!Q", buffer, 2)[0], 10
            mask = b""
            if second & 0x80:  # servers do not mask, but be correct
                mask, at = bytes(buffer[at:at + 4]), at + 4
            if len(buffer) < at + length:
                return
            payload = bytes(buffer[at:at + length])
            del buffer[:at + length]
            if mask:
                payload = xor(payload, mask)
            self._frame(first & 0x80, first & 0x0F, payload, now)

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode in (0, 1, 2):
            self.fragments.append(payload)
            if fin:
                message, self.fragments = b"".join(self.fragments), []
                self._sockjs(message.decode(), now)
        elif opcode == 8:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else None
            reason = payload[2:].decode(errors="replace")
            self.closed_by_server = self.closed_by_server or f"websocket close {code} {reason}"
            self.close()
        elif opcode == 9:
            self.write_frame(0xA, payload)

    # -- SockJS -----------------------------------------------------------------

    def _sockjs(self, frame: str, now: float) -> None:
        kind = frame[:1]
        if kind == "o":
            self.send_json({"type": "subscribe", "token": self.token})
        elif kind == "a":
            for text in json.loads(frame[1:]):
                self._message(json.loads(text), now)
        elif kind == "c":
            self.closed_by_server = f"sockjs close {frame[1:]}"
            self.close()
        # "h" (heartbeat): nothing to do

    def _message(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        if kind == "receipt":
            self._event(message, now)
        elif kind == "subscribed":
            if not self.subscribed.done():
                self.subscribed.set_result(None)
        else:
            self.errors.append(json.dumps(message)[:200])
            self._fail(f"unexpected message {message}")

    def _event(self, event: dict[str, Any], now: float) -> None:
        tally = self.tally
        parts = str(event.get("name", "")).split()
        if len(parts) != 3 or parts[0] != "bench":
            tally.foreign += 1
            return
        seq, stamp = int(parts[1]), float(parts[2])
        cursor = cursor_key(str(event["cursor"]))
        if seq in self.seen:
            tally.duplicates += 1
            return
        if cursor <= self.last_cursor:
            tally.out_of_order += 1
        self.last_cursor = max(self.last_cursor, cursor)
        self.seen.add(seq)
        self.seqs.append(seq)
        tally.latencies.append(now - stamp)
        tally.stamps.append(stamp)
        tally.last_event = now
        self.counter.value += 1

    def _write(self, frame: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(frame)

    def _fail(self, reason: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(reason))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


def client_process(number: int, host: str, port: int, sessions: list[tuple[int, str]],
                   pipe: multiprocessing.connection.Connection, counter: Any, client_class: Any = None) -> None:
    """Entry point of one client process: open and subscribe ``sessions``, then count events until told to stop.

    Messages on ``pipe``: this process sends ``("ready", opened, failure
    samples, failures, seconds)`` (or ``("failed", why)``), waits for
    ``"stop"``, sends ``("done", results)`` and exits.  ``counter`` (shared
    memory) counts the events received so far, for the parent's drain loop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and stops us through the pipe
    try:
        asyncio.run(_client(host, port, sessions, pipe, counter, client_class or SockJSClient))
    except Exception as exc:  # report, so the parent does not wait for nothing
        pipe.send(("failed", f"client {number}: {exc!r}"))


async def _client(host: str, port: int, sessions: list[tuple[int, str]],
                  pipe: multiprocessing.connection.Connection, counter: Any, client_class: Any) -> None:
    loop = asyncio.get_running_loop()
    tally = ClientTally()
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(index: int, token: str) -> SockJSClient | str:
        problem = ""
        for _ in range(3):  # a handshake can be refused when the listen backlog is full
            async with limit:
                client: SockJSClient | None = None
                try:
                    _, client = await loop.create_connection(
                        lambda: client_class(index, token, host, port, tally, counter), host, port)
                    await asyncio.wait_for(client.subscribed, SUBSCRIBE_TIMEOUT)
                    return client
                except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                    problem = f"session {index}: {exc!r}"
                    if client is not None:
                        client.close()
            await asyncio.sleep(0.5)
        return problem

    started = time.monotonic()
    opened = await asyncio.gather(*(open_one(index, token) for index, token in sessions))
    clients = [c for c in opened if isinstance(c, SockJSClient)]
    failures = [c for c in opened if isinstance(c, str)]
    pipe.send(("ready", len(clients), failures[:5], len(failures), time.monotonic() - started))

    stop = asyncio.Event()
    loop.add_reader(pipe.fileno(), stop.set)
    cpu_before = time.process_time()
    await stop.wait()
    loop.remove_reader(pipe.fileno())
    pipe.recv()
    cpu = time.process_time() - cpu_before
    closed = [c.closed_by_server for c in clients if c.closed_by_server]
    errors = [e for c in clients for e in c.errors]
    pipe.send(("done", {
        "latencies": tally.latencies.tobytes(),
        "stamps": tally.stamps.tobytes(),
        "received": {c.index: c.seqs for c in clients},
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "foreign": tally.foreign,
        "last_event": tally.last_event,
        "closed": len(closed),
        "closed_samples": closed[:5],
        "errors": errors[:5],
        "error_count": len(errors),
        "cpu": cpu,
    }))
    for client in clients:
        client.close()
