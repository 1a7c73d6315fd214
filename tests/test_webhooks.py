"""Webhooks against a real HTTP receiver that checks every signature with the ``standardwebhooks`` library:
the events it sees, retries, restarts, two gateways on one RethinkDB, the API, and the SSRF refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado.httpserver
import tornado.web
from standardwebhooks.webhooks import Webhook

from gateway.store import Query
from gateway.store.leased_queue import retry_due
from gateway.webhooks.documents import new_webhook
from tests import rethinkdb_server
from tests.conftest import Api, api_for, serve_relay, wait_until
from tests.peers import GatewayProcess, Relay, free_port, in_thread, smtp_send

#: Webhooks may reach the test receiver on loopback only with this.
LOOPBACK = {"webhook_allow_networks": "127.0.0.0/8"}


class Receiver:
    """A webhook endpoint: verifies each POST's signature, records it, and answers as scripted."""

    def __init__(self) -> None:
        self.secret = ""  # set once the webhook is created
        self.posts: list[dict[str, Any]] = []  # {headers, body (verified, parsed), at}
        self.answers: list[int] = []  # statuses for the next POSTs (then 200)
        self.stall = False  # never answer (a slow receiver)
        self.arrived: dict[str, asyncio.Event] = {}  # event type -> set when one is posted
        self.url = ""

    def handler(self) -> type[tornado.web.RequestHandler]:
        receiver = self

        class Endpoint(tornado.web.RequestHandler):
            async def post(self) -> None:
                headers = {k: v for k, v in self.request.headers.get_all()}
                body = self.request.body.decode()
                verified = Webhook(receiver.secret).verify(body, headers)  # raises on a bad signature
                receiver.posts.append({"headers": headers, "body": verified})
                receiver.arrived.setdefault(verified["type"], asyncio.Event()).set()
                if receiver.stall:
                    await asyncio.Event().wait()
                self.set_status(receiver.answers.pop(0) if receiver.answers else 200)
                if self.get_status() in (301, 302):
                    self.set_header("Location", "/elsewhere")
                self.finish("ok")

        return Endpoint

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [p["body"] for p in self.posts if p["body"]["type"] == kind]

    async def wait_for(self, kind: str) -> dict[str, Any]:
        await self.arrived.setdefault(kind, asyncio.Event()).wait()
        return self.of_type(kind)[0]


@pytest.fixture
def receiver(io_loop: Any) -> Any:
    """A :class:`Receiver` on a free loopback port; elsewhere is a path the tests check nobody reaches."""
    hits = Receiver()
    elsewhere: list[str] = []

    class Elsewhere(tornado.web.RequestHandler):
        def post(self) -> None:
            elsewhere.append(self.request.path)

        get = post

    app = tornado.web.Application([(r"/hook", hits.handler()), (r"/elsewhere", Elsewhere)])
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    hits.url = f"http://127.0.0.1:{port}/hook"
    hits.elsewhere = elsewhere  # type: ignore[attr-defined]
    yield hits
    server.stop()


