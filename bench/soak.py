"""Soak: thousands of subscribed SockJS sessions on every main transport, under a steady mix, for minutes.

Run by hand (from the repository root, with the project installed)::

    python bench/soak.py --minutes 10 --sessions 2000
    python bench/soak.py --minutes 1 --sessions 200          # a smoke run

The script starts one gateway (``python -m gateway serve`` through
``GatewayProcess``) in a temporary folder: SQLite store, HTTP and SMTP on free
ports of 127.0.0.1, ``--ws-disconnect-delay`` 5 s and a connection limit well
above the session count.  It raises its own open-file soft limit to the hard
one (the gateway does the same for itself), registers one account per
``--per-account`` sessions (10), and opens ``--sessions`` SockJS sessions, each
subscribed with its account's token.  Each account's sessions are spread over
the transports: 60 % websocket (``/ws/<server>/<session>/websocket``), 20 %
xhr-streaming (POST ``.../xhr_streaming``, reopened when the server ends a
stream at its response limit) and 20 % xhr-polling (POST ``.../xhr``, sending
with POST ``.../xhr_send``).  Every client is a bare asyncio stream client: no
HTTP or websocket library, one task per session.

Then, for ``--minutes``, a steady mix runs:

* mail in over SMTP, ``--mail-rate`` messages a second (20), each to a random
  account, with a unique subject ``soak <seq>``, on ``--smtp-connections``
  persistent connections (4);
* tunneled API calls, ``--api-rate`` a second (4), on random subscribed
  sessions: ``GET /accounts/me`` and ``GET /emails?limit=20`` alternately, with
  the session's account token;
* reconnects, ``--reconnect-rate`` a second (2): a random idle session is
  closed by the client and reopened on the same transport, subscribing with
  ``since`` = the last cursor it received (its first ``subscribed`` cursor if
  no event came yet).  A session the server closes is resumed the same way
  (and counted as an error).

Each minute one line: elapsed time, sessions open, events received, errors,
the gateway's RSS (``VmRSS``) and open descriptors (``/proc/<pid>/fd``), and
the client's own counts.  After the last minute the load stops, and the
script waits up to ``--drain`` seconds (30) for every event still expected.

What is counted, per logical session (a slot, kept across its reconnects):

* errors: any ``error`` or ``unsubscribed`` message, any tunneled response
  that is not 2xx or never comes (30 s), any SMTP failure, any session closed
  by the server (websocket close or EOF, a SockJS ``c`` frame, a poll or stream
  that fails, a second ``o`` frame: the server forgot the session), a session
  that cannot be opened or subscribed, a ``since`` subscription answered with
  ``recovered`` other than true, an event out of cursor order or at or before
  the slot's first ``subscribed`` cursor, an event for another account;
* lost: an event the slot should have got and never did.  An email's event is
  due to a slot when its cursor (as any session received it) is after the
  slot's first ``subscribed`` cursor, or, if no session received it at all,
  when its SMTP transaction started after that ``subscribed`` arrived;
* duplicated: the same cursor twice on one slot, across its reconnects.

Exit status 0 when errors, lost and duplicated are all zero, else 1.  Only
loopback traffic; every loop is bounded and the script stops by itself.  The
temporary folder (server log, database) is kept when the run is not clean, or
with ``--keep``.  Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_process import GatewayProcess, free_port
from wsframes import client_frame, xor

HOST = "127.0.0.1"
OPEN_TIMEOUT = 30.0  # connect, SockJS open frame, and subscribed: each
REQUEST_TIMEOUT = 30.0  # a tunneled request not answered by then is an error
READ_TIMEOUT = 90.0  # a poll or stream silent that long (heartbeats come every 25 s) is dead
OPEN_CONCURRENCY = 64
SETUP_CONCURRENCY = 8
SAMPLES = 5  # error samples kept per kind
KINDS = ("websocket",) * 6 + ("xhr-streaming",) * 2 + ("xhr-polling",) * 2  # 60/20/20 within each account
SUBJECT = re.compile(r"soak (\d+)$")


def ckey(cursor: str) -> Any:
    """A cursor as something ordered (the SQLite store's cursors are integers; opaque otherwise)."""
    return int(cursor) if cursor.isdigit() else cursor


def proc_status(pid: int) -> tuple[float, int]:
    """RSS in MB and open descriptors of a process (zeros once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0.0, 0


# -- the load's bookkeeping ------------------------------------------------------------


@dataclass
class Mail:
    account: int
    started: float  # monotonic, before MAIL FROM
    acked: bool = False


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


class Soak:
    """The run's state: slots, mail written, counts, errors."""

    def __init__(self, args: argparse.Namespace, port: int, smtp_port: int) -> None:
        self.args = args
        self.port = port
        self.smtp_port = smtp_port
        self.host_header = f"{HOST}:{port}"
        self.slots: list[Slot] = []
        self.mails: dict[int, Mail] = {}
        self.mails_by_account: list[list[int]] = []
        self.cursor_of: dict[int, str] = {}  # seq -> the cursor its event had
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, list[str]] = collections.defaultdict(list)
        self.events = 0
        self.duplicates = 0
        self.api_sent = 0
        self.api_ok = 0
        self.reconnects = 0
        self.resumes = 0
        self.stream_restarts = 0
        self.smtp_acked = 0
        self.started = time.monotonic()
        self.load_running = False
        self.shutting_down = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.next_request = 0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples[kind]) < SAMPLES:
            self.samples[kind].append(f"[{time.monotonic() - self.started:7.1f} s] {detail[:300]}")

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- events ----------------------------------------------------------------

    def on_subscribed(self, slot: Slot, message: dict[str, Any], since: str | None) -> None:
        if since is None:
            slot.start_cursor = slot.last_cursor = str(message.get("cursor"))
            slot.subscribed_at = time.monotonic()
        elif message.get("recovered") is not True:
            self.error("since not recovered", f"slot {slot.index} since {since}: {json.dumps(message)}")

    def on_event(self, slot: Slot, message: dict[str, Any]) -> None:
        self.events += 1
        cursor = str(message.get("cursor"))
        if cursor in slot.cursors:
            self.duplicates += 1
            if len(self.samples["(duplicate)"]) < SAMPLES:
                self.samples["(duplicate)"].append(f"slot {slot.index} ({slot.kind}): {json.dumps(message)[:200]}")
            return
        slot.cursors.add(cursor)
        match = SUBJECT.match(str(message.get("name", "")))
        seq = int(match.group(1)) if match else -1
        mail = self.mails.get(seq)
        if message.get("type") != "receipt" or mail is None or mail.account != slot.account:
            self.error("foreign event", f"slot {slot.index} account {slot.account}: {json.dumps(message)[:200]}")
            return
        if seq in slot.seqs:
            self.error("same email twice", f"slot {slot.index}: {json.dumps(message)[:200]}")
        slot.seqs.add(seq)
        known = self.cursor_of.setdefault(seq, cursor)
        if known != cursor:
            self.error("two cursors for one email", f"seq {seq}: {known} and {cursor}")
        if slot.start_cursor is not None and ckey(cursor) <= ckey(slot.start_cursor):
            self.error("event before the subscribed cursor",
                       f"slot {slot.index}: cursor {cursor} <= subscribed {slot.start_cursor}")
        if slot.last_cursor is not None and ckey(cursor) <= ckey(slot.last_cursor):
            self.error("event out of cursor order", f"slot {slot.index}: {cursor} after {slot.last_cursor}")
        else:
            slot.last_cursor = cursor

    def missing(self, slot: Slot) -> list[int]:
        """The seqs due to ``slot`` that it never received."""
        if slot.start_cursor is None:
            return []
        start = ckey(slot.start_cursor)
        out = []
        for seq in self.mails_by_account[slot.account]:
            if seq in slot.seqs:
                continue
            cursor = self.cursor_of.get(seq)
            if cursor is not None:
                due = ckey(cursor) > start
            else:
                mail = self.mails[seq]
                due = mail.acked and mail.started > slot.subscribed_at
            if due:
                out.append(seq)
        return out

    # -- opening, reconnecting, resuming ------------------------------------------------

    async def connect(self, slot: Slot, attempts: int = 3) -> bool:
        """Open a session for ``slot`` on its transport and subscribe (with ``since`` once it has a cursor)."""
        for attempt in range(attempts):
            conn = TRANSPORTS[slot.kind](self, slot)
            try:
                await conn.open(slot.last_cursor)
                slot.conn = conn
                return True
            except (TimeoutError, OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
                self.error("session open failed",
                           f"slot {slot.index} ({slot.kind}) attempt {attempt + 1}: {exc!r}")
                await conn.close()
            await asyncio.sleep(1.0)
        return False

    async def reconnect(self, slot: Slot) -> None:
        try:
            if slot.conn is not None:
                await slot.conn.close()
            slot.conn = None
            if not self.shutting_down and await self.connect(slot):
                self.reconnects += 1
        finally:
            slot.busy = False

    def session_lost(self, slot: Slot, conn: Conn) -> None:
        """The server closed ``conn``: resume the slot as a client would."""
        if slot.conn is conn and not slot.busy and not self.shutting_down:
            slot.busy = True
            self.resumes += 1
            self.spawn(self.reconnect(slot))

    # -- the load --------------------------------------------------------------------

    def pick(self, idle: bool) -> Slot | None:
        for _ in range(20):
            slot = random.choice(self.slots)
            if slot.busy or not slot.ready:
                continue
            if idle and not slot.conn.idle:  # type: ignore[union-attr]
                continue
            return slot
        return None

    async def api_calls(self, until: float) -> None:
        paths = ("/accounts/me", "/emails?limit=20")
        interval = 1.0 / self.args.api_rate
        next_at = time.monotonic()
        while True:
            next_at += interval
            if next_at > until:
                return
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            slot = self.pick(idle=False)
            if slot is None or slot.conn is None:
                continue
            self.next_request += 1
            rid = f"r{self.next_request}"
            path = paths[self.next_request % 2]
            slot.conn.pending[rid] = (time.monotonic(), path)
            self.api_sent += 1
            slot.conn.send({"type": "request", "id": rid, "method": "GET", "path": path,
                            "headers": {"Authorization": f"Bearer {slot.token}"}})

    async def reconnects_loop(self, until: float) -> None:
        interval = 1.0 / self.args.reconnect_rate
        next_at = time.monotonic()
        while True:
            next_at += interval
            if next_at > until:
                return
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            slot = self.pick(idle=True)
            if slot is None:
                continue
            slot.busy = True
            self.spawn(self.reconnect(slot))

    def sweep(self) -> None:
        """Tunneled requests unanswered for too long are errors (and forgotten)."""
        now = time.monotonic()
        for slot in self.slots:
            conn = slot.conn
            if conn is None or not conn.pending:
                continue
            for rid, (sent, path) in list(conn.pending.items()):
                if now - sent > REQUEST_TIMEOUT:
                    del conn.pending[rid]
                    self.error("tunneled request unanswered", f"slot {slot.index} ({slot.kind}) {rid} GET {path}")

    async def write_mail(self, until: float) -> None:
        """``--mail-rate`` messages a second to random accounts, over persistent SMTP connections."""
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        accounts = len(self.mails_by_account)

        async def sender() -> None:
            reader = writer = None
            while True:
                seq = await queue.get()
                if seq is None:
                    break
                account = random.randrange(accounts)
                mail = Mail(account, time.monotonic())
                self.mails[seq] = mail
                self.mails_by_account[account].append(seq)
                address = f"soak{account:04d}@localhost"
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(HOST, self.smtp_port)
                        await smtp_expect(reader, 220)
                        writer.write(b"EHLO soak.localhost\r\n")
                        await smtp_expect(reader, 250)
                    assert reader is not None
                    mail.started = time.monotonic()
                    for command, wanted in ((b"MAIL FROM:<sender@example.com>\r\n", 250),
                                            (f"RCPT TO:<{address}>\r\n".encode(), 250), (b"DATA\r\n", 354)):
                        writer.write(command)
                        await smtp_expect(reader, wanted)
                    writer.write(
                        f"From: sender@example.com\r\nTo: {address}\r\nSubject: soak {seq}\r\n"
                        f"Message-ID: <soak-{seq}-{secrets.token_hex(4)}@example.com>\r\n\r\n"
                        f"Message {seq} of the soak test.\r\n.\r\n".encode())
                    await smtp_expect(reader, 250)
                    mail.acked = True
                    self.smtp_acked += 1
                except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError, SMTPError) as exc:
                    self.error("SMTP failure", f"message {seq} to {address}: {exc!r}")
                    if writer is not None:
                        writer.close()
                    reader = writer = None
            if writer is not None:
                writer.write(b"QUIT\r\n")
                writer.close()

        senders = [asyncio.ensure_future(sender()) for _ in range(self.args.smtp_connections)]
        interval = 1.0 / self.args.mail_rate
        next_at = time.monotonic()
        seq = 0
        while True:
            next_at += interval
            if next_at > until:
                break
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            queue.put_nowait(seq)
            seq += 1
        for _ in senders:
            queue.put_nowait(None)
        await asyncio.gather(*senders)


