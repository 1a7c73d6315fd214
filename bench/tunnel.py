"""Tunnel vs plain HTTP: server CPU per request, throughput and latency, in one run.

Starts a gateway (``python -m gateway serve``) as its own process on a free
port in a temporary folder, registers an account, logs in and creates 40
emails, then drives the same mix of calls -- alternately
``GET /emails?limit=20`` and ``GET /accounts/me``, both with a bearer token --
at the same concurrency through each variant:

``http``
    plain HTTP/1.1 keep-alive: ``--concurrency`` persistent connections, each
    sending one request and reading its response in a loop (a hand-written
    client on asyncio streams: nothing else runs per request);
``tunnel``
    ONE SockJS websocket (``/ws/000/<session>/websocket``) with
    ``--concurrency`` request messages in flight, each sent as its own frame;
``tunnel-packed`` (with ``--pack``)
    the same socket, but every batch of requests that becomes due at once (the
    replacements for the responses of one incoming frame) sent as one frame;
``tunnel-json`` (with ``--json-body``)
    as ``tunnel``, with every request asking for its JSON body as a JSON value
    (``accept_json_body``, as the client libraries do): escaped once, not twice;
``http-root`` (with ``--floors``)
    plain HTTP, ``GET /`` only (no auth, no store), on the same gateway: the
    issue wants the tunneled API mix to cost no more than this;
``hello`` (with ``--floors``)
    plain HTTP to a bare Tornado hello-world handler (``bench/hello.py``, its own
    process, on the server's CPU and event loop): what Tornado's HTTP path costs at the least.

The server's CPU time (user + system, every thread) is read from
``/proc/<pid>/stat`` before and after each run, so it is measured from outside
and the load generator (this process) costs it nothing.  Variants run
interleaved (http, tunnel, http, tunnel, ...) for ``--rounds`` rounds against
the same server, after an unmeasured warm-up, and each figure reported is the
best (or, with ``--pick median``, the median) of its rounds.  Every response
must be a 200: any other status or a broken exchange is counted and the
script exits 1.

Each run's line also gives the client's own CPU (to show it is not the
bottleneck), the CPU every other process on the machine used meanwhile
("others", from ``/proc/stat``), the bytes the client read per response and,
for the tunnel, how many responses shared a frame.  On a shared machine the
figures move with the neighbours' load: compare the ratios within one run
(each round's ratio is printed too), never figures across runs.

Run (from the repository root, with the project installed)::

    python bench/tunnel.py                      # 20000 requests per run, 32 in flight
    python bench/tunnel.py --pack               # also the packed tunnel variant
    python bench/tunnel.py --pack --pin         # server on one CPU, client on the others
    python bench/tunnel.py --pack --mix root    # GET / only: the transports' own cost
    python bench/tunnel.py --requests 5000 --rounds 6 --pick median
    python bench/tunnel.py --variants tunnel --server-prefix 'py-spy record --gil -f raw -o tunnel.txt --'

The websocket client is the ``websockets`` package when it is installed
(``pip install websockets``), else Tornado's own (``--ws-client`` chooses).  It
reads the replies with orjson (``--client-json json`` for the standard library's,
which made it slower than the server: the server then sat partly idle, woken for
fewer requests at a time, at more CPU per request than when it is kept busy).
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway_process import REPO, GatewayProcess, free_port
from procstat import process_cpu
from tunnel_clients import CLIENT_JSON, HTTPConnection, Load, Run, run_http, run_tunnel, websockets_client

#: What each run sends, alternately: ``api`` is the issue's mix; ``root`` (``GET /``: no auth, no store)
#: leaves almost nothing but the transport, to show what each path costs on its own.
MIXES = {"api": ("/emails?limit=20", "/accounts/me"), "root": ("/",)}
LISTEN_LINE = re.compile(r"HTTP API on http://([0-9.]+):(\d+)/")
VARIANTS = ("http", "tunnel", "tunnel-packed", "tunnel-json", "http-root", "hello")
SETUP_EMAILS = 40


# -- the server process -------------------------------------------------------


class ServerProcess(GatewayProcess):
    """The gateway under test, on a free port, without SMTP (several benches may run at once)."""

    def __init__(self, workdir: Path, *, max_inflight: int, log_level: str, prefix: Sequence[str] = (),
                 source: Path = REPO, loop: str = "auto") -> None:
        self.source = source
        self.host = "127.0.0.1"
        # The bound port is read from the server's info log line; above info there is none, so pick one here.
        self.port = 0 if log_level.lower() in ("debug", "info") else free_port(self.host)
        super().__init__(workdir, {
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_SMTP": "off",
            "GATEWAY_WS_MAX_INFLIGHT": str(max_inflight),
            "GATEWAY_LOG_LEVEL": log_level,
            "GATEWAY_LOOP": loop,
        }, prefix, source)

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait for the log line naming the bound port (or a port that accepts); find the gateway's pid."""
        if self.port:
            self.wait_for(lambda: True if _accepts(self.host, self.port) else None, timeout)
            return
        match = self.wait_for(lambda: LISTEN_LINE.search(self.log_text()), timeout)
        self.host, self.port = match.group(1), int(match.group(2))


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


