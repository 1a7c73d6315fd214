"""Events under load: write-to-client latency of ``receipt`` events with N subscribed sessions.

For each N in ``--sessions`` (100, 1000, 5000) the script starts a fresh
gateway (``python -m gateway serve``) as its own process in a temporary
folder (HTTP and SMTP on free loopback ports), registers one account per
``--per-account`` sessions (10), logs each in once, and opens N SockJS
websockets (``/ws/000/<session>/websocket``), each subscribed with its
account's token.  The sessions are spread over ``--clients`` client processes
(2), each a bare asyncio websocket client (one ``asyncio.Protocol`` per
socket, frames parsed in ``data_received``: no task per socket, nothing
between the socket and the clock reading).

Then mail is written into the store the way it arrives in production: over
inbound SMTP, ``--rate`` messages a second (200) for ``--duration`` seconds
(10), each to one account's address (``benchNNNN@localhost``, round robin), on
``--smtp-connections`` persistent SMTP connections (16) fed by one ticker.  The
sender uses what the server's EHLO reply offers, as MTAs do: with CHUNKING
(RFC 3030) and PIPELINING (RFC 2920), ``MAIL``, ``RCPT`` and ``BDAT <size> LAST``
with the message in one write; ``--no-smtp-chunking``: ``MAIL``, ``RCPT`` and
``DATA`` in one write, then the body after the 354, as Postfix sends;
``--no-smtp-pipelining``: each command waits for its reply, as before.  Each
message's subject is ``bench <seq> <time.time()>``, stamped just before its
body is sent, and every session bound to that account must get one
``receipt`` event for it.  The client notes the wall clock when the frame
holding the event arrives: latency = arrival - stamp (one machine, one clock),
so it covers SMTP parsing, the SQLite write, the change feed, the dispatcher,
SockJS and the socket.

After the last SMTP reply the script waits until every expected event has
arrived, or ``--drain`` seconds (5).  Per N it prints: writes/s achieved
(messages accepted / time from the first scheduled write to the last 250),
events/s delivered, latency p50/p99/max, events lost (expected - received),
duplicates, events out of cursor order, sessions closed by the server; and,
to read those figures with: the SMTP reply time (DATA sent -> 250), how late
the sender got behind its schedule, and the CPU used meanwhile by the
gateway, by the load generator (client processes and this one), by the
RethinkDB server (``store CPU``) and by everything else on the machine (``/proc/stat``; on a shared machine other
jobs are the main source of latency spikes).  Exit status 1 when an event was
lost, duplicated or out of order, a write failed, or a run could not be set up.

Run (from the repository root, with the project installed)::

    python bench/events.py                                   # N = 100, 1000, 5000; 200 writes/s for 10 s
    python bench/events.py --sessions 1000 --rate 400 --duration 20
    python bench/events.py --sessions 1000 --rounds 3 --json /tmp/events.json
    python bench/events.py --sessions 1000 --stores rethinkdb --source /tmp/before   # an earlier commit's gateway
    python bench/events.py --sessions 1000 --server-prefix 'py-spy record -o /tmp/events.svg --'

Only loopback traffic; every loop is bounded and the script stops by itself.
Linux only (``/proc`` for CPU times).  Needs about ``2 * N + 100`` file
descriptors per process (``ulimit -n``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from event_clients import client_process
from gateway_process import GatewayProcess, free_port, percentile
from procstat import children, machine_busy_seconds, process_cpu, process_rss
from smtp_writer import add_pipelining_option, write_mail

HTTP_LINE = re.compile(r"HTTP API on http://([0-9.]+):(\d+)/")
SMTP_LINE = re.compile(r"SMTP for @(\S+) on ([0-9.]+):(\d+)")
SETUP_CONCURRENCY = 8  # account registrations in flight
READY_TIMEOUT = 300.0
TARGET_SESSIONS, TARGET_P99_MS = 1000, 50.0



# -- the server process ---------------------------------------------------------


class RethinkServer:
    """A RethinkDB server for the ``rethinkdb`` runs: ``rethinkdb`` from PATH on free loopback ports."""

    def __init__(self, extra: list[str] | None = None) -> None:
        binary = shutil.which("rethinkdb")
        if binary is None:
            raise RuntimeError("--stores rethinkdb needs a rethinkdb on PATH")
        self.directory = Path(tempfile.mkdtemp(prefix="gateway-events-bench-rethinkdb-"))
        self.port, cluster = free_port(), free_port()
        self._log = open(self.directory / "server.log", "wb")
        self.process = subprocess.Popen(
            [binary, "--directory", str(self.directory / "data"), "--bind", "127.0.0.1", "--driver-port",
             str(self.port), "--cluster-port", str(cluster), "--no-http-admin", "--no-update-check", *(extra or [])],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "Server ready" not in (self.directory / "server.log").read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rethinkdb did not start: " + (self.directory / "server.log").read_text())
            time.sleep(0.05)

    def store_url(self) -> str:
        """A fresh database for one run."""
        return f"rethinkdb://127.0.0.1:{self.port}/bench_{secrets.token_hex(4)}"

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server so far (its helper processes too)."""
        return sum(sum(process_cpu(pid)) for pid in (self.process.pid, *children(self.process.pid)))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class ServerProcess(GatewayProcess):
    """The gateway under test, on free HTTP and SMTP ports."""

    def __init__(self, workdir: Path, prefix: Sequence[str] = (), store: str = "", source: Path | None = None) -> None:
        super().__init__(workdir, {
            "GATEWAY_PORT": "0",
            "GATEWAY_SMTP": "127.0.0.1:0",
            "GATEWAY_LOG_LEVEL": "info",  # the default, and the ports are read from info lines
            **({"GATEWAY_STORE": store} if store else {}),
        }, prefix, **({"source": source} if source else {}))
        self.host = "127.0.0.1"
        self.http_port = 0
        self.smtp_port = 0
        self.domain = "localhost"

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Read both ports from the log; find the gateway's own pid (it may run under a profiler)."""
        def both() -> tuple[re.Match[str], re.Match[str]] | None:
            text = self.log_text()
            http, smtp = HTTP_LINE.search(text), SMTP_LINE.search(text)
            return (http, smtp) if http and smtp else None

        http, smtp = self.wait_for(both, timeout)
        self.host, self.http_port = http.group(1), int(http.group(2))
        self.domain, self.smtp_port = smtp.group(1), int(smtp.group(3))

    def log_problems(self) -> list[str]:
        """The log's WARNING, ERROR and CRITICAL lines."""
        return [line for line in self.log_text().splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]


