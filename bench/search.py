"""Search cost: what ``GET /emails?q=...`` asks of each store, by mailbox size.

For each N in ``--sizes`` (1000, 10000) the script fills one account's mailbox
in a fresh store with N emails shaped as the gateway stores them (a subject, a
from, two recipients, a text body of about ``--body`` characters (1500), ``--raw``
characters of raw message inside the document (0: the gateway keeps it in a table of its own; give
some to see what keeping it in the email document would cost), and the case-folded ``search`` text the gateway
keeps), plus as many emails of another account.  Then it runs, ``--repeat``
times (20) each, the two store calls one page of ``GET /emails`` makes (count,
then find with limit 50): without ``q``, with a ``q`` that matches about 1 % of
the mailbox, and with one that matches nothing.  It prints the median time of
one page per case, and the ratio to the page without ``q`` measured in the same
run (the machine is shared: compare ratios, not absolute times).

``--store sqlite`` (a temporary file) or ``--store rethinkdb://HOST:PORT/DB``
(a database that is dropped and made anew).

Run (from the repository root, with the project installed)::

    python bench/search.py
    python bench/search.py --store rethinkdb://127.0.0.1:28015/bench_search --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import string
import sys
import tempfile
import time
from typing import Any

# this folder's events.py would shadow the events package: import from the repository root instead
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from gateway.ids import new_id, now_iso
from gateway.mail.parse import search_text
from gateway.store import Query, Store, Substring, store_from_url

WORDS = ["budget", "meeting", "report", "lunch", "invoice", "project", "travel", "review", "draft", "notes"]


def email(owner: str, n: int, body: int, raw: int, rng: random.Random) -> dict[str, Any]:
    words = " ".join(rng.choice(WORDS) + rng.choice(string.ascii_lowercase) for _ in range(body // 8))
    marker = " needle" if n % 100 == 0 else ""  # about 1 % match "needle"
    doc = {"id": new_id(), "owner": owner, "direction": "in", "status": "received", "labels": ["inbox"],
           "thread": new_id(), "subject": f"Subject {n}{marker}", "from": f"Sender {n} <s{n}@example.org>",
           "to": ["bob@localhost", "carol@example.org"], "cc": [], "text": words, "html": None,
           "created": now_iso(), "read": False}
    if raw:
        doc.update({"raw": "x" * raw, "raw_encoding": "utf-8"})
    doc["search"] = search_text(doc)
    return doc


async def page(store: Store, where: dict[str, Any]) -> None:
    await store.count("emails", where)
    await store.find("emails", Query(where, [("created", True)], limit=50))


async def timed(store: Store, where: dict[str, Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await page(store, where)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def run(url: str, size: int, body: int, raw: int, repeat: int) -> None:
    store = store_from_url(url)
    await store.open()
    try:
        rng = random.Random(size)
        owner, other = new_id(), new_id()
        for who in (owner, other):
            for n in range(size):
                await store.insert("emails", email(who, n, body, raw, rng))
        base = {"owner": owner}
        plain = await timed(store, base, repeat)
        cases = {"no q": plain,
                 "q matching ~1%": await timed(store, {**base, "search": Substring("needle")}, repeat),
                 "q matching none": await timed(store, {**base, "search": Substring("zzzz")}, repeat)}
        for name, seconds in cases.items():
            print(f"N={size:>6} raw={raw:>6} {name:<16} {seconds * 1000:8.2f} ms/page  x{seconds / plain:6.1f}")
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--body", type=int, default=1500)
    parser.add_argument("--raw", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    for size in args.sizes:
        if args.store == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                asyncio.run(run(f"sqlite:{folder}/search.db", size, args.body, args.raw, args.repeat))
        else:
            url = args.store.rstrip("/") + f"_{size}"
            asyncio.run(run(url, size, args.body, args.raw, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
