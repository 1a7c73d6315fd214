"""SockJS echo: our SockJS layer against sockjs-node, side by side in one run.

Starts both echo servers, each pinned to the machine's last CPU (this client
runs on the others):

``ours``
    ``python -m gateway conformance``: ``/echo`` built from ``gateway.sockjs``
    with the settings ``/ws`` runs with (``--loop`` / ``GATEWAY_LOOP`` picks its event loop);
``ours-uvloop`` (with ``--uvloop``)
    the same on uvloop;
``sockjs-node``
    sockjs-node 0.3.24 on Node (``bench/peers/sockjs_echo.js``; ``npm ci --prefix bench/peers``
    installs it, and this script does so when it is missing).

``--sessions`` SockJS websocket sessions (``/echo/000/<id>/websocket``) each
send a ``--size``-byte message and wait for its echo, in a loop, until
``--messages`` were echoed.  The server's CPU time (user + system) is read
from ``/proc/<pid>/stat`` around each run; variants run interleaved for
``--rounds`` rounds after a warm-up, and the figures are the median of the
rounds.  Also printed: the RSS each server grows by per idle session
(``--idle`` sessions opened and left open, nothing sent).

Run (from the repository root, with the project installed)::

    python bench/echo.py                     # 32 sessions, 100 B messages
    python bench/echo.py --uvloop            # also ours on uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import websockets.asyncio.client as websockets_client

from gateway_process import REPO, free_port, percentile
from procstat import argv, children, process_cpu, process_rss

PEERS = REPO / "bench" / "peers"


@dataclass
class Server:
    """One echo server process, pinned."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    prefix: str = "/echo"

    @property
    def pid(self) -> int:
        """The server's own pid (below a ``--server-prefix`` wrapper such as py-spy)."""
        pending = [self.process.pid]
        while pending:
            pid = pending.pop(0)
            if argv(pid)[1:4] == ["-m", "gateway", "conformance"] or argv(pid)[:1] == ["node"]:
                return pid
            pending += children(pid)
        return self.process.pid

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.prefix}/000/{secrets.token_hex(8)}/websocket"

    def stop(self) -> None:
        if self.pid != self.process.pid:  # under a wrapper: py-spy writes its profile on SIGINT
            self.process.send_signal(signal.SIGINT)
        else:
            self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"echo server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_ours(name: str, loop: str, prefix: list[str] | None = None) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_LOOP": loop, "PYTHONPATH": str(REPO)})
    process = subprocess.Popen([*(prefix or []), sys.executable, "-m", "gateway", "conformance", "--port", str(port)],
                               env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_port(port, process)
    return Server(name, process, port)


def start_node() -> Server:
    if not (PEERS / "node_modules" / "sockjs").is_dir():
        subprocess.run(["npm", "ci", "--silent", "--prefix", str(PEERS)], check=True)
    port = free_port()
    process = subprocess.Popen(["node", str(PEERS / "sockjs_echo.js"), str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_port(port, process)
    return Server("sockjs-node", process, port)


@dataclass
class Run:
    server: str
    messages: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.messages * 1e6 if self.messages else 0.0

    def p(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000


async def open_session(server: Server) -> websockets_client.ClientConnection:
    ws = await websockets_client.connect(server.url(), compression=None, max_size=None, ping_interval=None)
    opening = await ws.recv()
    if opening != "o":
        raise RuntimeError(f"{server.name}: session did not open: {opening!r}")
    return ws


async def echo_run(server: Server, sessions: int, total: int, size: int) -> Run:
    run = Run(server.name)
    sockets = [await open_session(server) for _ in range(sessions)]
    payload = "x" * size
    frame = f'["{payload}"]'
    expected = f'a["{payload}"]'
    left = [total]

    async def worker(ws: websockets_client.ClientConnection) -> None:
        clock = time.perf_counter
        latencies = run.latencies
        while left[0] > 0:
            left[0] -= 1
            sent = clock()
            await ws.send(frame)
            while True:
                reply = await ws.recv()
                if reply != "h":
                    break
            if reply != expected:
                raise RuntimeError(f"{server.name}: echo was {reply[:80]!r}")
            latencies.append(clock() - sent)

    user, system = process_cpu(server.pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker(ws) for ws in sockets))
    run.wall = time.perf_counter() - started
    user_after, system_after = process_cpu(server.pid)
    run.cpu = user_after + system_after - user - system
    run.messages = len(run.latencies)
    for ws in sockets:
        await ws.close()
    return run


async def idle_rss(server: Server, count: int) -> float:
    """KiB of RSS per open idle session: the server's RSS with ``count`` sessions open, less before."""
    await asyncio.sleep(0.5)
    before = process_rss(server.pid)
    sockets = []
    for _ in range(count):
        sockets.append(await open_session(server))
    await asyncio.sleep(1.0)
    after = process_rss(server.pid)
    for ws in sockets:
        await ws.close()
    return (after - before) / count / 1024


async def bench(servers: list[Server], args: argparse.Namespace) -> None:
    for server in servers:
        await echo_run(server, args.sessions, args.warmup, args.size)
    runs: dict[str, list[Run]] = {s.name: [] for s in servers}
    for round_no in range(args.rounds):
        for server in servers:
            run = await echo_run(server, args.sessions, args.messages, args.size)
            runs[server.name].append(run)
            print(f"  round {round_no + 1} {server.name:<12} {run.messages} msgs in {run.wall:5.2f}s "
                  f"{run.messages / run.wall:7.0f} msg/s  server {run.cpu_us:6.1f} us/msg "
                  f"({run.cpu / run.wall:4.0%} of a core)  p50 {run.p(0.5):5.2f} ms  p99 {run.p(0.99):5.2f} ms",
                  flush=True)
    rss = {s.name: await idle_rss(s, args.idle) for s in servers} if args.idle else {}
    peer = "sockjs-node"
    base_cpu = statistics.median(r.cpu_us for r in runs[peer])
    base_p50 = statistics.median(r.p(0.5) for r in runs[peer])
    print(f"\nmedian of {args.rounds} rounds, {args.sessions} sessions, {args.size} B messages, "
          f"{args.messages} per run:")
    print(f"  {'server':<12} {'us/msg':>8} {'vs node':>8} {'p50 ms':>7} {'vs node':>8} {'p99 ms':>7} "
          f"{'idle KiB/session':>17} {'vs node':>8}")
    for server in servers:
        cpu = statistics.median(r.cpu_us for r in runs[server.name])
        p50 = statistics.median(r.p(0.5) for r in runs[server.name])
        p99 = statistics.median(r.p(0.99) for r in runs[server.name])
        per_round = ", ".join(f"{r.cpu_us / n.cpu_us:.2f}" for r, n in zip(runs[server.name], runs[peer]))
        idle = rss.get(server.name)
        idle_cells = (f"{idle:17.1f} {idle / rss[peer]:8.2f}" if idle is not None and rss.get(peer)
                      else f"{'':>17} {'':>8}")
        print(f"  {server.name:<12} {cpu:8.1f} {cpu / base_cpu:8.2f} {p50:7.2f} {p50 / base_p50:8.2f} {p99:7.2f} "
              f"{idle_cells}   CPU ratio per round: {per_round}")


def main() -> int:
    parser = argparse.ArgumentParser(description="SockJS echo: our SockJS layer vs sockjs-node, in one run.")
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--size", type=int, default=100, help="message bytes (default 100)")
    parser.add_argument("--messages", type=int, default=40000, help="echoes per measured run (default 40000)")
    parser.add_argument("--warmup", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=1000, help="idle sessions for the RSS figure (0: skip)")
    parser.add_argument("--uvloop", action="store_true", help="also run ours on uvloop")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop", "auto"),
                        help="the event loop of the 'ours' variant (default asyncio)")
    parser.add_argument("--server-prefix", default="", metavar="CMD",
                        help="command to run ours under, e.g. 'py-spy record -r 500 -f raw -o echo.txt --' (its CPU "
                        "figure then includes the profiler: read only the profile)")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs: the servers get one, the client the rest")
    os.sched_setaffinity(0, {cpus[-1]})  # the servers inherit it
    servers: list[Server] = []
    try:
        servers.append(start_ours("ours", args.loop, shlex.split(args.server_prefix)))
        if args.uvloop:
            servers.append(start_ours("ours-uvloop", "uvloop"))
        servers.append(start_node())
        os.sched_setaffinity(0, set(cpus[:-1]))
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"servers pinned to CPU {cpus[-1]}, client on {cpus[:-1]}; Python {sys.version.split()[0]}, "
              f"Node {node}; {', '.join(f'{s.name} pid {s.pid}' for s in servers)}", flush=True)
        asyncio.run(bench(servers, args))
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