async def set_up(host: str, port: int) -> str:
    """An account with SETUP_EMAILS sent emails; a bearer token for it."""
    conn = await HTTPConnection.open(host, port)
    try:
        credentials = {"username": "bench", "password": "tunnel-load-" + secrets.token_hex(4)}
        status, body = await conn.request("POST", "/accounts", payload=credentials)
        _expect(status, 201, "register", body)
        status, body = await conn.request("POST", "/tokens", payload=credentials)
        _expect(status, 201, "log in", body)
        auth = {"Authorization": f"Bearer {body['token']['value']}"}
        for n in range(SETUP_EMAILS):
            email = {"to": ["bob@example.com"], "subject": f"Benchmark {n}", "text": f"Email number {n}.\n" * 8}
            status, body = await conn.request("POST", "/emails", auth, email)
            _expect(status, 201, "create an email", body)
        for target in MIXES["api"] + MIXES["root"]:
            status, body = await conn.request("GET", target, auth)
            _expect(status, 200, f"GET {target}", body)
        return auth["Authorization"]
    finally:
        await conn.close()


def _expect(status: int, wanted: int, what: str, body: object) -> None:
    if status != wanted:
        raise RuntimeError(f"setup: {what} answered {status}, not {wanted}: {body}")


class HelloProcess:
    """``bench/hello.py``: a bare Tornado hello-world server on a free port."""

    def __init__(self, loop: str) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.process = subprocess.Popen([sys.executable, str(REPO / "bench" / "hello.py"), str(self.port),
                                         "--loop", "asyncio" if loop == "asyncio" else "uvloop"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.pid = self.process.pid
        deadline = time.monotonic() + 30
        while not _accepts(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("bench/hello.py did not start")
            time.sleep(0.05)

    def cpu_seconds(self) -> tuple[float, float]:
        return process_cpu(self.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# -- the whole benchmark ----------------------------------------------------------


@dataclass
class Summary:
    """One figure per metric for a variant, picked from its rounds."""

    variant: str
    rps: float
    p50: float
    p99: float
    cpu_us: float
    client_us: float


def summarize(variant: str, runs: list[Run], pick: str) -> Summary:
    def choose(values: list[float], higher_is_better: bool) -> float:
        if pick == "median":
            return statistics.median(values)
        return max(values) if higher_is_better else min(values)

    return Summary(
        variant,
        rps=choose([r.rps for r in runs], True),
        p50=choose([r.percentile(0.50) for r in runs], False),
        p99=choose([r.percentile(0.99) for r in runs], False),
        cpu_us=choose([r.cpu_us for r in runs], False),
        client_us=choose([r.client_us for r in runs], False),
    )


def describe(run: Run) -> str:
    line = (f"  {run.variant:<14} {run.requests:>7} req in {run.wall:6.2f}s  {run.rps:8.0f} req/s  "
            f"p50 {run.percentile(0.50):6.2f} ms  p99 {run.percentile(0.99):6.2f} ms  "
            f"server {run.cpu_us:6.0f} us/req ({run.server_cpu / run.wall:4.0%} of a core, "
            f"{run.server_sys / run.server_cpu if run.server_cpu else 0:3.0%} sys)  "
            f"client {run.client_us:5.0f} us/req ({run.client_cpu / run.wall:4.0%})  "
            f"others {run.others_cpu / run.wall:4.2f} CPUs  "
            f"{run.bytes_received / max(1, run.requests) / 1024:4.1f} KiB/response")
    if run.frames_received:
        line += f"  {run.requests / run.frames_received:4.1f} responses/frame in"
    if run.frames_sent and run.variant == "tunnel-packed":
        line += f", {run.requests / run.frames_sent:4.1f} requests/frame out"
    return line


async def one_run(variant: str, server: ServerProcess, auth: str, args: argparse.Namespace, total: int) -> Run:
    load = Load(total, args.duration)
    if variant == "http":
        return await run_http(server, auth, load, args.concurrency, MIXES[args.mix])
    if variant == "http-root":
        return await run_http(server, auth, load, args.concurrency, MIXES["root"], variant)
    if variant == "hello":
        assert args.hello is not None
        return await run_http(args.hello, auth, load, args.concurrency, MIXES["root"], variant)
    return await run_tunnel(server, auth, load, args.concurrency, MIXES[args.mix], pack=variant == "tunnel-packed",
                            client=args.ws_client, json_body=variant == "tunnel-json", client_json=args.client_json)


async def bench(server: ServerProcess, args: argparse.Namespace) -> int:
    auth = await set_up(server.host, server.port)
    variants: list[str] = args.variants
    print(f"warm-up: {args.warmup} requests per variant (not counted)", flush=True)
    for variant in variants:
        warm = await one_run(variant, server, auth, args, args.warmup)
        if warm.errors:
            return report_errors([warm])
    runs: dict[str, list[Run]] = {variant: [] for variant in variants}
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}/{args.rounds}:", flush=True)
        for variant in variants:
            run = await one_run(variant, server, auth, args, args.requests)
            runs[variant].append(run)
            print(describe(run), flush=True)
            if run.errors:
                return report_errors([run])

    summaries = {variant: summarize(variant, runs[variant], args.pick) for variant in variants}
    print()
    print(f"{args.pick} of {args.rounds} rounds per figure "
          f"({'max req/s, min latency and CPU' if args.pick == 'best' else 'median of the rounds'}), "
          f"{args.concurrency} in flight, {args.requests} requests per run, mix {args.mix} ({', '.join(MIXES[args.mix])}):")
    print(f"  {'variant':<14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server us/req':>14} {'client us/req':>14}"
          f" {'CPU vs http':>12} {'p50 vs http':>12}")
    base = summaries.get("http")
    for s in summaries.values():
        ratios = (f" {s.cpu_us / base.cpu_us:12.2f} {s.p50 / base.p50:12.2f}" if base and s is not base
                  else f" {'':>12} {'':>12}")
        print(f"  {s.variant:<14} {s.rps:8.0f} {s.p50:8.2f} {s.p99:8.2f} {s.cpu_us:14.0f} {s.client_us:14.0f}{ratios}")
    if base:
        for s in summaries.values():
            if s is base:
                continue
            cpu_ok = s.cpu_us <= base.cpu_us * 2 / 3
            p50_ok = s.p50 <= base.p50
            per_round = [t.cpu_us / h.cpu_us for t, h in zip(runs[s.variant], runs["http"])]
            if not s.variant.startswith("tunnel"):
                continue
            print(f"target for {s.variant} (CPU/req <= 0.5 of http, 0.67 at the least, and p50 no worse): "
                  f"CPU {s.cpu_us / base.cpu_us:.2f}x {'met' if s.cpu_us <= base.cpu_us / 2 else 'MISSED'} "
                  f"(0.67: {'met' if cpu_ok else 'MISSED'}), "
                  f"p50 {s.p50 / base.p50:.2f}x {'met' if p50_ok else 'MISSED'}; CPU ratio within each round: "
                  f"{', '.join(f'{r:.2f}' for r in per_round)} (median {statistics.median(per_round):.2f})")
            root = summaries.get("http-root")
            if root:
                print(f"target for {s.variant} (CPU/req no more than a bare GET / over HTTP): "
                      f"{s.cpu_us / root.cpu_us:.2f}x {'met' if s.cpu_us <= root.cpu_us else 'MISSED'}")
    hello = summaries.get("hello")
    if hello:
        for s in summaries.values():
            if s is not hello:
                print(f"{s.variant} costs {s.cpu_us / hello.cpu_us:.2f}x a bare-Tornado hello-world request "
                      f"({s.cpu_us:.0f} against {hello.cpu_us:.0f} us)")
    busiest = max(run.others_cpu / run.wall for variant_runs in runs.values() for run in variant_runs)
    print(f"other processes used up to {busiest:.2f} of the machine's {os.cpu_count()} CPUs during a run"
          + (": a busy machine, expect noisy figures" if busiest > 0.25 else ""))
    return 0


def report_errors(runs: list[Run]) -> int:
    for run in runs:
        print(f"FAILED: {run.variant}: {run.errors} bad responses; first ones:", file=sys.stderr)
        for sample in run.error_samples:
            print(f"  {sample}", file=sys.stderr)
    return 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Server CPU per request, throughput and latency of the same API calls over plain "
        "HTTP/1.1 keep-alive and tunneled over one SockJS websocket, against one gateway process.",
        epilog="Figures are comparable only within one run: read the ratios.",
    )
    parser.add_argument("--requests", type=int, default=20000, help="requests per measured run (default 20000)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="cap on one run's length in seconds; a run stops issuing then (default 60)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="requests in flight: HTTP connections, or tunneled requests on the one socket (default 32)")
    parser.add_argument("--pack", action="store_true",
                        help="also run tunnel-packed: requests due together go out in one SockJS frame")
    parser.add_argument("--variants", type=lambda s: s.split(","), default=None, metavar="LIST",
                        help=f"comma-separated variants to run, of {', '.join(VARIANTS)} "
                        "(default http,tunnel, plus tunnel-packed with --pack)")
    parser.add_argument("--json-body", action="store_true",
                        help="also run tunnel-json: requests with accept_json_body (a JSON body as a JSON value)")
    parser.add_argument("--floors", action="store_true",
                        help="also run http-root (GET / over HTTP, same gateway) and hello (a bare Tornado "
                        "hello-world process): what the API mix is held against")
    parser.add_argument("--server-loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="the gateway's --loop, and hello's (default auto: uvloop when installed)")
    parser.add_argument("--mix", choices=tuple(MIXES), default="api",
                        help="api: GET /emails?limit=20 and GET /accounts/me alternately (default); "
                        "root: GET / only, a handler that does almost nothing, to see the transports' own cost")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved measured runs per variant (default 2)")
    parser.add_argument("--pick", choices=("best", "median"), default="best",
                        help="which of a variant's rounds each reported figure is (default best)")
    parser.add_argument("--warmup", type=int, default=2000, help="unmeasured requests per variant first (default 2000)")
    parser.add_argument("--client-json", choices=tuple(CLIENT_JSON), default="orjson",
                        help="how the tunnel's client writes requests and reads replies (default orjson: "
                             "with json, the client is slower than the server, which then waits for it)")
    parser.add_argument("--ws-client", choices=("websockets", "tornado"),
                        default="websockets" if websockets_client is not None else "tornado",
                        help="websocket client library (default websockets when installed, else tornado)")
    parser.add_argument("--server-log-level", default="info",
                        help="the server's GATEWAY_LOG_LEVEL (default info, as deployed: one access-log line per request)")
    parser.add_argument("--server-prefix", default="", metavar="CMD",
                        help="command to run the server under, e.g. 'py-spy record -o tunnel.svg --'")
    parser.add_argument("--server-source", type=Path, default=REPO, metavar="DIR",
                        help="checkout whose gateway to run, put first on PYTHONPATH (default: this script's, "
                        f"{REPO}), e.g. an exported older commit to compare")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server (all its threads) to the last CPU and this client to the others, so "
                        "the server's threads never run on two cores at once and the client never takes its CPU")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, server log)")
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = (["http", "tunnel"] + (["tunnel-packed"] if args.pack else [])
                         + (["tunnel-json"] if args.json_body else [])
                         + (["http-root", "hello"] if args.floors else []))
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}")
    if args.ws_client == "websockets" and websockets_client is None:
        parser.error("--ws-client websockets: the websockets package is not installed")
    if min(args.requests, args.concurrency, args.rounds) < 1 or args.warmup < 0:
        parser.error("--requests, --concurrency and --rounds must be at least 1")
    return args


def describe_source(source: Path) -> str:
    """The checkout a server runs from, with its commit when it is a git work tree."""
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(source)
    return f"{source} (commit {commit}, plus any uncommitted changes)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tornado

    cpus = sorted(os.sched_getaffinity(0))
    server_cpus: set[int] | None = None
    if args.pin:
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least two CPUs")
        server_cpus = {cpus[-1]}
        os.sched_setaffinity(0, server_cpus)  # the server inherits it, and so does every thread it starts
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    server = ServerProcess(workdir, max_inflight=max(64, 2 * args.concurrency), log_level=args.server_log_level,
                           prefix=shlex.split(args.server_prefix), source=args.server_source.resolve(),
                           loop=args.server_loop)
    args.hello = HelloProcess(args.server_loop) if "hello" in args.variants else None
    if server_cpus:
        os.sched_setaffinity(0, set(cpus[:-1]))
    try:
        server.wait_listening()
        print(f"gateway pid {server.pid} on {server.host}:{server.port} from {describe_source(server.source)}; "
              f"Python {sys.version.split()[0]}, Tornado {tornado.version}, {os.cpu_count()} CPUs, "
              f"websocket client {args.ws_client}, its JSON by {args.client_json}; server log level {args.server_log_level}"
              + (f"; server pinned to CPU {min(server_cpus)}, client to {sorted(os.sched_getaffinity(0))}"
                 if server_cpus else ""), flush=True)
        return asyncio.run(bench(server, args))
    finally:
        server.stop()
        if args.hello is not None:
            args.hello.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