async def hook(api: Api, token: str, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    """Create a webhook posting to the receiver; the receiver learns its secret."""
    created = await api.post("/webhooks", {"url": receiver.url, **fields}, token=token)
    assert created.status == 201, created.json
    webhook = created.json["webhook"]
    receiver.secret = webhook["secret"]
    return dict(webhook)


class GatedRelay(Relay):
    """A relay that refuses the first RCPT, then waits for ``go`` before it accepts the retry."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.calls = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.calls += 1
        if self.calls > 1:
            await self.go.wait()
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def gated_relay(io_loop: Any) -> Any:
    yield from serve_relay(io_loop, GatedRelay())


@pytest.mark.gen_test(timeout=30)
async def test_the_receiver_sees_receipts_deliveries_deferrals_and_failures(start_gateway: Any, receiver: Receiver,
                                                                          gated_relay: GatedRelay) -> None:
    gateway = await start_gateway(relay=gated_relay.url, delivery_backoff=0.01, delivery_attempts=3, **LOOPBACK)
    api = api_for(gateway)
    _, token = await api.register("alice")
    await api.register("bob")
    webhook = await hook(api, token, receiver, description="all of alice's mail")
    assert webhook["secret"].startswith("whsec_") and webhook["events"] is None and webhook["enabled"] is True

    # receipt: SMTP in
    await in_thread(smtp_send, gateway.smtp_port, "ann@example.org", ["alice@localhost"],
                    "From: Ann <ann@example.org>\r\nSubject: over SMTP\r\n\r\nhello alice")
    receipt = await receiver.wait_for("receipt")
    assert receipt["data"]["name"] == "over SMTP" and receipt["data"]["snippet"] == "hello alice"
    assert receipt["data"]["cursor"] and receipt["timestamp"].endswith("Z")

    # delivery: local mail to bob
    local = (await api.post("/emails", {"to": ["bob@localhost"], "subject": "local", "text": "x"}, token=token)).json
    delivery = await receiver.wait_for("delivery")
    assert (delivery["data"]["id"], delivery["data"]["name"]) == (local["email"]["id"], "local")

    # deferred then delivery: the relay refuses once with 451, and takes the retry once the deferral was posted
    gated_relay.refuse = ["451 4.3.0 try later"]
    relayed = (await api.post("/emails", {"to": ["dan@example.org"], "subject": "relayed", "text": "x"},
                              token=token)).json["email"]
    deferred = await receiver.wait_for("deferred")
    assert deferred["data"]["id"] == relayed["id"] and deferred["data"]["reply"]["code"] == 451
    gated_relay.go.set()
    await wait_until(lambda: len(receiver.of_type("delivery")) == 2)
    assert receiver.of_type("delivery")[1]["data"]["id"] == relayed["id"]

    # failed: retries run out
    gated_relay.refuse = ["451 4.3.0 busy"] * 3
    doomed = (await api.post("/emails", {"to": ["eve@example.org"], "subject": "doomed", "text": "x"},
                             token=token)).json["email"]
    failed = await receiver.wait_for("failed")
    assert failed["data"]["id"] == doomed["id"] and failed["data"]["recipients"][0]["code"] == 451

    ids = [p["headers"]["Webhook-Id"] for p in receiver.posts]
    assert len(set(ids)) == len(ids)  # one job per event
    assert all(p["headers"]["Webhook-Attempt"] == "1" for p in receiver.posts)


@pytest.mark.gen_test(timeout=30)
async def test_retries_keep_the_id_and_count_attempts(start_gateway: Any, receiver: Receiver) -> None:
    backoff = 0.2
    gateway = await start_gateway(webhook_backoff=backoff, **LOOPBACK)
    api = api_for(gateway)
    _, token = await api.register("alice")
    webhook = await hook(api, token, receiver, events=["receipt"])
    receiver.answers = [500, 500]
    await in_thread(smtp_send, gateway.smtp_port, "ann@example.org", ["alice@localhost"], "Subject: hi\r\n\r\nx")
    await wait_until(lambda: len(receiver.posts) == 3)
    ids = {p["headers"]["Webhook-Id"] for p in receiver.posts}
    assert len(ids) == 1 and next(iter(ids)).startswith("msg_")
    assert [p["headers"]["Webhook-Attempt"] for p in receiver.posts] == ["1", "2", "3"]
    # signed afresh each time (the timestamp is in the signature), all verified by the receiver;
    # the waits between them are the queue's schedule, held to doubling without a clock below

    async def recorded() -> bool:
        shown = (await api.get(f"/webhooks/{webhook['id']}/deliveries", token=token)).json["deliveries"]
        return len(shown) == 3
    await wait_until(recorded)
    shown = (await api.get(f"/webhooks/{webhook['id']}/deliveries", token=token)).json["deliveries"]
    assert [(d["attempt"], d["status"], d["response_code"]) for d in shown] == [
        (3, "succeeded", 200), (2, "failed", 500), (1, "failed", 500)]
    assert shown[1]["error"] == "HTTP 500" and all(d["duration_ms"] >= 0 for d in shown)
    assert all(d["message_id"] in ids and d["type"] == "receipt" for d in shown)
    assert (await api.get(f"/webhooks/{webhook['id']}", token=token)).json["webhook"]["consecutive_failures"] == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_gateway_killed_between_attempts_resumes_them(tmp_path: Any, receiver: Receiver) -> None:
    env = {"GATEWAY_STORE": f"sqlite:{tmp_path}/gateway.db", "GATEWAY_WEBHOOK_BACKOFF": "1",
           "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}
    first = GatewayProcess(env)
    await first.start()
    api = Api(first.base)
    _, token = await api.register("alice")
    webhook = await hook(api, token, receiver)
    receiver.answers = [503]
    await in_thread(smtp_send, first.smtp_port, "ann@example.org", ["alice@localhost"], "Subject: hi\r\n\r\nx")

    async def attempted() -> bool:
        return len((await api.get(f"/webhooks/{webhook['id']}/deliveries", token=token)).json["deliveries"]) == 1
    await wait_until(attempted)
    await first.kill()  # between the first attempt and the retry due a second later
    second = GatewayProcess({**env, "GATEWAY_SMTP": f"127.0.0.1:{free_port()}"})
    await second.start()
    try:
        await wait_until(lambda: len(receiver.posts) == 2)
        assert receiver.posts[0]["headers"]["Webhook-Id"] == receiver.posts[1]["headers"]["Webhook-Id"]
        assert [p["headers"]["Webhook-Attempt"] for p in receiver.posts] == ["1", "2"]
    finally:
        await second.stop()


@pytest.mark.gen_test(timeout=120)
async def test_two_gateways_on_one_rethinkdb_post_each_event_once(start_gateway: Any, receiver: Receiver) -> None:
    url = rethinkdb_server.store_url()
    a = await start_gateway(store=url, **LOOPBACK)
    b = GatewayProcess({"GATEWAY_STORE": url, "GATEWAY_SECRET_FILE": a.config.secret_file,
                        "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"})
    await b.start()
    try:
        api = api_for(a)
        _, token = await api.register("alice")
        await hook(api, token, receiver)
        for i in range(10):
            port = a.smtp_port if i % 2 else b.smtp_port
            await in_thread(smtp_send, port, "ann@example.org", ["alice@localhost"], f"Subject: m{i}\r\n\r\nx")
        await wait_until(lambda: len(receiver.posts) >= 10, timeout=30)

        async def all_done() -> bool:
            assert a.store is not None
            return await a.store.count("webhook_jobs", {"status": "succeeded"}) == 10
        await wait_until(all_done, timeout=30)
        # every job succeeded once; a second post would have come before its job was done
        assert sorted(p["body"]["data"]["name"] for p in receiver.posts) == sorted(f"m{i}" for i in range(10))
        assert len({p["headers"]["Webhook-Id"] for p in receiver.posts}) == 10
    finally:
        await b.stop()


@pytest.mark.gen_test(timeout=30)
async def test_a_newer_status_supersedes_an_undelivered_older_one(start_gateway: Any, receiver: Receiver,
                                                                gated_relay: GatedRelay) -> None:
    gateway = await start_gateway(relay=gated_relay.url, delivery_backoff=0.01, webhook_backoff=3600, **LOOPBACK)
    api = api_for(gateway)
    _, token = await api.register("alice")
    await hook(api, token, receiver, events=["deferred", "delivery"])
    receiver.answers = [500]  # the deferral's first post fails: it waits an hour for its retry
    gated_relay.refuse = ["451 4.3.0 try later"]
    sent = (await api.post("/emails", {"to": ["dan@example.org"], "subject": "s", "text": "x"}, token=token)).json
    await receiver.wait_for("deferred")
    gated_relay.go.set()
    await receiver.wait_for("delivery")
    store = gateway.store
    assert store is not None

    async def jobs() -> dict[str, Any]:
        return {j["type"]: j for j in await store.find("webhook_jobs", Query({"email": sent["email"]["id"]}))}

    async def delivered() -> bool:
        return (await jobs())["delivery"]["status"] == "succeeded"
    await wait_until(delivered)
    deferred, delivery = (await jobs())["deferred"], (await jobs())["delivery"]
    assert deferred["status"] == "superseded" and deferred["superseded_by"] == delivery["id"]
    assert len(receiver.posts) == 2  # the deferral is never posted again
    # finished jobs are kept a day (so a lagging process cannot make them again), then pruned
    assert gateway.services is not None
    assert await gateway.services.webhook_queue.prune() == 0
    assert await gateway.services.webhook_queue.prune(older_than=0) == 2
    assert await jobs() == {}


@pytest.mark.gen_test(timeout=30)
async def test_the_webhook_api(start_gateway: Any, receiver: Receiver) -> None:
    gateway = await start_gateway(webhook_disable_after=2, webhook_backoff=0.01, **LOOPBACK)
    api = api_for(gateway)
    _, token = await api.register("alice")
    _, other = await api.register("mallory")
    webhook = await hook(api, token, receiver, events=["receipt"], detail="full", description="inbox")
    path = f"/webhooks/{webhook['id']}"
    shown = (await api.get(path, token=token)).json["webhook"]
    assert "secret" not in shown and shown == {k: v for k, v in webhook.items() if k != "secret"}
    assert (await api.get("/webhooks", token=token)).json["webhooks"] == [shown]
    assert (await api.get(path, token=other)).status == 404  # not another account's
    assert (await api.get("/webhooks", token=other)).json["webhooks"] == []

    # test: posted now, signed, recorded
    tested = await api.post(f"{path}/test", token=token)
    assert tested.status == 200 and tested.json["delivery"]["status"] == "succeeded"
    assert receiver.posts[-1]["body"]["type"] == "test"

    # update, and the failures that disable it
    updated = (await api.put(path, {"events": ["receipt", "failed"], "description": "more"}, token=token)).json
    assert updated["webhook"]["events"] == ["receipt", "failed"] and updated["webhook"]["description"] == "more"
    receiver.answers = [500] * 10
    await in_thread(smtp_send, gateway.smtp_port, "ann@example.org", ["alice@localhost"], "Subject: x\r\n\r\ny")

    async def disabled() -> bool:
        return not (await api.get(path, token=token)).json["webhook"]["enabled"]
    await wait_until(disabled)
    record = (await api.get(path, token=token)).json["webhook"]
    assert record["disabled_reason"].startswith("Disabled after 2 consecutive failed attempts; the last: HTTP 500")
    enabled = (await api.put(path, {"enabled": True}, token=token)).json["webhook"]
    assert enabled["enabled"] and enabled["consecutive_failures"] == 0 and enabled["disabled_reason"] is None

    # bad input: clear 400s
    for body, code in [({"url": "ftp://example.org/x"}, "invalid_url"),
                       ({"url": "http://user:pw@example.org/x"}, "invalid_url"),
                       ({"url": receiver.url, "events": ["nope"]}, "invalid_field"),
                       ({"url": receiver.url, "detail": "everything"}, "invalid_field"),
                       ({"url": receiver.url, "extra": 1}, "unknown_field"),
                       ({}, "missing_field")]:
        refused = await api.post("/webhooks", body, token=token)
        assert (refused.status, refused.json["code"]) == (400, code), body
    assert (await api.put(path, {"enabled": "yes"}, token=token)).status == 400

    assert (await api.delete(path, token=token)).status == 200
    assert (await api.get(path, token=token)).status == 404
    assert (await api.get(f"{path}/deliveries", token=token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_ssrf_refusals(start_gateway: Any, receiver: Receiver) -> None:
    gateway = await start_gateway()  # no networks allowed: public addresses only
    api = api_for(gateway)
    _, token = await api.register("alice")
    for url in ["http://127.0.0.1:9/x", "http://localhost/x", "http://169.254.169.254/latest/meta-data",
                "http://10.1.2.3/x", "http://[::1]/x", "http://[::ffff:127.0.0.1]/x", "https://0.0.0.0/",
                "http://a..b/x", "http://nothing.invalid/x"]:  # (the last two do not resolve)
        refused = await api.post("/webhooks", {"url": url}, token=token)
        assert (refused.status, refused.json["code"]) == (400, "forbidden_destination"), url
    # a name that resolved to a public address when the webhook was made, and to loopback now:
    # refused at send time, after DNS (the webhook is written as create would have left it)
    alice = (await api.get("/accounts/me", token=token)).json["account"]
    record = new_webhook("0" * 24, alice["id"], {"url": receiver.url}, "whsec_" + "A" * 32, "0")
    assert gateway.store is not None
    await gateway.store.insert("webhooks", record)
    tried = (await api.post(f"/webhooks/{record['id']}/test", token=token)).json["delivery"]
    assert tried["status"] == "failed" and tried["response_code"] is None
    assert "resolves to a private, loopback or link-local address" in tried["error"]
    assert receiver.posts == []


@pytest.mark.gen_test(timeout=30)
async def test_no_redirects_and_a_stalled_receiver_holds_up_nobody(start_gateway: Any, receiver: Receiver) -> None:
    gateway = await start_gateway(webhook_timeout=1, **LOOPBACK)
    api = api_for(gateway)
    _, token = await api.register("alice")
    webhook = await hook(api, token, receiver)
    receiver.answers = [302]
    redirected = (await api.post(f"/webhooks/{webhook['id']}/test", token=token)).json["delivery"]
    assert (redirected["status"], redirected["response_code"]) == ("failed", 302)
    assert "redirects are not followed" in redirected["error"]
    assert receiver.elsewhere == []  # type: ignore[attr-defined]

    receiver.stall = True
    stalled = (await api.post(f"/webhooks/{webhook['id']}/test", token=token)).json["delivery"]
    assert stalled["status"] == "failed" and stalled["error"] == "timed out"


def test_the_retry_schedule_doubles_the_wait() -> None:
    """Deliveries and webhook posts are due again after backoff, 2 x backoff, 4 x backoff, ..."""
    assert [retry_due(0.2, attempt, now=100.0) for attempt in (1, 2, 3, 4)] == [100.2, 100.4, 100.8, 101.6]
