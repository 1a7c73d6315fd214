"""Process time per call of the parts of a listed page's response, for whichever tree is imported.

Reads one page of ``GET /emails?limit=20`` from a gateway database (one kept
by ``python bench/tunnel.py --variants http --requests 500 --rounds 1 --keep``:
40 emails composed through the API) and times, in this process, best of 7
repeats:

- ``store.find``: the page's read (SQL and decoding the rows), as the list's
  handler asked for it before the listed views;
- ``page body``: the page's whole body as the list's handler makes it: where
  the tree keeps listed views (``gateway.mail.documents.LISTED``), the store
  opened with them and the page joined from ``find_listed``'s fragments, else
  ``find``, ``public_email`` of each and ``jsontext.dumps`` (both give the same
  bytes, which the script checks);
- ``decode``: ``orjson.loads`` of the page's 20 stored rows alone;
- ``frame``: the tunnel's frame strings for the page's response, plain (the
  body escaped twice) and as a JSON value (``accept_json_body``: escaped once);
- ``clear``: an API handler's ``clear()``, which every request runs (its
  starting headers);
- ``message parse``: a tunneled request's message (``GET /emails?limit=20``
  with a bearer token) parsed (``gateway.ws.messages.parse``);
- ``tunnel start``: ``Tunnel.start`` of that request on an application of one
  bare handler, up to the handler's task (the request's headers, the request,
  its route, the handler made; the tasks run after the timing);
- ``access log``: the access log's line for a request and its metrics (the
  application's ``log_function``), as ``gateway serve`` logs, at ``info`` to a
  file (``/dev/null``; the text format), with request metrics.

To compare trees, run it with each one first on ``PYTHONPATH`` (an export of
main made with ``git archive``), alternately::

    PYTHONPATH=/tmp/main python bench/response_parts.py --db /tmp/gateway-bench-XXXX/gateway.db
    python bench/response_parts.py --db /tmp/gateway-bench-XXXX/gateway.db
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
import time
import timeit
from pathlib import Path
from typing import Any, Callable
from unittest import mock

# bench/events.py would stand in for the events package: this folder off the path, as bench/smtp_intake.py does
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import orjson  # noqa: E402
import tornado.web  # noqa: E402
from tornado import httputil  # noqa: E402

import gateway  # noqa: E402
from gateway import jsontext  # noqa: E402
from gateway.mail import documents  # noqa: E402
from gateway.app import cli  # noqa: E402
from gateway.app.web import observed  # noqa: E402
from gateway.mail.documents import public_email  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.store import Query  # noqa: E402
from gateway.store.sqlite import SQLiteStore  # noqa: E402
from gateway.ws import frames, messages  # noqa: E402
from gateway.ws.tunnel import Tunnel, TunneledResponse  # noqa: E402
from handlers.emails import EmailsHandler  # noqa: E402

PAGE = 20
REPEATS = 7
#: Tunneled requests started at once, then run, by ``tunnel start``.
BATCH = 16


def best_us(call: Callable[[], Any], number: int) -> float:
    """The best of REPEATS runs of ``number`` calls, in µs of process time per call."""
    return min(timeit.repeat(call, number=number, repeat=REPEATS, timer=time.process_time)) / number * 1e6


async def find_us(path: Path, owner: str, number: int) -> float:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        query = Query({"owner": owner}, [("created", True)], limit=PAGE)
        best = float("inf")
        for _ in range(REPEATS):
            start = time.process_time()
            for _ in range(number):
                await store.find("emails", query)
            best = min(best, time.process_time() - start)
        return best / number * 1e6
    finally:
        await store.close()


async def page_us(path: Path, owner: str, number: int) -> tuple[float, bytes, str]:
    """µs per page body as the list's handler makes it (joined where the tree keeps listed views),
    the body, and which way it was made."""
    listed = getattr(documents, "LISTED", None)
    store = SQLiteStore(str(path), listed=listed) if listed else SQLiteStore(str(path))
    await store.open()
    query = Query({"owner": owner}, [("created", True)], limit=PAGE)

    async def joined() -> bytes | None:
        encoded = await store.find_listed("emails", query)
        return None if encoded is None else b'{"success":true,"emails":[' + b",".join(encoded) + b"]}"

    async def encoded() -> bytes:
        return jsontext.dumps({"success": True, "emails": [public_email(e) for e in await store.find("emails", query)]})

    try:
        way = "joined" if listed and await joined() is not None else "decoded and encoded"
        page = joined if way == "joined" else encoded
        best = float("inf")
        for _ in range(REPEATS):
            start = time.process_time()
            for _ in range(number):
                await page()
            best = min(best, time.process_time() - start)
        body = await page()
        assert body is not None and body == await encoded(), "the joined page differs from the encoded one"
        return best / number * 1e6, body, way
    finally:
        await store.close()


def a_handler() -> EmailsHandler:
    """A list handler on a request that names an id, as a tunneled one does, without a server."""
    config = mock.Mock(allowed_origins=None)
    app = tornado.web.Application([], state=mock.Mock(config=config))
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine("GET", "/emails?limit=20", "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "127.0.0.1", "Authorization": "Bearer x", "X-Request-Id": "abcd1234.7"}),
        connection=mock.Mock())
    return EmailsHandler(app, request)


MESSAGE = orjson.dumps({"type": "request", "id": "17", "method": "GET", "path": "/emails?limit=20",
                        "headers": {"Authorization": "Bearer " + "a" * 43}}).decode()


class _Bare(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish(b"{}")


async def start_us(number: int) -> float:
    """µs per ``Tunnel.start`` of :data:`MESSAGE`'s request, up to the handler's task (run after the timing)."""
    tunnel = Tunnel(tornado.web.Application([("/emails", _Bare)]), "127.0.0.1", "127.0.0.1:8080")
    headers = [("Authorization", "Bearer " + "a" * 43), ("X-Request-Id", "abcd1234.17")]
    answered: list[TunneledResponse] = []
    best = float("inf")
    batches = max(1, number // BATCH)
    for _ in range(REPEATS):
        took = 0.0
        for _ in range(batches):  # a few at a time, as a session has them: no pile of pending handlers
            start = time.process_time()
            for _ in range(BATCH):
                tunnel.start("GET", "/emails?limit=20", headers, b"", answered.append)
            took += time.process_time() - start
            while len(answered) < BATCH:  # let the handlers run, untimed
                await asyncio.sleep(0)
            answered.clear()
        best = min(best, took)
    return best / (batches * BATCH) * 1e6


def log_us(handler: EmailsHandler, number: int) -> float:
    """µs per access log line and request metrics, logged as ``gateway serve`` sets logging up (to /dev/null)."""
    cli.cheap_records()
    stream = open("/dev/null", "w")
    logging.basicConfig(level=logging.INFO, stream=stream, force=True)
    for log_handler in logging.getLogger().handlers:
        log_handler.setFormatter(cli.TextFormatter(cli.TEXT_FORMAT))
    handler.request_id = "abcd1234.7"
    log_function = observed(Metrics())
    try:
        return best_us(lambda: log_function(handler), number)
    finally:
        logging.getLogger().handlers.clear()
        stream.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a gateway's SQLite database with emails")
    parser.add_argument("--number", type=int, default=2000, help="calls per repeat (default 2000; find: a fifth)")
    args = parser.parse_args()
    db = sqlite3.connect(args.db)
    rows = [text for (text,) in db.execute(
        "SELECT doc FROM emails ORDER BY json_extract(doc, '$.created') DESC, id LIMIT ?", (PAGE,))]
    db.close()
    if len(rows) < PAGE:
        raise SystemExit(f"{args.db} has {len(rows)} emails; {PAGE} are needed")
    docs = [orjson.loads(text) for text in rows]
    body = orjson.dumps({"success": True, "emails": [public_email(doc) for doc in docs]})
    response = TunneledResponse(200, {"Content-Type": ["application/json; charset=utf-8"], "X-Total-Count": ["40"]},
                                body)
    handler = a_handler()
    print(f"gateway from {Path(gateway.__file__).parent.parent}; a page of {PAGE} emails, body {len(body)} bytes")
    print(f"  store.find   {asyncio.run(find_us(args.db, docs[0]['owner'], args.number // 5)):8.1f} us")
    page, page_body, way = asyncio.run(page_us(args.db, docs[0]["owner"], args.number // 5))
    assert page_body == body, "the page body is not the one encoded from the rows"
    print(f"  page body    {page:8.1f} us ({way})")
    print(f"  decode       {best_us(lambda: [orjson.loads(text) for text in rows], args.number):8.1f} us")
    print(f"  frame plain  {best_us(lambda: frames.response_frame_string('7', response), args.number):8.1f} us")
    print(f"  frame json   {best_us(lambda: frames.json_body_frame_string('7', response), args.number):8.1f} us")
    print(f"  clear        {best_us(handler.clear, args.number * 10):8.2f} us")
    print(f"  msg parse    {best_us(lambda: messages.parse(MESSAGE, 65536, '/ws'), args.number * 5):8.2f} us")
    print(f"  tunnel start {asyncio.run(start_us(args.number)):8.2f} us")
    print(f"  access log   {log_us(handler, args.number * 5):8.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
