"""Event fan-out: the gateway against python-socketio's in-memory broadcast, side by side in one run.

Both get the same load from bench/events.py's machinery: ``--sessions``
websocket sessions (1,000) on accounts of ``--per-account`` (10) sessions,
opened by 2 client processes, and ``--rate`` writes per second (200) for
``--duration`` seconds, each write one event for every session of one
account (2,000 deliveries/s).  Each server runs pinned to the machine's last
CPU (``taskset``), the load generator on the others.

``gateway``
    ``gateway serve`` (SQLite): a write is a mail over inbound SMTP, stored, reported by the
    store's change feed, ordered by cursor and sent to the account's sessions;
``socketio``
    python-socketio 5.18 on aiohttp (``bench/peers/socketio_server.py``): a write is an HTTP
    ``POST /write`` that emits a ``receipt`` to the account's room.  No store, no feed, no cursors.
    It runs on asyncio's own loop, aiohttp's default;
``socketio-uvloop`` (with ``--servers gateway,socketio,socketio-uvloop``)
    the same peer on uvloop, the loop the gateway runs on.

Printed per server: server CPU per delivered event (CPU time over the run /
events delivered), latency p50/p99 from the write to the client, the RSS
the server grew by per idle subscribed session, and nothing lost.  Rounds
alternate the servers; figures are medians over rounds, and the gateway's CPU
per event against each other server's is also given round by round (with
the median of those ratios), since one round's servers run back to back.

Run (from the repository root, with the project and the peer installed:
``pip install "python-socketio==5.18.*" aiohttp``)::

    python bench/fanout.py
    python bench/fanout.py --rounds 3 --duration 10
    python bench/fanout.py --rounds 4 --duration 5 --source EXPORT --compare OTHER_EXPORT

``--compare DIR`` runs a second gateway (another checkout's) as a third server, ``compare``, in
every round beside the other two: the two gateways' CPU per event, compared round by round in one
run, is steadier than two runs' against each other, since this machine's speed drifts by 10-15 %
over minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import event_clients
import events
import smtp_writer
from gateway_process import REPO, free_port
from procstat import process_cpu

PEER = REPO / "bench" / "peers" / "socketio_server.py"


class SocketIOServer:
    """The peer's process: the same face to run_one as the gateway's ServerProcess."""

    def __init__(self, workdir: Path, prefix: list[str], uvloop: bool = False) -> None:
        self.host, self.http_port = "127.0.0.1", free_port()
        self.log_path = workdir / "socketio.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([*prefix, sys.executable, str(PEER), str(self.http_port),
                                             *(["--uvloop"] if uvloop else [])],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.http_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the socketio server did not start: " + self.log_path.read_text())
        from procstat import children
        kids = children(self.process.pid)  # under taskset, the python process is taskset itself (exec)
        self.pid = kids[0] if kids else self.process.pid

    def cpu_seconds(self) -> tuple[float, float]:
        return process_cpu(self.pid)

    def log_problems(self) -> list[str]:
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if "Error" in line]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class EngineIOClient(event_clients.SockJSClient):
    """One Socket.IO session (engine.io v4 over a websocket) that joins its account's room."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import base64
        import os as _os

        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(_os.urandom(16)).decode()
        transport.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def _sockjs(self, frame: str, now: float) -> None:  # an engine.io packet
        if frame.startswith("42"):
            name, *data = json.loads(frame[2:])
            if name == "receipt":
                self._event(data[0], now)
            elif name == "joined" and not self.subscribed.done():
                self.subscribed.set_result(None)
        elif frame.startswith("40"):
            self.write_frame(0x1, json.dumps(["join", self.token]).join(["42", ""]).encode())
        elif frame.startswith("0"):
            self.write_frame(0x1, b"40")
        elif frame == "2":
            self.write_frame(0x1, b"3")


class SocketIOPeer:
    """What run_one needs to drive the peer instead of the gateway."""

    client_class = EngineIOClient

    def __init__(self, uvloop: bool = False) -> None:
        self.uvloop = uvloop

    def start(self, workdir: Path, prefix: list[str]) -> SocketIOServer:
        server = SocketIOServer(workdir, prefix, self.uvloop)
        server.wait_listening()
        return server

    def accounts(self, server: SocketIOServer, count: int) -> list[tuple[str, str]]:
        return [(f"bench{n:04d}", f"bench{n:04d}") for n in range(count)]  # the room is the "token"

    def write(self, server: SocketIOServer, names: list[str], args: argparse.Namespace) -> smtp_writer.Writes:
        return asyncio.run(write_http(server.host, server.http_port, names, args.rate, args.duration,
                                      args.smtp_connections))