# -- setup over HTTP --------------------------------------------------------------


async def http_json(host: str, port: int, method: str, target: str, payload: object) -> tuple[int, Any]:
    """One HTTP/1.1 request on its own connection (``Connection: close``); status and decoded body."""
    body = json.dumps(payload).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        raw = await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    return int(head[9:12]), json.loads(content) if content else None


async def make_accounts(host: str, port: int, count: int) -> list[tuple[str, str]]:
    """``count`` accounts (``bench0000``...), each with one token: ``(username, token)`` pairs."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    password = "events-bench-" + secrets.token_hex(6)

    async def one(n: int) -> tuple[str, str]:
        username = f"bench{n:04d}"
        credentials = {"username": username, "password": password}
        async with limit:
            status, body = await http_json(host, port, "POST", "/accounts", credentials)
            if status != 201:
                raise RuntimeError(f"setup: registering {username} answered {status}: {body}")
            status, body = await http_json(host, port, "POST", "/tokens", credentials)
            if status != 201:
                raise RuntimeError(f"setup: logging {username} in answered {status}: {body}")
        return username, body["token"]["value"]

    return list(await asyncio.gather(*(one(n) for n in range(count))))


# -- one run ------------------------------------------------------------------------


@dataclass
class Result:
    """The figures of one N."""

    sessions: int
    accounts: int
    round: int = 1
    store: str = "sqlite"
    subscribed: int = 0
    connect_seconds: float = 0.0
    writes_planned: int = 0
    writes_acked: int = 0
    write_failures: int = 0
    writes_per_s: float = 0.0
    expected: int = 0
    received: int = 0
    lost: int = 0
    unexpected: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    closed: int = 0
    events_per_s: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    smtp_p50_ms: float = 0.0
    smtp_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    drained_in: float = 0.0
    server_cpu_pct: float = 0.0
    client_cpu_pct: float = 0.0
    store_cpu_pct: float = 0.0  # the RethinkDB server (0 for SQLite, which runs inside the gateway)
    other_cpu_pct: float = 0.0  # everything else on the machine meanwhile (other jobs: noise)
    log_problems: int = 0
    #: How much the server's RSS grew per subscribed session, idle (after setup, before the writes).
    rss_kib_per_session: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (self.subscribed == self.sessions and self.write_failures == 0 and self.lost == 0
                and self.unexpected == 0 and self.duplicates == 0 and self.out_of_order == 0 and self.closed == 0)


def percentile_ms(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted seconds, in milliseconds."""
    return percentile(ordered, q) * 1000


