"""A real deployment, end to end: gateways behind Debian's nginx (configured from the template in
docs/deploy.md) on a RethinkDB cluster, subscribers of both client libraries on websocket and
xhr-polling, mail flowing in over SMTP to every gateway and out through a relay; then nodes, the
primary and a gateway die, or the gateways are restarted one by one.  Nothing accepted is lost, every
subscriber gets every event once and in order, and queued mail is relayed once.

Skips, saying why, without rethinkdb, nginx or node.  ``bench/cluster.py`` runs the same for longer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.client import Client
from tests import rethinkdb_server
from tests.cluster import Fleet, NodeSubscriber, PythonSubscriber, deployment
from tests.conftest import Api, wait_until
from tests.peers import Relay, in_thread


async def history(url: str, token: str, count: int) -> list[str]:
    """The ids of the account's first ``count`` events, in cursor order, as a resume from the start replays them."""
    async with Client(url) as client:
        subscription = await client.subscribe(token, since="0")
        ids: list[str] = []
        async for event in subscription:
            ids.append(event["id"])
            if len(ids) == count:
                return ids
    raise AssertionError(f"the history ended after {len(ids)} events")


async def all_heard(subscribers: list[Any], count: int, kind: str | None = None, fleet: Fleet | None = None) -> None:
    """Until every subscriber has ``count`` events (of ``kind``); saying who lags when it times out."""
    def heard(s: Any) -> int:
        return len([e for e in s.events if kind is None or e["type"] == kind])
    try:
        await wait_until(lambda: all(heard(s) >= count for s in subscribers), timeout=60)
    except AssertionError:
        raise AssertionError(f"expected {count} events each, got {[heard(s) for s in subscribers]}; "
                             f"errors {[s.errors for s in subscribers]}; the gateways logged: "
                             f"{fleet.logs('WARNING', 'ERROR') if fleet else []}") from None