async def write_http(host: str, port: int, names: list[str], rate: float, duration: float,
                     connections: int) -> smtp_writer.Writes:
    """``POST /write`` on a fixed schedule over persistent connections, write ``seq`` to ``names[seq % len]``."""
    writes = smtp_writer.Writes(planned=int(rate * duration))
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                seq, due = item
                stamp = time.time()
                writes.lag.append(loop.time() - due)
                writes.sent[seq] = stamp
                body = json.dumps({"account": names[seq % len(names)], "name": f"bench {seq} {stamp:.6f}",
                                   "seq": seq}).encode()
                writer.write(f"POST /write HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if head[9:12] != b"200":
                    writes.failures.append(f"write {seq}: {head[:40]!r}")
                else:
                    writes.acked[seq] = time.time()
        finally:
            writer.close()

    return await smtp_writer.on_schedule(writes, queue, [sender() for _ in range(connections)], rate, "HTTP")


def per_event_us(result: events.Result) -> float:
    """Server CPU microseconds per delivered event."""
    return result.server_cpu_pct / 100 / result.events_per_s * 1e6 if result.events_per_s else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second (default 200)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--smtp-connections", type=int, default=16, help="writer connections (default 16)")
    smtp_writer.add_pipelining_option(parser)
    events.add_timeline_option(parser)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--source", type=Path, metavar="DIR",
                        help="run the gateway of another checkout (as bench/events.py --source)")
    parser.add_argument("--servers", default="gateway,socketio",
                        help="of gateway, socketio (on asyncio's own loop, aiohttp's default) and "
                             "socketio-uvloop (the same on uvloop, as the gateway runs)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="also run the gateway of another checkout, as the server 'compare', in every round")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs: the server gets one, the load generator the rest")
    args.server_prefix = f"taskset -c {cpus[-1]}"
    os.sched_setaffinity(0, set(cpus[:-1]))
    servers = args.servers.split(",") + (["compare"] if args.compare else [])
    unknown = set(args.servers.split(",")) - {"gateway", "socketio", "socketio-uvloop"}
    if unknown:
        parser.error(f"--servers: unknown {', '.join(sorted(unknown))} (gateway, socketio, socketio-uvloop)")
    compare_args = copy.copy(args)
    compare_args.source = args.compare
    results: dict[str, list[events.Result]] = {name: [] for name in servers}
    for round_no in range(1, args.rounds + 1):
        for name in servers:
            result = events.run_one(args.sessions, compare_args if name == "compare" else args, round_no, name,
                                    peer=SocketIOPeer(name == "socketio-uvloop") if name.startswith("socketio")
                                    else None)
            results[name].append(result)
            print(f"round {round_no} {name:<15} {result.events_per_s:6.0f} events/s  server CPU "
                  f"{result.server_cpu_pct:3.0f}% = {per_event_us(result):5.1f} us/event  p50 {result.p50_ms:5.1f} ms  "
                  f"p99 {result.p99_ms:6.1f} ms  max {result.max_ms:6.1f} ms  lost {result.lost}  "
                  f"idle RSS {result.rss_kib_per_session:4.1f} KiB/session  others {result.other_cpu_pct:3.0f}%"
                  + (f"  NOTES: {result.notes}" if result.notes else ""), flush=True)
    print(f"\nmedian of {args.rounds} rounds, {args.sessions} sessions, {args.per_account} per account, "
          f"{args.rate:g} writes/s = {args.rate * args.per_account:g} deliveries/s:")
    base = "socketio" if "socketio" in results else servers[0]

    def median(name: str, metric: Any) -> float:
        return statistics.median(metric(r) for r in results[name])

    print(f"  {'server':<15} {'us/event':>9} {'vs socketio':>12} {'p50 ms':>7} {'p99 ms':>7} {'vs socketio':>12} "
          f"{'idle KiB/session':>17} {'vs socketio':>12} {'lost':>5}")
    for name in servers:
        cpu, p50, p99 = median(name, per_event_us), median(name, lambda r: r.p50_ms), median(name, lambda r: r.p99_ms)
        rss = median(name, lambda r: r.rss_kib_per_session)
        b_cpu, b_p99 = median(base, per_event_us), median(base, lambda r: r.p99_ms)
        b_rss = median(base, lambda r: r.rss_kib_per_session)
        print(f"  {name:<15} {cpu:9.1f} {cpu / b_cpu:12.2f} {p50:7.1f} {p99:7.1f} {p99 / b_p99:12.2f} {rss:17.1f} "
              f"{rss / b_rss if b_rss else 0:12.2f} {sum(r.lost for r in results[name]):5d}")
    # each round's ratio: the servers of one round ran back to back, so its ratio is steadier than
    # either server's own figure, which drifts with the machine from round to round
    pairs = [(name, other) for name, other in (("gateway", "socketio"), ("gateway", "socketio-uvloop"),
                                               ("gateway", "compare")) if name in results and other in results]
    for name, other in pairs:
        rounds = [per_event_us(a) / per_event_us(b) for a, b in zip(results[name], results[other])]
        print(f"  {name} / {other}, CPU per event, round by round: median {statistics.median(rounds):.3f}x "
              f"(rounds {', '.join(f'{r:.3f}' for r in rounds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