class SMTPError(Exception):
    pass


async def smtp_expect(reader: asyncio.StreamReader, wanted: int) -> None:
    """Read one (possibly multi-line) SMTP reply; SMTPError unless its code is ``wanted``."""
    while True:
        line = (await asyncio.wait_for(reader.readline(), 30)).decode(errors="replace")
        if not line:
            raise ConnectionError("SMTP connection closed")
        if line[3:4] != "-":
            if int(line[:3]) != wanted:
                raise SMTPError(line.strip())
            return


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


async def make_accounts(port: int, count: int) -> list[str]:
    """``count`` accounts ``soak0000``..., each logged in once: their tokens."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    password = "soak-" + secrets.token_hex(8)
    host = f"{HOST}:{port}"

    async def one(n: int) -> str:
        credentials = json.dumps({"username": f"soak{n:04d}", "password": password}).encode()
        async with limit:
            status, body = await http_request(host, port, "POST", "/accounts", credentials)
            if status != 201:
                raise RuntimeError(f"registering soak{n:04d} answered {status}: {body[:200]!r}")
            status, body = await http_request(host, port, "POST", "/tokens", credentials)
            if status != 201:
                raise RuntimeError(f"logging soak{n:04d} in answered {status}: {body[:200]!r}")
        return str(json.loads(body)["token"]["value"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


# -- the SockJS clients ------------------------------------------------------------------


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # no "exception was never retrieved" for a session nobody waits on any more


class Conn:
    """One SockJS session of a slot: the protocol part, shared by the transports."""

    def __init__(self, soak: Soak, slot: Slot) -> None:
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


class WebSocketConn(Conn):
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
        self.write_frame(0x1, json.dumps([json.dumps(message)]).encode())

    def write_frame(self, opcode: int, payload: bytes) -> None:
        if self.writer is None or self.writer.is_closing():
            return
        self.writer.write(client_frame(opcode, payload))

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

    def __init__(self, soak: Soak, slot: Slot) -> None:
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


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def wait_listening(server: GatewayProcess, ports: list[int]) -> None:
    def ready() -> bool | None:
        for port in ports:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
            except OSError:
                return None
        return True

    server.wait_for(ready, 60)


def fmt_elapsed(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


async def run(args: argparse.Namespace, server: GatewayProcess, port: int, smtp_port: int) -> int:
    soak = Soak(args, port, smtp_port)
    accounts = max(1, math.ceil(args.sessions / args.per_account))
    tokens = await make_accounts(port, accounts)
    soak.mails_by_account = [[] for _ in range(accounts)]
    soak.slots = [Slot(i, i % accounts, tokens[i % accounts], KINDS[(i // accounts) % len(KINDS)])
                  for i in range(args.sessions)]
    kinds = collections.Counter(slot.kind for slot in soak.slots)
    print(f"  {accounts} accounts registered; opening {args.sessions} sessions ("
          + ", ".join(f"{kinds[k]} {k}" for k in TRANSPORTS) + ")", flush=True)

    limit = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(slot: Slot) -> None:
        async with limit:
            await soak.connect(slot)

    began = time.monotonic()
    await asyncio.gather(*(open_one(slot) for slot in soak.slots))
    held = sum(slot.ready for slot in soak.slots)
    rss, fds = proc_status(server.pid)
    print(f"  {held} sessions open and subscribed in {time.monotonic() - began:.1f} s "
          f"(server RSS {rss:.1f} MB, {fds} fds); load for {args.minutes:g} min: {args.mail_rate:g} mails/s, "
          f"{args.api_rate:g} API calls/s, {args.reconnect_rate:g} reconnects/s", flush=True)

    def line(elapsed: float) -> tuple[float, int]:
        rss, fds = proc_status(server.pid)
        crss, cfds = proc_status(os.getpid())
        open_now = sum(slot.ready for slot in soak.slots)
        print(f"  {fmt_elapsed(elapsed):>5}  open {open_now}/{args.sessions}  events {soak.events}  "
              f"errors {sum(soak.errors.values())}  server RSS {rss:.1f} MB  fds {fds}  | client: "
              f"mails {soak.smtp_acked}  api {soak.api_ok}/{soak.api_sent}  reconnects {soak.reconnects}  "
              f"resumes {soak.resumes}  stream restarts {soak.stream_restarts}  RSS {crss:.1f} MB  fds {cfds}",
              flush=True)
        return rss, fds

    start = time.monotonic()
    until = start + args.minutes * 60
    soak.load_running = True
    load = [asyncio.ensure_future(coro) for coro in
            (soak.write_mail(until), soak.api_calls(until), soak.reconnects_loop(until))]

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(1)
            soak.sweep()

    sweeping = asyncio.ensure_future(sweeper())
    warm = end = (0.0, 0)
    minute = 0
    while True:
        minute += 1
        at = min(start + minute * 60, until)
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        figures = line(at - start)
        if minute == 1:
            warm = figures
        if at >= until:
            end = figures
            break
    await asyncio.gather(*load)
    soak.load_running = False

    # drain: in-flight reconnects and requests finish, then every expected event should be there
    drain_start = time.monotonic()
    while time.monotonic() - drain_start < args.drain:
        if not soak.tasks and not any(slot.conn is not None and slot.conn.pending for slot in soak.slots) \
                and all(not soak.missing(slot) for slot in soak.slots):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # late duplicates would show up here
    drained = time.monotonic() - drain_start
    sweeping.cancel()
    for slot in soak.slots:
        conn = slot.conn
        if conn is not None:
            for rid, (_, path) in conn.pending.items():
                soak.error("tunneled request unanswered", f"slot {slot.index} ({slot.kind}) {rid} GET {path} (at the end)")
            conn.pending.clear()
    soak.shutting_down = True
    lost_by_kind: collections.Counter[str] = collections.Counter()
    lost_samples: list[str] = []
    expected = 0
    for slot in soak.slots:
        missing = soak.missing(slot)
        expected += len(missing) + len(slot.seqs)
        lost_by_kind[slot.kind] += len(missing)
        if missing and len(lost_samples) < SAMPLES:
            lost_samples.append(f"slot {slot.index} ({slot.kind}, account {slot.account}, subscribed at cursor "
                                f"{slot.start_cursor}): seqs {missing[:5]} (cursors "
                                f"{[soak.cursor_of.get(s) for s in missing[:5]]})")
    lost = sum(lost_by_kind.values())
    held_end = sum(slot.ready for slot in soak.slots)
    await asyncio.gather(*(slot.conn.close() for slot in soak.slots if slot.conn is not None))
    for task in list(soak.tasks):
        task.cancel()

    errors = sum(soak.errors.values())
    problems = [text for text in server.log_text().splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", text)]
    print(f"\n  load stopped; drained in {drained:.1f} s; {held_end} sessions open at the end")
    print()
    print("  summary                  warm-up (1 min)        end")
    print(f"  server RSS MB            {warm[0]:>15.1f}  {end[0]:>9.1f}")
    print(f"  server open fds          {warm[1]:>15d}  {end[1]:>9d}")
    print(f"  sessions held            {held:>15d}  {held_end:>9d}   of {args.sessions}")
    print(f"  errors                   {errors:>26d}")
    print(f"  lost events              {lost:>26d}   of {expected} expected, {soak.events} received")
    print(f"  duplicated events        {soak.duplicates:>26d}")
    print(f"  mails / API calls        {soak.smtp_acked:>15d}  {soak.api_ok:>9d}   (SMTP 250s, 2xx responses)")
    print(f"  reconnects / resumes     {soak.reconnects:>15d}  {soak.resumes:>9d}   (by the client, after a server close)")
    print(f"  server log warnings+     {len(problems):>26d}")
    for kind, count in sorted(soak.errors.items()):
        print(f"    error {kind}: {count}")
        for sample in soak.samples[kind]:
            print(f"      {sample}")
    if soak.duplicates:
        print(f"    duplicates, e.g.: {soak.samples['(duplicate)']}")
    if lost:
        print(f"    lost by transport: {dict(lost_by_kind)}")
        for sample in lost_samples:
            print(f"      {sample}")
    for text in problems[:10]:
        print(f"    server log: {text[:300]}")
    clean = errors == 0 and lost == 0 and soak.duplicates == 0 and held == args.sessions
    print(f"\n  result: {'PASS' if clean else 'FAIL'}", flush=True)
    return 0 if clean else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Hold N subscribed SockJS sessions (websocket, xhr-streaming, xhr-polling) under a steady "
                    "mix of mail, tunneled API calls and reconnects; count errors, lost and duplicated events, "
                    "and watch the gateway's memory and descriptors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load")
    parser.add_argument("--sessions", type=int, default=2000, help="sessions held")
    parser.add_argument("--per-account", type=int, default=10, help="sessions per account")
    parser.add_argument("--mail-rate", type=float, default=20.0, help="mails a second over SMTP")
    parser.add_argument("--api-rate", type=float, default=4.0, help="tunneled API calls a second")
    parser.add_argument("--reconnect-rate", type=float, default=2.0, help="client reconnects a second")
    parser.add_argument("--smtp-connections", type=int, default=4, help="persistent SMTP connections")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds to wait after the load for the events still expected")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, database)")
    args = parser.parse_args(argv)
    if min(args.minutes, args.mail_rate, args.api_rate, args.reconnect_rate) <= 0 \
            or min(args.sessions, args.per_account, args.smtp_connections) < 1 or args.drain < 0:
        parser.error("every figure must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, _ = raise_nofile()  # before the gateway starts: it inherits it too
    need = args.sessions * 2 + 200
    if soft < need:
        print(f"warning: the open-file limit is {soft}; {args.sessions} sessions need about {need}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    port, smtp_port = free_port(), free_port()
    server = GatewayProcess(workdir, {
        "GATEWAY_PORT": str(port),
        "GATEWAY_SMTP": f"{HOST}:{smtp_port}",
        "GATEWAY_WS_DISCONNECT_DELAY": "5",
        "GATEWAY_MAX_CONNECTIONS": str(max(10000, args.sessions * 3)),
        "GATEWAY_LOG_LEVEL": "info",
    })
    print(f"soak: {args.sessions} sessions, {args.minutes:g} min, on {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}; open-file limit {soft}; gateway in {workdir}", flush=True)
    status = 1
    try:
        wait_listening(server, [port, smtp_port])
        status = asyncio.run(run(args, server, port, smtp_port))
    finally:
        server.stop()
        if args.keep or status != 0:
            print(f"  kept {workdir} (server.log, gateway.db)", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
