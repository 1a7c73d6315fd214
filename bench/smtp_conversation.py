"""The SMTP conversation alone: server CPU per message of ``GatewaySMTP`` with a handler that accepts
every recipient and message without storing anything, sent three ways: one command at a time,
pipelined (``MAIL``, ``RCPT``, ``DATA`` in one write, the message after the 354) and chunked
(``MAIL``, ``RCPT`` and ``BDAT <size> LAST`` with the message in one write: one round trip).

The server runs in a process of its own pinned to the machine's last CPU, the client (16 persistent
connections, the message bench/events.py sends) on the others; the figure is the server's process CPU
time over the messages.  Rounds alternate the two ways of sending.  Run it with another tree's code to
compare (``PYTHONPATH`` picks the gateway)::

    python bench/smtp_conversation.py --messages 4000 --rounds 2
    PYTHONPATH=/path/to/other/tree python bench/smtp_conversation.py
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# this folder's events.py would stand in for the project's events package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import gateway  # noqa: E402
from gateway.mail.smtp_in import GatewaySMTP  # noqa: E402

BODY = (b"From: sender@example.com\r\nTo: bench0001@bench.localhost\r\nSubject: bench 1 2\r\n"
        b"Message-ID: <bench-1-aa@example.com>\r\n\r\nMessage 1 of the events benchmark.\r\n.\r\n")
COMMANDS = [b"MAIL FROM:<sender@example.com>\r\n", b"RCPT TO:<bench0001@bench.localhost>\r\n", b"DATA\r\n"]
MESSAGE = BODY[:-len(b".\r\n")]
#: The ways of sending, in the order each round runs them.
WAYS = ("one by one", "pipelined", "chunked")


class Accept:
    """A handler that takes every recipient and message and keeps nothing."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Message accepted"


def serve(requests: Any, answers: Any) -> None:
    """The server process: answers ``"cpu"`` with its CPU seconds so far, stops on ``"stop"``."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: GatewaySMTP(Accept(), hostname="bench.localhost", ident="bench",
                                                              decode_data=False), "127.0.0.1", 0)
        answers.put(server.sockets[0].getsockname()[1])
        while await loop.run_in_executor(None, requests.get) != "stop":
            answers.put(time.process_time())

    uvloop.run(main())


async def send(port: int, messages: int, way: str, connections: int) -> None:
    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO client.localhost\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        for _ in range(count):
            if way == "chunked":
                writer.write(b"".join(COMMANDS[:2]) + b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE)
                for _ in range(3):
                    assert (await reader.readline()).startswith(b"250")
                continue
            pipelining = way == "pipelined"
            if pipelining:
                writer.write(b"".join(COMMANDS))
            for command in COMMANDS:
                if not pipelining:
                    writer.write(command)
                assert (await reader.readline())[:1] in b"23"
            writer.write(BODY)
            assert (await reader.readline()).startswith(b"250")
        writer.write(b"QUIT\r\n")
        await reader.readline()
        writer.close()

    await asyncio.gather(*(one(messages // connections) for _ in range(connections)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000, help="messages per round (default 4000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each way of sending (default 2)")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs: the server gets one, the client the rest")
    context = multiprocessing.get_context("spawn")
    requests, answers = context.Queue(), context.Queue()
    server = context.Process(target=serve, args=(requests, answers))
    server.start()
    os.sched_setaffinity(server.pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    port = answers.get(timeout=30)
    figures: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        for _ in range(args.rounds):
            for way in WAYS:
                requests.put("cpu")
                before = answers.get(timeout=30)
                asyncio.run(send(port, args.messages, way, args.connections))
                requests.put("cpu")
                figures[way].append((answers.get(timeout=30) - before) / args.messages * 1e6)
    finally:
        requests.put("stop")
        server.join(30)
    print(f"{Path(gateway.__file__).parent.parent}: server CPU per message (median of {args.rounds} rounds)")
    for way, rounds in figures.items():
        print(f"  {way:<11} {statistics.median(rounds):5.0f} us "
              f"({', '.join(f'{r:.0f}' for r in rounds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
