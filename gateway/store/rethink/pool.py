"""Connections to one RethinkDB database: a small round-robin pool, and driver errors as store errors.

The driver runs on asyncio (Tornado's loop).  A pooled connection that
dropped (the server restarted, say) is reconnected on its next use; lost
connections and unavailable tables surface as :class:`StoreUnavailable`, and
so does a query left unanswered for the pool's ``query_timeout`` (a server
stopped, or cut off by a partition that sends no reset, answers nothing and
closes nothing: without a limit every request waiting on it would hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, Iterator

from rethinkdb import RethinkDB
from rethinkdb.errors import ReqlAuthError, ReqlAvailabilityError, ReqlDriverError, ReqlError

from gateway.store.documents import StoreError, StoreUnavailable
from gateway.store.rethink.template import Decoder, Encoder

r = RethinkDB()
# Tornado runs on asyncio, so the driver's asyncio connections share its loop.
r.set_loop_type("asyncio")

DEFAULT_PORT = 28015
DEFAULT_DB = "gateway"
POOL_SIZE = 4
CONNECT_TIMEOUT = 5.0
#: Seconds a query may go unanswered before its caller gets StoreUnavailable (HTTP 503, SMTP 451);
#: the store URL's ``?timeout=`` sets it.  The query itself is not withdrawn (the protocol cannot
#: take back a write): it may still complete, so a client that retries a write should say so
#: (``Idempotency-Key``; a sender's retry of an inbound email files it once).
QUERY_TIMEOUT = 30.0
#: Seconds the schema's set-up may take per step (creating tables waits for them to be ready).
SCHEMA_TIMEOUT = 120.0


#: What the server or the driver says when the cluster cannot serve a query or take a write for now
#: (a lost connection; a table's primary down, failing over or cut off from a majority; a table's
#: configuration out of reach, which RethinkDB reports as an *internal* error): the store is
#: unavailable, and a client may try again (503, SMTP 451).
UNAVAILABLE = ("Connection is closed", "primary replica", "quorum of replicas", "none of the servers were accessible")


def unavailable(message: str) -> bool:
    """Whether an error message of the server or driver is one of :data:`UNAVAILABLE`."""
    return any(marker in message for marker in UNAVAILABLE)


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors as store errors: lost connections and unavailable tables are StoreUnavailable."""
    try:
        yield
    except StoreError:
        raise
    except (ReqlDriverError, ReqlAvailabilityError, OSError) as exc:
        raise StoreUnavailable(f"rethinkdb: {exc}") from exc
    except ReqlError as exc:
        if unavailable(str(exc)):
            raise StoreUnavailable(f"rethinkdb: {exc}") from exc
        raise StoreError(f"rethinkdb: {exc}") from exc


def write_failed(what: str, first_error: str | None) -> StoreError:
    """The error for a write the server refused (``first_error`` from its result): StoreUnavailable
    while the table has no primary that can take writes (a client may try again: 503, SMTP 451)."""
    error = first_error or "refused"
    if unavailable(error):
        return StoreUnavailable(f"rethinkdb: {what}: {error}")
    return StoreError(f"rethinkdb: {what}: {error}")


async def close_quietly(conn: Any) -> None:
    """Close a connection without waiting for replies; a failure to close is no news."""
    with contextlib.suppress(Exception):
        await conn.close(noreply_wait=False)


