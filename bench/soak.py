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
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway_process import GatewayProcess, free_port
from soak_clients import HOST, TRANSPORTS, Conn, Slot, http_request

REQUEST_TIMEOUT = 30.0  # a tunneled request not answered by then is an error
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
