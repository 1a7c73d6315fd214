"""The mail ``bench/events.py`` (and ``bench/fanout.py``) writes: messages over inbound SMTP on
persistent connections, fed by one ticker at a fixed rate.  A sender uses what the server's EHLO
reply offers, as MTAs do: with CHUNKING (RFC 3030) and PIPELINING, ``MAIL``, ``RCPT`` and one
``BDAT <size> LAST`` with the message, in one write (one round trip); with PIPELINING alone,
``MAIL``, ``RCPT`` and ``DATA`` in one write, then the message after the 354 (two).

Imported as a sibling module (the scripts run as ``python bench/NAME.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Writes:
    """What the SMTP sender did in one run."""

    planned: int = 0
    acked: dict[int, float] = field(default_factory=dict)  # seq -> time of the 250 (wall clock)
    sent: dict[int, float] = field(default_factory=dict)  # seq -> stamp in the subject (wall clock)
    failures: list[str] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # seconds each DATA went out after its scheduled time
    started: float = 0.0  # wall clock of the first scheduled write
    finished: float = 0.0  # wall clock of the last 250

    @property
    def rate(self) -> float:
        span = self.finished - self.started
        return len(self.acked) / span if span > 0 else 0.0


async def smtp_reply(reader: asyncio.StreamReader, *keywords: str) -> tuple[int, str, set[str]]:
    """One (possibly multi-line) SMTP reply: its code, last line, and which of ``keywords`` are lines of it."""
    has: set[str] = set()
    while True:
        line = (await reader.readline()).decode(errors="replace")
        if not line:
            raise ConnectionError("SMTP connection closed")
        if line[4:].strip().upper() in keywords:
            has.add(line[4:].strip().upper())
        if line[3:4] != "-":
            return int(line[:3]), line.strip(), has


def message(seq: int, address: str, stamp: float) -> bytes:
    """Message ``seq`` to ``address``, its subject stamped with the time it is sent."""
    return (f"From: sender@example.com\r\nTo: {address}\r\nSubject: bench {seq} {stamp:.6f}\r\n"
            f"Message-ID: <bench-{seq}-{secrets.token_hex(4)}@example.com>\r\n\r\n"
            f"Message {seq} of the events benchmark.\r\n").encode()


async def write_mail(host: str, port: int, domain: str, usernames: list[str], rate: float, duration: float,
                     connections: int, pipelining: bool = True, chunking: bool = True) -> Writes:
    """Send ``rate * duration`` messages on a fixed schedule, message ``seq`` to ``usernames[seq % len]``;
    ``MAIL``, ``RCPT`` and ``DATA`` in one write when ``pipelining`` and the server offers it, and
    ``MAIL``, ``RCPT`` and ``BDAT`` with the message in one write when ``chunking`` too and the server
    offers both."""
    writes = Writes(planned=int(rate * duration))
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await smtp_reply(reader)
            writer.write(b"EHLO bench.localhost\r\n")
            code, line, offered = await smtp_reply(reader, "PIPELINING", "CHUNKING")
            if code != 250:
                raise RuntimeError(f"EHLO answered {line}")
            group = pipelining and "PIPELINING" in offered
            chunks = group and chunking and "CHUNKING" in offered
            while (item := await queue.get()) is not None:
                seq, due = item
                address = f"{usernames[seq % len(usernames)]}@{domain}"
                if chunks:  # one write, one round trip
                    stamp = time.time()
                    writes.lag.append(loop.time() - due)
                    writes.sent[seq] = stamp
                    body = message(seq, address, stamp)
                    writer.write(f"MAIL FROM:<sender@example.com>\r\nRCPT TO:<{address}>\r\n"
                                 f"BDAT {len(body)} LAST\r\n".encode() + body)
                    answers = [await smtp_reply(reader) for _ in range(3)]
                    if [code for code, _, _ in answers] == [250, 250, 250]:
                        writes.acked[seq] = time.time()
                    else:
                        writes.failures.append(f"message {seq}: {' / '.join(line for _, line, _ in answers)}")
                        writer.write(b"RSET\r\n")
                        await smtp_reply(reader)
                    continue
                try:
                    commands = ((b"MAIL FROM:<sender@example.com>\r\n", 250),
                                (f"RCPT TO:<{address}>\r\n".encode(), 250), (b"DATA\r\n", 354))
                    if group:
                        writer.write(b"".join(command for command, _ in commands))
                    refused = ""
                    for command, wanted in commands:
                        if not group:
                            writer.write(command)
                        code, line, _ = await smtp_reply(reader)
                        if code != wanted and not refused:
                            refused = f"{command.split(b':')[0].strip().decode()} answered {line}"
                            if not group:
                                break
                    if refused:  # (a group's every reply read first)
                        raise RuntimeError(refused)
                    stamp = time.time()
                    writes.lag.append(loop.time() - due)
                    writes.sent[seq] = stamp
                    writer.write(message(seq, address, stamp) + b".\r\n")
                    code, line, _ = await smtp_reply(reader)
                    if code != 250:
                        raise RuntimeError(f"DATA answered {line}")
                    writes.acked[seq] = time.time()
                except RuntimeError as exc:
                    writes.failures.append(f"message {seq}: {exc}")
                    writer.write(b"RSET\r\n")
                    await smtp_reply(reader)
            writer.write(b"QUIT\r\n")
            await smtp_reply(reader)
        finally:
            writer.close()

    return await on_schedule(writes, queue, [sender() for _ in range(connections)], rate, "SMTP")


def add_pipelining_option(parser: argparse.ArgumentParser) -> None:
    """``--no-smtp-chunking``: the SMTP sender sends with DATA; ``--no-smtp-pipelining``: it also waits
    for each reply (what the benchmarks did before)."""
    parser.add_argument("--no-smtp-chunking", dest="smtp_chunking", action="store_false",
                        help="send the message with DATA after its 354 (MAIL, RCPT and DATA pipelined), even "
                             "when the server offers CHUNKING")
    parser.add_argument("--no-smtp-pipelining", dest="smtp_pipelining", action="store_false",
                        help="send MAIL, RCPT and DATA one by one, each after the last one's reply, even when "
                             "the server offers PIPELINING (and so no BDAT either)")


async def on_schedule(writes: Writes, queue: asyncio.Queue[tuple[int, float] | None],
                      senders: list[Any], rate: float, what: str) -> Writes:
    """Run ``senders`` (coroutines taking ``(seq, due)`` from ``queue`` until None) and feed them
    ``writes.planned`` writes at ``rate`` per second; ``writes`` as they recorded it."""
    loop = asyncio.get_running_loop()
    tasks = [asyncio.ensure_future(sender) for sender in senders]
    await asyncio.sleep(0.2)  # let them connect (and say EHLO) before the clock starts
    start = loop.time()
    writes.started = time.time()
    for seq in range(writes.planned):
        due = start + seq / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((seq, due))
    for _ in tasks:
        queue.put_nowait(None)
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            writes.failures.append(f"{what} connection: {result!r}")
    writes.finished = max(writes.acked.values(), default=writes.started)
    return writes
