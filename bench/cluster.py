"""The cluster test (tests/test_cluster.py) for longer: rounds of failures under a steady mail flow.

    python bench/cluster.py --rounds 3 --per-phase 50

A 3-node RethinkDB cluster (tables at 3 replicas), three gateways behind Debian's nginx (the template
in docs/deploy.md), subscribers of both client libraries through nginx (Python on websocket, Node on
xhr-polling and websocket), and mail flowing over SMTP to every gateway.  Each round: a node holding
no primary dies and comes back; the primaries' node dies (failover) and comes back; a gateway is
killed (SIGKILL) and started again; ``--per-phase`` messages are accepted in each phase.  Printed: per
phase how long it took and how many SMTP attempts were refused meanwhile; at the end, per subscriber,
events heard, duplicates, gaps and whether the order is the account's history order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import Fleet, MailFlow, NodeSubscriber, PythonSubscriber, deployment  # noqa: E402
from tests.conftest import Api  # noqa: E402
from tests.peers import in_thread  # noqa: E402
from tests.rethinkdb_server import OwnCluster  # noqa: E402


async def phase(flow: MailFlow, name: str, action: object, count: int) -> None:
    started, retried = time.monotonic(), flow.retried
    if action is not None:
        await action  # type: ignore[misc]
    await flow.more(count, timeout=300)
    print(f"  {name:42} {time.monotonic() - started:6.1f} s, {flow.retried - retried:4d} SMTP attempts refused")


async def run(rounds: int, per_phase: int) -> None:
    cluster = OwnCluster(3)
    await in_thread(cluster.start)
    db = "gateway"
    fleet = Fleet(3, {"GATEWAY_SECRET_FILE": tempfile.mktemp(prefix="gateway-secret-"),
                      "GATEWAY_TRUSTED_PROXIES": "127.0.0.1"},
                  [cluster.url(db, first=i) for i in range(3)])

    def clients(at: str, token: str) -> list:
        return [PythonSubscriber(at, token), NodeSubscriber(at, token, "xhr-polling"), NodeSubscriber(at, token, "websocket")]

    try:
        async with deployment(fleet, clients, lambda: in_thread(cluster.make_primary, db, cluster.nodes[0])) as deployed:
            api, token = Api(deployed.nginx.url), deployed.token
            subscribers, flow = deployed.subscribers, deployed.flow
            await phase(flow, "warm-up", None, per_phase)
            for n in range(rounds):
                print(f"round {n + 1}")
                primaries = await in_thread(cluster.primaries, db)
                primary = next(node for node in cluster.nodes if node.name in primaries)
                other = next(node for node in cluster.nodes if node is not primary)
                await phase(flow, f"{other.name} (no primary) killed", in_thread(other.kill), per_phase)
                await phase(flow, f"{other.name} back", in_thread(other.start), per_phase)
                await in_thread(cluster.wait_ready, db)
                await phase(flow, f"{primary.name} (the primaries) killed: failover", in_thread(primary.kill), per_phase)
                await phase(flow, f"{primary.name} back", in_thread(primary.start), per_phase)
                await in_thread(cluster.wait_ready, db)
                victim = n % 3
                await phase(flow, f"gateway {victim + 1} killed", fleet.kill(victim), per_phase)
                await phase(flow, f"gateway {victim + 1} back", fleet.start(victim), per_phase)
            await flow.stop()
            accepted = len(flow.accepted)
            deadline = time.monotonic() + 120
            while any(len(s.events) < accepted for s in subscribers) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            inbox = await api.get("/emails?label=inbox&limit=1", token=token)
            print(f"accepted {accepted} messages ({flow.retried} SMTP attempts refused on the way); "
                  f"stored {inbox.headers['X-Total-Count']}")
            for subscriber in subscribers:
                names = [e["name"] for e in subscriber.events]
                expected = [f"m{i}" for i in range(accepted)]
                start = expected.index(names[0]) if names else 0
                print(f"{type(subscriber).__name__:17} heard {len(names):5d}, duplicates {len(names) - len(set(names))}, "
                      f"missing {len(set(expected[start:]) - set(names))}, "
                      f"in order {names == expected[start:start + len(names)]}, errors {len(subscriber.errors)}")
                seen: dict[str, list[str]] = {}
                for event in subscriber.events:
                    seen.setdefault(event["name"], []).append(f"{event['type']}@{event['cursor']}")
                for name, cursors in seen.items():
                    if len(cursors) > 1:
                        print(f"  {name} heard {len(cursors)} times: {', '.join(cursors)}")
            for line in fleet.logs("ERROR", "Traceback", "skipped", "voided", "gap"):
                print("gateway log:", line.rstrip()[:300])
    finally:
        await in_thread(cluster.remove)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-phase", type=int, default=50, help="messages accepted in each phase")
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.per_phase))


if __name__ == "__main__":
    main()
