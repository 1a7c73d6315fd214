"""How long a token revoked on one gateway process stays usable on another (the token cache's window).

Starts a RethinkDB server (``rethinkdb`` from PATH, free loopback ports) and
two gateway processes A and B on one database with one signing secret.  Each
trial logs in at A, uses the token at B (so B keeps it verified in memory),
revokes it at A (``DELETE /tokens``), and from the moment A's response
arrives asks B with that token, back to back, until B answers 401.  The time
until that 401 is the window in which another process still honours a
revoked token: the tokens feed's latency plus one request to B.  Prints
p50, p99 and the maximum over the trials.

Run (from the repository root, with the project installed)::

    python bench/revocation.py                  # 200 trials
    python bench/revocation.py --trials 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from events import RethinkServer
from gateway_process import GatewayProcess, percentile
from tunnel_clients import HTTPConnection

HTTP_LINE = re.compile(r"HTTP API on http://([0-9.]+):(\d+)/")


class Gateway(GatewayProcess):
    def __init__(self, workdir: Path, store: str, secret: Path) -> None:
        workdir.mkdir()
        super().__init__(workdir, {"GATEWAY_PORT": "0", "GATEWAY_SMTP": "off", "GATEWAY_STORE": store,
                                   "GATEWAY_SECRET_FILE": str(secret)})
        self.port = 0

    def wait_listening(self) -> None:
        self.port = int(self.wait_for(lambda: HTTP_LINE.search(self.log_text()), 60).group(2))


async def trials(a: Gateway, b: Gateway, count: int) -> list[float]:
    at_a = await HTTPConnection.open("127.0.0.1", a.port)
    at_b = await HTTPConnection.open("127.0.0.1", b.port)
    credentials = {"username": "revoker", "password": "revocation-" + secrets.token_hex(4)}
    status, body = await at_a.request("POST", "/accounts", payload=credentials)
    assert status == 201, body
    windows: list[float] = []
    for _ in range(count):
        status, body = await at_a.request("POST", "/tokens", payload=credentials)
        assert status == 201, body
        auth = {"Authorization": f"Bearer {body['token']['value']}"}
        for _ in range(3):
            status, body = await at_b.request("GET", "/accounts/me", auth)
            assert status == 200, body
        status, body = await at_a.request("DELETE", "/tokens", auth)
        assert status == 200, body
        revoked = time.perf_counter()
        while True:
            status, _ = await at_b.request("GET", "/accounts/me", auth)
            if status == 401:
                break
            assert status == 200
        windows.append(time.perf_counter() - revoked)
    await at_a.close()
    await at_b.close()
    return windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-revocation-"))
    database = RethinkServer()
    gateways: list[Gateway] = []
    try:
        store = database.store_url()
        gateways = [Gateway(workdir / "a", store, workdir / "secret")]
        gateways[0].wait_listening()  # A creates the secret and the schema
        gateways.append(Gateway(workdir / "b", store, workdir / "secret"))
        gateways[1].wait_listening()
        windows = sorted(asyncio.run(trials(gateways[0], gateways[1], args.trials)))
        ms = [w * 1000 for w in windows]
        print(json.dumps({"trials": len(ms), "p50_ms": round(percentile(ms, 0.5), 2),
                          "p99_ms": round(percentile(ms, 0.99), 2), "max_ms": round(ms[-1], 2)}))
        print(f"a token revoked at A was refused at B after p50 {percentile(ms, 0.5):.1f} ms, "
              f"p99 {percentile(ms, 0.99):.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} trials; target p99 < 100 ms: "
              f"{'met' if percentile(ms, 0.99) < 100 else 'MISSED'})")
    finally:
        for gateway in gateways:
            gateway.stop()
        database.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