def assert_once_and_in_order(name: str, events: list[dict[str, Any]], order: list[str]) -> None:
    """Each event once, and the subscriber's events a run of the account's history, in its order."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), f"{name} got duplicates"
    start = order.index(ids[0])
    assert ids == order[start:start + len(ids)], f"{name} got events out of order or with a gap"


async def send_out(url: str, token: str, count: int) -> list[str]:
    """``count`` emails to an external address through nginx, each sent (once) whatever fails meanwhile."""
    api = Api(url)
    ids = []
    for i in range(count):
        key = f"out-{i}"
        while True:  # a 503 while the store fails over: the same Idempotency-Key makes a retry safe
            reply = await api.call("POST", "/emails", {"to": [f"dan{i}@example.org"], "subject": f"out {i}",
                                                       "text": "x"}, token=token, headers={"Idempotency-Key": key},
                                   check_spec=False)
            if reply.status in (200, 201):
                ids.append(reply.json["email"]["id"])
                break
            assert reply.status in (502, 503), reply.json
    return ids


@pytest.mark.gen_test(timeout=240)
async def test_a_cluster_behind_nginx_survives_node_failover_and_a_dead_gateway(tmp_path: Any, relay: Relay) -> None:
    cluster = rethinkdb_server.OwnCluster(3)  # skips without rethinkdb
    await in_thread(cluster.start)
    db = "gateway"
    fleet = Fleet(3, {"GATEWAY_SECRET_FILE": str(tmp_path / "secret"), "GATEWAY_RELAY": relay.url,
                      "GATEWAY_TRUSTED_PROXIES": "127.0.0.1", "GATEWAY_DELIVERY_LEASE": "3",
                      "GATEWAY_DELIVERY_BACKOFF": "0.2"},
                  [cluster.url(db, first=i) for i in range(3)])

    def clients(at: str, token: str) -> list[Any]:
        return [PythonSubscriber(at, token), PythonSubscriber(at, token), NodeSubscriber(at, token, "xhr-polling"),
                NodeSubscriber(at, token, "xhr-polling"), NodeSubscriber(at, token, "websocket")]

    try:
        # the first gateway creates the tables, at 3 replicas; then node1 gets every primary
        async with deployment(fleet, clients, lambda: in_thread(cluster.make_primary, db, cluster.nodes[0])) as run:
            nginx, token, subscribers, flow = run.nginx, run.token, run.subscribers, run.flow
            await flow.more(10)
            outbound = asyncio.ensure_future(send_out(nginx.url, token, 10))

            # a node that holds no primary dies, and comes back
            await in_thread(cluster.nodes[2].kill)
            await flow.more(15)
            await in_thread(cluster.nodes[2].start)
            await in_thread(cluster.wait_ready, db)
            await flow.more(10)

            # the primaries' node dies: the other two elect new ones
            await in_thread(cluster.nodes[0].kill)
            await in_thread(cluster.wait_ready, db, "ready_for_writes")
            assert "node1" not in await in_thread(cluster.primaries, db)
            await flow.more(15)
            try:
                sent_out = await outbound
            except AssertionError:  # show what the gateways logged about it
                print("\n".join(fleet.logs("ERROR", "Traceback", "Error", "  File ", "    ")))
                raise

            # the gateway holding the most sessions dies; its clients come back through nginx to the others
            counts = [await fleet.sessions(i) for i in range(3)]
            victim = counts.index(max(counts))
            assert counts[victim] > 0
            await fleet.kill(victim)
            await flow.more(15)
            await flow.stop()

            accepted = len(flow.accepted)
            await all_heard(subscribers, accepted, "receipt", fleet)
            api = Api(nginx.url)
            inbox = (await api.get("/emails?label=inbox&limit=100&sort=created", token=token))
            stored = int(inbox.headers["X-Total-Count"])
            assert stored == accepted  # each accepted message stored once: none lost, none twice
            total = accepted + len(sent_out)  # a receipt per message in, a delivery per message out

            async def relayed() -> bool:
                return len(relay.received) >= len(sent_out)
            await wait_until(relayed, timeout=60)
            await all_heard(subscribers, total, fleet=fleet)
            order = await history(nginx.url, token, total)
            for n, subscriber in enumerate(subscribers):
                assert_once_and_in_order(f"subscriber {n}", subscriber.events, order)
                assert not subscriber.errors, subscriber.errors
            recipients = sorted(r[1][0] for r in relay.received)
            assert recipients == sorted(f"dan{i}@example.org" for i in range(len(sent_out)))  # each relayed once
    finally:
        await in_thread(cluster.remove)


@pytest.mark.gen_test(timeout=180)
async def test_a_rolling_restart_behind_nginx_loses_nothing_and_clients_see_no_error(tmp_path: Any) -> None:
    url = rethinkdb_server.store_url()  # skips without rethinkdb
    fleet = Fleet(3, {"GATEWAY_SECRET_FILE": str(tmp_path / "secret"), "GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
                      "GATEWAY_DRAIN": "5"}, [url])

    def clients(at: str, token: str) -> list[Any]:
        return [PythonSubscriber(at, token, ask=True), PythonSubscriber(at, token, ask=True),
                NodeSubscriber(at, token, "xhr-polling", request_every_ms=50),
                NodeSubscriber(at, token, "websocket", request_every_ms=50)]

    async with deployment(fleet, clients) as run:
        nginx, token, subscribers, flow = run.nginx, run.token, run.subscribers, run.flow
        phase = "sending the first mail"
        try:  # (a bound of its own, so a hang says where it was and what the gateways logged)
            async with asyncio.timeout(120):
                await flow.more(10)
                for i in range(3):  # one at a time: SIGTERM (drain), then start again on the same ports
                    phase = f"restarting gateway {i}"
                    await fleet.restart(i)
                    phase = f"sending mail after restarting gateway {i}"
                    await flow.more(10)
                phase = "stopping the mail"
                await flow.stop()
                accepted = len(flow.accepted)
                phase = "waiting for every subscriber's events"
                await all_heard(subscribers, accepted, fleet=fleet)
                phase = "reading the inbox and the history"
                inbox = await Api(nginx.url).get("/emails?label=inbox&limit=1", token=token)
                assert int(inbox.headers["X-Total-Count"]) == accepted
                order = await history(nginx.url, token, accepted)
        except TimeoutError:
            raise AssertionError(f"the rolling restart hung while {phase}; the gateways logged: "
                                 f"{fleet.logs('WARNING', 'ERROR')}") from None
        for n, subscriber in enumerate(subscribers):
            assert_once_and_in_order(f"subscriber {n}", subscriber.events, order)
            assert not subscriber.errors, subscriber.errors  # no request failed, no subscription ended
            assert subscriber.requests > 0