def add_timeline_option(parser: argparse.ArgumentParser) -> None:
    """``--timeline`` (for :func:`run_one`; bench/fanout.py takes it too)."""
    parser.add_argument("--timeline", action="store_true",
                        help="also print each second's latencies (by when the message was written): a stall shows "
                             "as one second's max")


def print_timeline(started: float, tallies: list[dict[str, Any]]) -> None:
    """Each second of the writes: how many events, and their p50, p99 and max latency."""
    seconds: dict[int, list[float]] = {}
    for t in tallies:
        for stamp, latency in zip(array("d", t["stamps"]), array("d", t["latencies"])):
            seconds.setdefault(int(stamp - started), []).append(latency)
    for second, inside in sorted(seconds.items()):
        inside.sort()
        print(f"    second {second:3d}: {len(inside):6d} events  p50 {percentile(inside, 0.5) * 1000:7.1f} ms  "
              f"p99 {percentile(inside, 0.99) * 1000:7.1f} ms  max {inside[-1] * 1000:7.1f} ms")


def run_one(n: int, args: argparse.Namespace, round_number: int = 1, store: str = "sqlite",
            rethinkdb: RethinkServer | None = None, peer: Any = None) -> Result:
    """Fresh server (and database), N subscribed sessions, the writes, the drain; the figures.

    ``peer`` (bench/fanout.py) stands in for the gateway: its ``start(workdir, prefix)`` gives the
    server process, ``accounts(server, count)`` the (name, token) pairs, ``write(server, names, args)``
    the writes, and ``client_class`` the client sessions."""
    accounts = max(1, math.ceil(n / args.per_account))
    result = Result(sessions=n, accounts=accounts, round=round_number, store=store)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-events-bench-"))
    server = (peer.start(workdir, shlex.split(args.server_prefix)) if peer is not None else
              ServerProcess(workdir, shlex.split(args.server_prefix), rethinkdb.store_url() if rethinkdb else "",
                            args.source))
    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = []
    pipes: list[multiprocessing.connection.Connection] = []
    try:
        server.wait_listening()
        users = (peer.accounts(server, accounts) if peer is not None
                 else asyncio.run(make_accounts(server.host, server.http_port, accounts)))
        # session i belongs to account i % accounts, so each account's sessions spread over the client processes
        sessions = [(i, users[i % accounts][1]) for i in range(n)]
        clients = max(1, min(args.clients, n))
        time.sleep(0.5)
        rss_before = process_rss(server.pid)
        counters = [context.RawValue("q", 0) for _ in range(clients)]
        for number in range(clients):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=client_process, name=f"events-bench-client-{number}", daemon=True,
                args=(number, server.host, server.http_port, sessions[number::clients], theirs, counters[number],
                      peer.client_class if peer is not None else None),
            )
            process.start()
            processes.append(process)
            pipes.append(mine)
        for pipe in pipes:
            if not pipe.poll(READY_TIMEOUT):
                raise RuntimeError("a client process did not get its sessions subscribed in time")
            message = pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(str(message[1]))
            _, opened, samples, failed, seconds = message
            result.subscribed += opened
            result.connect_seconds = max(result.connect_seconds, seconds)
            if failed:
                result.notes.append(f"{failed} sessions could not subscribe, e.g. {samples}")
        time.sleep(1.0)
        result.rss_kib_per_session = (process_rss(server.pid) - rss_before) / 1024 / max(1, result.subscribed)
        print(f"  N={n}: {result.subscribed} sessions subscribed on {accounts} accounts in "
              f"{result.connect_seconds:.1f} s; writing {args.rate:g}/s for {args.duration:g} s", flush=True)

        cpu_before, wall_before = sum(server.cpu_seconds()), time.monotonic()
        store_before = rethinkdb.cpu_seconds() if rethinkdb else 0.0
        busy_before, own_before = machine_busy_seconds(), time.process_time()
        writes = (peer.write(server, [u for u, _ in users], args) if peer is not None else
                  asyncio.run(write_mail(server.host, server.smtp_port, server.domain, [u for u, _ in users],
                                         args.rate, args.duration, args.smtp_connections,
                                         args.smtp_pipelining, args.smtp_chunking)))
        # each write goes to one account, and to every session bound to it
        wanted_by_account: list[set[int]] = [set() for _ in range(accounts)]
        for seq in writes.acked:
            wanted_by_account[seq % accounts].add(seq)
        expected = sum(len(wanted_by_account[i % accounts]) for i in range(n))
        drain_start = time.monotonic()
        while sum(c.value for c in counters) < expected and time.monotonic() - drain_start < args.drain:
            time.sleep(0.01)
        result.drained_in = time.monotonic() - drain_start
        time.sleep(0.25)  # late duplicates would show up here
        server_cpu, wall = sum(server.cpu_seconds()) - cpu_before, time.monotonic() - wall_before
        store_cpu = rethinkdb.cpu_seconds() - store_before if rethinkdb else 0.0
        busy, own = machine_busy_seconds() - busy_before, time.process_time() - own_before

        tallies: list[dict[str, Any]] = []
        for pipe in pipes:
            pipe.send("stop")
        for pipe in pipes:
            if not pipe.poll(60):
                raise RuntimeError("a client process did not report its results")
            message = pipe.recv()
            if message[0] != "done":
                raise RuntimeError(str(message[1]))
            tallies.append(message[1])

        latencies = sorted(x for t in tallies for x in array("d", t["latencies"]))
        if args.timeline:
            print_timeline(writes.started, tallies)
        received: dict[int, list[int]] = {}
        for t in tallies:
            received.update(t["received"])
        lost = unexpected = 0
        for i in range(n):
            got = set(received.get(i, ()))
            wanted = wanted_by_account[i % accounts]
            lost += len(wanted - got)
            unexpected += len(got - wanted)
        last = max((t["last_event"] for t in tallies), default=0.0)
        smtp_times = sorted(writes.acked[s] - writes.sent[s] for s in writes.acked)

        result.writes_planned = writes.planned
        result.writes_acked = len(writes.acked)
        result.write_failures = len(writes.failures)
        result.writes_per_s = writes.rate
        result.expected = expected
        result.received = len(latencies)
        result.lost = lost
        result.unexpected = unexpected
        result.duplicates = sum(t["duplicates"] for t in tallies)
        result.out_of_order = sum(t["out_of_order"] for t in tallies)
        result.closed = sum(t["closed"] for t in tallies)
        result.events_per_s = len(latencies) / (last - writes.started) if last > writes.started else 0.0
        result.p50_ms = percentile_ms(latencies, 0.50)
        result.p90_ms = percentile_ms(latencies, 0.90)
        result.p99_ms = percentile_ms(latencies, 0.99)
        result.max_ms = percentile_ms(latencies, 1.0)
        result.smtp_p50_ms = percentile_ms(smtp_times, 0.50)
        result.smtp_p99_ms = percentile_ms(smtp_times, 0.99)
        result.lag_max_ms = max(writes.lag, default=0.0) * 1000
        result.server_cpu_pct = 100 * server_cpu / wall if wall else 0.0
        # the load generator: websocket client processes and this process (the SMTP sender)
        client_cpu = sum(t["cpu"] for t in tallies) + own
        result.client_cpu_pct = 100 * client_cpu / wall if wall else 0.0
        result.store_cpu_pct = 100 * store_cpu / wall if wall else 0.0
        result.other_cpu_pct = max(0.0, 100 * (busy - server_cpu - client_cpu - store_cpu) / wall) if wall else 0.0
        problems = server.log_problems()
        result.log_problems = len(problems)
        if writes.failures:
            result.notes.append(f"{len(writes.failures)} writes failed, e.g. {writes.failures[:3]}")
        if result.closed:
            result.notes.append(f"{result.closed} sessions closed by the server, e.g. "
                                f"{[s for t in tallies for s in t['closed_samples']][:3]}")
        if any(t["foreign"] for t in tallies):
            result.notes.append(f"{sum(t['foreign'] for t in tallies)} events without a bench subject")
        if any(t["error_count"] for t in tallies):
            result.notes.append(f"unexpected messages, e.g. {[e for t in tallies for e in t['errors']][:3]}")
        if problems:
            result.notes.append(f"{len(problems)} warnings/errors in the server log, e.g. {problems[:3]}")
        if not latencies:
            result.notes.append("no event arrived")
        return result
    finally:
        for pipe in pipes:
            try:
                pipe.send("stop")
            except OSError:
                pass
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
        server.stop()
        if args.keep:
            print(f"  kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- output -------------------------------------------------------------------------

COLUMNS = (
    ("store", "store", "{}"),
    ("N", None, ""),
    ("writes/s", "writes_per_s", "{:.1f}"),
    ("events/s", "events_per_s", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.1f}"),
    ("lost", "lost", "{:d}"),
    ("dup", "duplicates", "{:d}"),
    ("unordered", "out_of_order", "{:d}"),
    ("closed", "closed", "{:d}"),
    ("SMTP p50/p99 ms", None, ""),
    ("send lag max ms", "lag_max_ms", "{:.0f}"),
    ("server CPU %", "server_cpu_pct", "{:.0f}"),
    ("load gen CPU %", "client_cpu_pct", "{:.0f}"),
    ("store CPU %", "store_cpu_pct", "{:.0f}"),
    ("others CPU %", "other_cpu_pct", "{:.0f}"),
)


def cells(result: Result, rounds: int = 1) -> list[str]:
    out = []
    for title, name, fmt in COLUMNS:
        if title == "N":
            out.append(f"{result.sessions}" + (f" #{result.round}" if rounds > 1 else ""))
        elif name is None:
            out.append(f"{result.smtp_p50_ms:.1f}/{result.smtp_p99_ms:.1f}")
        else:
            out.append(fmt.format(getattr(result, name)))
    return out


def print_table(results: list[Result], rounds: int = 1) -> None:
    rows = [[title for title, _, _ in COLUMNS]] + [cells(r, rounds) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def print_markdown(results: list[Result], rounds: int = 1) -> None:
    print("| " + " | ".join(title for title, _, _ in COLUMNS) + " |")
    print("|" + "|".join(" ---: " for _ in COLUMNS) + "|")
    for result in results:
        print("| " + " | ".join(cells(result, rounds)) + " |")


# -- command line -------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write mail over SMTP at a fixed rate with N subscribed SockJS sessions; print events/s "
                    "delivered, write-to-client latency p50/p99/max, lost and duplicated events for each N.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sessions", default="100,1000,5000",
                        help="comma-separated session counts N, one fresh server each")
    parser.add_argument("--per-account", type=int, default=10,
                        help="sessions bound to each account (every message makes that many events)")
    parser.add_argument("--rate", type=float, default=200.0, help="messages written per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of writing")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds to wait after the last write for the events still expected")
    parser.add_argument("--rethinkdb-args", default="",
                        help="more options for the rethinkdb server the runs start, e.g. '--cores 1'")
    parser.add_argument("--stores", default="sqlite,rethinkdb" if shutil.which("rethinkdb") else "sqlite",
                        help="comma-separated stores to run each N against, side by side: sqlite, rethinkdb "
                             "(started from PATH on free ports)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per N (each on a fresh server): on a shared machine, look at the spread")
    parser.add_argument("--clients", type=int, default=2, help="client processes the sessions are spread over")
    parser.add_argument("--smtp-connections", type=int, default=16,
                        help="persistent SMTP connections the writes are spread over")
    add_pipelining_option(parser)
    parser.add_argument("--server-prefix", default="",
                        help="command to run the server under, e.g. 'py-spy record -o /tmp/events.svg --'")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--source", type=Path, metavar="DIR",
                        help="run the gateway of another checkout (an earlier commit, say: git worktree add), "
                             "to compare two versions under the same load generator")
    parser.add_argument("--keep", action="store_true", help="keep each run's temporary folder (server log, db)")
    add_timeline_option(parser)
    args = parser.parse_args(argv)
    try:
        args.session_counts = [int(x) for x in args.sessions.split(",") if x.strip()]
    except ValueError:
        parser.error("--sessions takes comma-separated integers")
    args.store_names = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not args.store_names or set(args.store_names) - {"sqlite", "rethinkdb"}:
        parser.error("--stores takes sqlite and/or rethinkdb")
    if not args.session_counts or min(args.session_counts) < 1:
        parser.error("--sessions needs positive counts")
    if min(args.per_account, args.rounds, args.clients, args.smtp_connections) < 1 \
            or args.rate <= 0 or args.duration <= 0 or args.drain < 0:
        parser.error("--per-account, --rate, --duration, --rounds, --clients and --smtp-connections must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tornado

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"events bench: {os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}, Tornado {tornado.version}; "
          f"{args.rate:g} writes/s for {args.duration:g} s over {args.smtp_connections} SMTP connections, "
          f"{args.per_account} sessions per account, {args.clients} client processes", flush=True)
    results: list[Result] = []
    failed = False
    rethinkdb = RethinkServer(shlex.split(args.rethinkdb_args)) if "rethinkdb" in args.store_names else None
    runs = [(n, r, store) for n in args.session_counts for store in args.store_names
            for r in range(1, args.rounds + 1)]
    for n, number, store in runs:
        try:
            result = run_one(n, args, number, store, rethinkdb if store == "rethinkdb" else None)
        except Exception as exc:
            print(f"  {store} N={n}: run failed: {exc}", flush=True)
            failed = True
            continue
        results.append(result)
        print(f"  {store} N={n}: {result.writes_acked}/{result.writes_planned} writes at {result.writes_per_s:.1f}/s, "
              f"{result.received}/{result.expected} events at {result.events_per_s:.0f}/s, "
              f"p50 {result.p50_ms:.1f} ms, p90 {result.p90_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
              f"max {result.max_ms:.1f} ms, lost {result.lost}, duplicates {result.duplicates}, "
              f"drained {result.drained_in:.2f} s after the last write", flush=True)
        for note in result.notes:
            print(f"    ! {note}", flush=True)
    if rethinkdb is not None:
        rethinkdb.stop()
    print()
    print_table(results, args.rounds)
    print()
    print_markdown(results, args.rounds)
    target = [r for r in results if r.sessions == TARGET_SESSIONS]
    if target:
        print(f"\ntarget ({TARGET_SESSIONS} sessions, 200 writes/s: p99 < {TARGET_P99_MS:g} ms, nothing lost):")
        for result in target:
            met = (result.clean and result.p99_ms < TARGET_P99_MS and args.rate >= 200
                   and result.writes_per_s >= 0.95 * 200)
            print(f"  {result.store} round {result.round}: {'met' if met else 'NOT met'} (p99 {result.p99_ms:.1f} ms, "
                  f"writes {result.writes_per_s:.1f}/s, lost {result.lost}, others on the machine "
                  f"{result.other_cpu_pct:.0f}% CPU)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                               "results": [r.__dict__ for r in results]}, indent=2))
    return 0 if results and not failed and all(r.clean for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