class Pool:
    """``size`` connections to ``db``, used in turn.

    ``hosts`` are the cluster's nodes this process may connect to, the preferred one first: a
    connection goes to the first that answers, so when a node dies its connections move to
    another (a RethinkDB node serves every table, whichever nodes hold its replicas).  Tables
    are created with ``replicas`` replicas (at most as many as the cluster has nodes).
    """

    def __init__(self, hosts: list[tuple[str, int]], db: str, user: str, password: str, size: int = POOL_SIZE,
                 replicas: int = 1, query_timeout: float = QUERY_TIMEOUT) -> None:
        self.hosts = list(hosts)
        self.query_timeout = query_timeout
        self.host, self.port = self.hosts[0]
        self.db = db
        self.replicas = replicas
        self.user, self.password = user, password
        self._slots: list[Any] = [None] * size
        self._locks: list[asyncio.Lock] = []
        self._turn = itertools.cycle(range(size))
        self.is_open = False

    async def connect(self) -> Any:
        """A new connection of its own (a change feed's, say), to the first of the hosts that answers."""
        failures = []
        for host, port in self.hosts:
            try:
                return await r.connect(host=host, port=port, db=self.db, user=self.user,
                                       password=self.password, timeout=CONNECT_TIMEOUT,
                                       json_encoder=Encoder, json_decoder=Decoder)
            except ReqlAuthError as exc:
                raise StoreError(f"rethinkdb {host}:{port}: {exc}") from exc
            except (ReqlDriverError, OSError) as exc:
                failures.append(f"{host}:{port}: {exc}")
        raise StoreUnavailable(f"rethinkdb {'; '.join(failures)}")

    async def open(self) -> Any:
        """Connect every slot; the first connection (for setting up the schema)."""
        self.is_open = True
        self._locks = [asyncio.Lock() for _ in self._slots]  # made here: they belong to this loop
        connections = await asyncio.gather(*(self.connect() for _ in self._slots), return_exceptions=True)
        self._slots = [c if not isinstance(c, BaseException) else None for c in connections]
        failed = [c for c in connections if isinstance(c, BaseException)]
        if failed:
            raise failed[0]
        return self._slots[0]

    async def close(self) -> None:
        self.is_open = False
        connections, self._slots = self._slots, [None] * len(self._slots)
        for conn in connections:
            if conn is not None:
                await close_quietly(conn)

    async def connection(self) -> Any:
        """The next pooled connection, reconnected first if it dropped (the server restarted, say)."""
        if not self.is_open:
            raise StoreUnavailable("the store is closed")
        slot = next(self._turn)
        conn = self._slots[slot]
        if conn is not None and conn.is_open():
            return conn
        async with self._locks[slot]:  # one reconnect per slot, however many queries wait
            conn = self._slots[slot]
            if conn is None or not conn.is_open():
                if conn is not None:
                    await close_quietly(conn)
                conn = await self.connect()
                if not self.is_open:  # closed while we connected
                    await close_quietly(conn)
                    raise StoreUnavailable("the store is closed")
                self._slots[slot] = conn
            return conn

    async def run(self, query: Any, conn: Any = None, timeout: float | None = None) -> Any:
        """Run a query (on ``conn``, or a pooled connection); driver failures become store errors, and
        so does no answer within ``timeout`` seconds (the pool's ``query_timeout`` unless given)."""
        limit = self.query_timeout if timeout is None else timeout
        with translated_errors():
            if conn is None:
                conn = await self.connection()
            # Waited for, never cancelled: the driver resolves the query's future when the answer
            # arrives, and an answer to a cancelled caller would make it close the whole (shared)
            # connection.  asyncio.wait rather than asyncio.timeout: it needs no current task, so a
            # caller may run this eagerly, outside any (the tunnel's direct reads do).
            running = asyncio.ensure_future(query.run(conn))
            try:
                await asyncio.wait((running,), timeout=limit)
            except asyncio.CancelledError:  # the caller went away (its client did): nor has the answer
                running.add_done_callback(_ignored)
                raise
            if not running.done():
                running.add_done_callback(_ignored)  # its late answer (or failure) has no one to go to
                raise StoreUnavailable(f"rethinkdb: no answer within {limit:g} s")
            return running.result()


def _ignored(late: asyncio.Future[Any]) -> None:
    """Take a late query's outcome, so a failure is not reported as never retrieved."""
    if not late.cancelled():
        late.exception()
