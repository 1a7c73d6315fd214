"""Inbound mail without the network: CPU per message of what ``handle_RCPT`` and ``handle_DATA`` do
(the recipient lookup, parsing with the email package, storing the copy, its thread and event row),
in one process on a fresh SQLite file, with the message bench/events.py sends.

Steadier than bench/fanout.py on a shared machine (process CPU time, no sockets, no peers); run it
with two trees' code to compare them (``PYTHONPATH`` picks the gateway)::

    python bench/smtp_intake.py --messages 3000 --rounds 5
    PYTHONPATH=/path/to/other/tree python bench/smtp_intake.py --messages 3000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.smtp import Envelope

# this folder's events.py would stand in for the project's events package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import gateway  # noqa: E402
from gateway.mail.smtp_in import InboundHandler  # noqa: E402
from gateway.store import store_from_url  # noqa: E402

DOMAIN = "bench.localhost"


def message(seq: int, address: str) -> bytes:
    """The message bench/events.py's writer sends."""
    return (f"From: sender@example.com\r\nTo: {address}\r\nSubject: bench {seq} {time.time():.6f}\r\n"
            f"Message-ID: <bench-{seq}-{secrets.token_hex(4)}@example.com>\r\n\r\n"
            f"Message {seq} of the events benchmark.\r\n").encode()


async def run(messages: int, rounds: int, accounts: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        store = store_from_url(f"sqlite:{Path(folder) / 'bench.db'}")
        await store.open()
        for n in range(accounts):
            await store.insert("usernames", {"id": f"user{n}", "account": f"account{n}"})
        handler = InboundHandler(store, DOMAIN)
        per_message: list[float] = []
        seq = 0
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(messages):
                address = f"user{seq % accounts}@{DOMAIN}"
                envelope = Envelope()
                envelope.mail_from = "sender@example.com"
                assert await handler.handle_RCPT(None, None, envelope, address, []) == "250 OK"  # type: ignore[arg-type]
                envelope.original_content = envelope.content = message(seq, address)
                reply = await handler.handle_DATA(None, None, envelope)  # type: ignore[arg-type]
                assert reply.startswith("250"), reply
                seq += 1
            per_message.append((time.process_time() - started) / messages * 1e6)
        await store.close()
        return per_message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=100)
    args = parser.parse_args()
    rounds = asyncio.run(run(args.messages, args.rounds, args.accounts))
    print(f"{Path(gateway.__file__).parent.parent}: CPU per message {statistics.median(rounds):.0f} us "
          f"(median of {len(rounds)} rounds: {', '.join(f'{r:.0f}' for r in rounds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
