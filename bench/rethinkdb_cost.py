"""What one inbound message costs the RethinkDB server, and which part of the work costs what.

    python bench/rethinkdb_cost.py --messages 400
    python bench/rethinkdb_cost.py --messages 400 --without thread-lookup
    python bench/rethinkdb_cost.py --messages 400 --without raw-table
    python bench/rethinkdb_cost.py --messages 800 --concurrency 8
    python bench/rethinkdb_cost.py --messages 800 --concurrency 8 --source /tmp/before   # an earlier commit's gateway

A RethinkDB server of its own and a gateway in this process; mail is sent over SMTP one message after
another (after 50 to warm up), or over ``--concurrency`` connections at once (as many senders, each
one message after another: the gateway's group commit then writes those that arrive together in one
query), and the server's CPU time (from /proc) is divided by the messages.  ``--source`` runs the
gateway of another checkout (a ``git archive`` export), with this script.
``--without`` leaves one part of the work out, to see its share (the results are then not what the
gateway promises: a measurement only):

* ``thread-lookup``: the query for a thread by the message's references and own Message-ID (made only
  for a message that refers to another: this script's refer to none, see ``mailbox.root_thread_id``);
* ``raw-table``: writing the raw message to the ``messages`` table.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import smtplib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if "--source" in sys.argv[:-1]:  # before the gateway is imported
    ROOT = Path(sys.argv[sys.argv.index("--source") + 1]).resolve()
sys.path.insert(0, str(ROOT))

import gateway.mail.mailbox as mailbox  # noqa: E402
from gateway.app.server import Gateway  # noqa: E402
from tests.conftest import Api, make_config  # noqa: E402
from tests.rethinkdb_server import OwnServer  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def leave_out(part: str) -> None:
    if part == "thread-lookup":
        async def no_thread(store: object, owner: str, references: list[str]) -> None:
            return None
        mailbox.find_thread = no_thread  # type: ignore[assignment]
    elif part == "raw-table":
        split = mailbox.split_message
        mailbox.split_message = lambda email: (split(email)[0], None)  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown part {part!r}")


async def run(messages: int, concurrency: int) -> None:
    server = OwnServer()
    server.start()
    gateway = Gateway(make_config(Path(tempfile.mkdtemp()), store=server.url))
    await gateway.start()
    try:
        await Api(f"http://127.0.0.1:{gateway.port}").register("alice")

        def send(count: int, tag: str) -> None:
            with smtplib.SMTP("127.0.0.1", gateway.smtp_port) as smtp:
                for i in range(count):
                    smtp.sendmail("ann@example.org", ["alice@localhost"],
                                  f"Subject: {tag}{i}\r\nMessage-ID: <{tag}{i}@example.org>\r\n\r\nbody {i}")

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, send, 50, "warm")
        assert server.process is not None
        cpu, started = cpu_seconds(server.process.pid), time.monotonic()
        each = messages // concurrency
        with concurrent.futures.ThreadPoolExecutor(concurrency) as senders:
            await asyncio.gather(*(loop.run_in_executor(senders, send, each, f"m{n}-") for n in range(concurrency)))
        cpu, took = cpu_seconds(server.process.pid) - cpu, time.monotonic() - started
        how = "one after another" if concurrency == 1 else f"{concurrency} senders at once"
        print(f"RethinkDB server CPU per inbound message: {cpu / (each * concurrency) * 1000:.2f} ms "
              f"({each * concurrency / took:.0f} messages/s, {how}; gateway {ROOT})")
    finally:
        await gateway.stop()
        server.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--without", action="append", default=[], help="thread-lookup or raw-table")
    parser.add_argument("--concurrency", type=int, default=1, help="SMTP senders at once (default 1)")
    parser.add_argument("--source", type=Path, metavar="DIR", help="the checkout whose gateway to run")
    args = parser.parse_args()
    for part in args.without:
        leave_out(part)
    asyncio.run(run(args.messages, max(1, args.concurrency)))


if __name__ == "__main__":
    main()
