"""What an idle subscribed /ws session holds in the server: Python objects per session, by where they were made.

Runs a gateway in this process (SQLite in a temporary folder, SMTP off), opens
``--sessions`` SockJS websocket sessions with the ``websockets`` client, each
subscribed with one account's token, and compares two ``tracemalloc``
snapshots (before and after, the client's own allocations left out).  Prints
the total per session and the lines that allocated most of it.  RSS, which
also counts the allocator's and the kernel's share, is in bench/fanout.py and
bench/echo.py.

Run (from the repository root, with the project installed)::

    python bench/session_memory.py --sessions 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import sys
import tempfile
import tracemalloc
from pathlib import Path

# this folder's events.py would stand in for the project's events package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import websockets.asyncio.client as websockets_client  # noqa: E402
from tornado.httpclient import AsyncHTTPClient  # noqa: E402

from gateway.app.server import Gateway  # noqa: E402
from gateway.config import Config  # noqa: E402

PASSWORD = "correct horse battery"


async def measure(count: int, top: int) -> None:
    folder = tempfile.mkdtemp()
    gateway = Gateway(Config(port=0, smtp="off", store=f"sqlite:{folder}/g.db", secret_file=f"{folder}/secret",
                             argon2_memory=1024))
    await gateway.start()
    base = f"http://127.0.0.1:{gateway.port}"
    http = AsyncHTTPClient()
    credentials = json.dumps({"username": "alice", "password": PASSWORD})
    headers = {"Content-Type": "application/json"}
    await http.fetch(base + "/accounts", method="POST", headers=headers, body=credentials)
    token = json.loads((await http.fetch(base + "/tokens", method="POST", headers=headers, body=credentials)).body)
    subscribe = json.dumps([json.dumps({"type": "subscribe", "token": token["token"]["value"]})])

    async def session() -> websockets_client.ClientConnection:
        ws = await websockets_client.connect(f"ws://127.0.0.1:{gateway.port}/ws/000/{secrets.token_hex(8)}/websocket",
                                             compression=None)
        assert await ws.recv() == "o"
        await ws.send(subscribe)
        assert "subscribed" in str(await ws.recv())
        return ws

    sockets = [await session() for _ in range(20)]  # warm-up: first-use allocations are not a session's
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    sockets += [await session() for _ in range(count)]
    await asyncio.sleep(0.5)
    gc.collect()
    after = tracemalloc.take_snapshot()
    ignore = [tracemalloc.Filter(False, "*/websockets/*"), tracemalloc.Filter(False, tracemalloc.__file__)]
    growth = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    print(f"{count} idle subscribed websocket sessions: {sum(s.size_diff for s in growth) / count / 1024:.2f} KiB "
          f"of Python objects per session")
    for stat in growth[:top]:
        print(f"  {stat.size_diff / count:6.0f} B {stat.count_diff / count:5.1f} blocks  {stat.traceback[0]}")
    for ws in sockets:
        await ws.close()
    await gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--top", type=int, default=15, help="lines to list (default 15)")
    args = parser.parse_args()
    asyncio.run(measure(args.sessions, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
