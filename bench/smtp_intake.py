"""Inbound mail without the network: CPU per message of what ``handle_RCPT`` and ``handle_DATA`` do
(the recipient lookup, parsing with the email package, storing the copy, its thread and event row),
in one process on a fresh SQLite file, with the message bench/events.py sends.

Steadier than bench/fanout.py on a shared machine (process CPU time, no sockets, no peers); run it
with two trees' code to compare them (``PYTHONPATH`` picks the gateway)::

    python bench/smtp_intake.py --messages 3000 --rounds 5
    PYTHONPATH=/path/to/other/tree python bench/smtp_intake.py --messages 3000 --rounds 5
    python bench/smtp_intake.py --sql        # also the CPU of each kind of SQL statement, per message
    python bench/smtp_intake.py --wal        # also the pages each message writes to the WAL
    python bench/smtp_intake.py --gap 5      # each message after 5 ms idle, as in the live server
    python bench/smtp_intake.py --shape webmail  # a webmail reply instead of the bench's one-line message

``--gap MS`` sleeps before each message and counts only the message's own CPU: the live server at
bench/events.py's 200 messages a second handles each one after an idle gap of about 5 ms, and on
this machine (a virtual machine) the same code runs about 1.8x slower after such a gap than in a
tight loop (its caches are cold), so a saving measured without the gap shows about half its size.

``--sql`` wraps the store's SQLite connection to time every ``execute`` (thread CPU time, which the
neighbours' load does not inflate as much as the wall clock), grouped by the statement's first words.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import Envelope

# this folder's events.py would stand in for the project's events package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import gateway  # noqa: E402
from gateway.mail.smtp_in import InboundHandler  # noqa: E402
import gateway.store.sqlite as sqlite_store  # noqa: E402
from gateway.mail.documents import LISTED  # noqa: E402
from gateway.store import store_from_url  # noqa: E402

DOMAIN = "bench.localhost"


#: statement (its first three words) -> [calls, thread CPU seconds], with --sql
SQL: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])


class TimedConnection:
    """A SQLite connection whose ``execute`` is timed into :data:`SQL`; the rest passes through."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        started = time.thread_time()
        try:
            return self._db.execute(sql, *args)
        finally:
            entry = SQL[" ".join(sql.split()[:3])]
            entry[0] += 1
            entry[1] += time.thread_time() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def message(seq: int, address: str) -> bytes:
    """The message bench/events.py's writer sends."""
    return (f"From: sender@example.com\r\nTo: {address}\r\nSubject: bench {seq} {time.time():.6f}\r\n"
            f"Message-ID: <bench-{seq}-{secrets.token_hex(4)}@example.com>\r\n\r\n"
            f"Message {seq} of the events benchmark.\r\n").encode()


def webmail_message(seq: int, address: str) -> bytes:
    """A reply as webmail sends one: display names, a date, a thread's references, and the text in
    two alternatives (plain and html, quoted-printable), about 1.3 KB."""
    boundary = f"0000000000{secrets.token_hex(5)}"  # a new one for every message, as mail clients make them
    return (f"Date: Tue, 01 Dec 2026 04:{seq % 60:02d}:00 +0100\r\nFrom: Alice Example <alice@example.org>\r\n"
            f"To: Bob Example <{address}>\r\nCc: \"Doe, Jane\" <jane@example.net>\r\n"
            f"Subject: Re: the plan for week {seq}\r\nMessage-ID: <CAF{seq:08d}.{secrets.token_hex(4)}@mail.example.org>\r\n"
            f"In-Reply-To: <CAE{seq:08d}.123456@mail.example.org>\r\nReferences: <CAE{seq:08d}.123456@mail.example.org>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            f"Hi Bob,\r\n\r\nThat works for me. Caf=C3=A9 at ten?\r\n\r\nAlice\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            f"<div dir=3D\"ltr\">Hi Bob,<div><br></div><div>That works for me. Caf=C3=A9 at ten?</div>"
            f"<div><br></div><div>Alice</div></div>\r\n\r\n--{boundary}--\r\n").encode()


SHAPES = {"bench": message, "webmail": webmail_message}


async def run(messages: int, rounds: int, accounts: int, wal: bool, gap: float = 0.0,
              shape: str = "bench") -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        store = store_from_url(f"sqlite:{Path(folder) / 'bench.db'}", listed=LISTED)  # as the server opens it
        await store.open()
        for n in range(accounts):
            await store.insert("usernames", {"id": f"user{n}", "account": f"account{n}"})
            await store.insert("accounts", {"id": f"account{n}", "username": f"user{n}"})
        if wal:  # the WAL emptied: from here it holds every page the messages write
            store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
        handler = InboundHandler(store, DOMAIN)
        SQL.clear()  # the accounts' inserts are not the messages'
        per_message: list[float] = []
        seq = 0
        for _ in range(rounds):
            started = time.process_time()
            slept = 0.0
            for _ in range(messages):
                if gap:  # idle, then count from here: the sleep's own CPU is taken out
                    before = time.process_time()
                    time.sleep(gap)
                    slept += time.process_time() - before
                address = f"user{seq % accounts}@{DOMAIN}"
                envelope = Envelope()
                envelope.mail_from = "sender@example.com"
                assert await handler.handle_RCPT(None, None, envelope, address, []) == "250 OK"  # type: ignore[arg-type]
                envelope.original_content = envelope.content = SHAPES[shape](seq, address)
                reply = await handler.handle_DATA(None, None, envelope)  # type: ignore[arg-type]
                assert reply.startswith("250"), reply
                seq += 1
            per_message.append((time.process_time() - started - slept) / messages * 1e6)
        if wal:
            frames = store._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]  # type: ignore[attr-defined]
            page = store._db.execute("PRAGMA page_size").fetchone()[0]  # type: ignore[attr-defined]
            print(f"WAL: {frames / seq:.1f} pages per message ({frames * (page + 24) / seq / 1024:.1f} KiB)")
        await store.close()
        return per_message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.0, metavar="MS",
                        help="milliseconds idle before each message, as the live server has (default 0)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="bench",
                        help="the message: bench/events.py's (default), or a webmail reply (two alternatives)")
    parser.add_argument("--sql", action="store_true", help="also print the CPU of each kind of SQL statement")
    parser.add_argument("--wal", action="store_true",
                        help="also print the WAL pages written per message (no checkpoint runs meanwhile)")
    args = parser.parse_args()
    if args.sql:
        connect = sqlite_store.connect
        sqlite_store.connect = lambda path: TimedConnection(connect(path))  # type: ignore[assignment,return-value]
    if args.wal:
        sqlite_store.Checkpointer.INTERVAL = 1e6
    rounds = asyncio.run(run(args.messages, args.rounds, args.accounts, args.wal, args.gap / 1000, args.shape))
    print(f"{Path(gateway.__file__).parent.parent}: CPU per message {statistics.median(rounds):.0f} us "
          f"(median of {len(rounds)} rounds: {', '.join(f'{r:.0f}' for r in rounds)})")
    total = args.messages * args.rounds
    for statement, (calls, seconds) in sorted(SQL.items(), key=lambda item: -item[1][1]):
        if calls >= total / 10:  # the per-message ones
            print(f"  {seconds / total * 1e6:6.1f} us per message in {calls / total:.1f} x {statement}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
