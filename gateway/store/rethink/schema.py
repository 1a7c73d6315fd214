"""Creating the database, tables and indexes a RethinkDB store needs, safely when several processes start at once."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
from typing import Any

from rethinkdb.errors import ReqlOpFailedError

from gateway.store.documents import StoreError, StoreUnavailable
from gateway.store.rethink.pool import SCHEMA_TIMEOUT, Pool, r
from gateway.store.rethink.query import ORDER_INDEXES, index_function, order_index_function
from gateway.store.rethink.recording import LOG
from gateway.store.schema import INDEXES, TABLES

log = logging.getLogger("gateway.store.rethink")

#: Passes over the schema before open() gives up (each settles what concurrent openers created).
SCHEMA_ATTEMPTS = 10

#: The backend's own indexes, beside the schema's: the event log in the order it is pruned, and by
#: email (the entry an interrupted insert left, which its retry reuses: see recording._orphan).
EVENT_INDEXES: dict[str, dict[str, tuple[str, ...]]] = {LOG: {"at": ("at",), "email": ("email",)}}

#: Names made by :func:`_aside`.
ASIDE = re.compile(r"^[A-Za-z0-9_-]+_dup_[0-9a-f]{16}$")


def _aside(name: str, item_id: str) -> str:
    """The name a duplicate is renamed to: the same in every process that settles it."""
    return f"{name}_dup_{item_id.replace('-', '')[:16]}"


class Schema:
    """Makes the database of ``pool`` hold every table and index (see :meth:`create`)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.db = pool.db

    async def create(self, conn: Any) -> None:
        """Create what is missing; safe when several processes open the same database at once.

        RethinkDB checks a new table's name without a lock: processes creating the same table
        at once all succeed, leaving duplicates that make every use of the name fail as
        "ambiguous".  So a process that created tables, or met a schema error while others
        were at it, settles duplicates (:meth:`_settle_duplicates`) and looks again, until a
        pass finds the whole schema in place.
        """
        settle = False
        failure: StoreUnavailable | None = None
        for _ in range(SCHEMA_ATTEMPTS):
            try:
                if settle:
                    await self._settle_duplicates(conn)
                if await self._create_tables(conn):
                    settle = True  # others may have created the same tables at the same moment
                    continue
                await self._create_indexes(conn)
                return
            except StoreUnavailable as exc:
                # ambiguous names, tables dropped or not ready yet: other processes at work
                if not isinstance(exc.__cause__, ReqlOpFailedError):
                    raise
                settle, failure = True, exc
                await asyncio.sleep(random.uniform(0.05, 0.3))  # let them finish their step
        raise failure or StoreError(f"rethinkdb: the schema of {self.db!r} did not settle")

    async def _run(self, query: Any, conn: Any = None) -> Any:
        return await self.pool.run(query, conn, timeout=SCHEMA_TIMEOUT)

    async def _create_tables(self, conn: Any) -> bool:
        """Create the database and tables that are missing; whether any table was."""
        if self.db not in await self._run(r.db_list(), conn):
            await self._create(r.db_create(self.db), conn)  # atomic on one server, not across a cluster
        existing = set(await self._run(r.db(self.db).table_list(), conn))
        missing = [t for t in (*TABLES, LOG) if t not in existing]
        # as many replicas as asked for, and as the cluster has nodes to hold them
        servers = len(await self._run(r.db("rethinkdb").table("server_status").pluck("id").coerce_to("array"), conn))
        replicas = max(1, min(self.pool.replicas, servers))
        await asyncio.gather(*(self._create(r.db(self.db).table_create(t, replicas=replicas)) for t in missing))
        if missing:
            await self._run(r.db(self.db).wait(wait_for="ready_for_writes"), conn)
        return bool(missing)

    async def _create_indexes(self, conn: Any) -> None:
        # index_create, unlike table_create, refuses a name that exists, even under a race
        functions = {table: {name: index_function(fields) for name, fields in declared.items()}
                     for table, declared in {**INDEXES, **EVENT_INDEXES}.items()}
        for table, ordered in ORDER_INDEXES.items():
            functions.setdefault(table, {}).update(
                {name: order_index_function(fixed, field) for name, (fixed, field) in ordered.items()})
        for table, declared in functions.items():
            present = set(await self._run(r.table(table).index_list(), conn))
            await asyncio.gather(*(self._create(r.table(table).index_create(name, function))
                                   for name, function in declared.items() if name not in present))
        await asyncio.gather(*(self._run(r.table(table).index_wait()) for table in functions))

    async def _create(self, query: Any, conn: Any = None) -> None:
        try:
            await self._run(query, conn)
        except StoreUnavailable as exc:
            # another process created it first
            if not (isinstance(exc.__cause__, ReqlOpFailedError) and "already exists" in str(exc.__cause__)):
                raise

    async def _settle_duplicates(self, conn: Any) -> None:
        """Leave one database and one table of each name, never dropping anything that holds data.

        Runs in every process that met duplicates, possibly at once, so each step is idempotent
        and the choice is the same everywhere: the lowest id, unless it is empty and another copy
        is not.  Copies are first renamed out of the way (``NAME_dup_ID``), then dropped if empty;
        one that holds data is kept under that name and logged, for an operator to merge.
        """
        system = r.db("rethinkdb")
        tables_of = system.table("table_config", identifier_format="uuid")  # "db" as an id: names may repeat
        dbs = sorted(await self._run(
            system.table("db_config").filter({"name": self.db})["id"].coerce_to("array"), conn))
        if len(dbs) > 1:
            sizes = {db_id: await self._run(tables_of.filter({"db": db_id}).count(), conn) for db_id in dbs}
            keep = min(dbs, key=lambda db_id: (sizes[db_id] == 0, db_id))
            for db_id in dbs:
                if db_id != keep:
                    aside = _aside(self.db, db_id)
                    await self._run(system.table("db_config").get(db_id).update({"name": aside}), conn)
                    await self._drop_if_empty(conn, self.db, aside, tables_of.filter({"db": db_id}).count(),
                                              r.db_drop(aside))
            return  # the tables are settled on the next pass, once the database name is unique
        if not dbs:
            return
        await self._run(r.db(self.db).wait(wait_for="ready_for_reads", timeout=30), conn)  # new tables too
        entries = await self._run(tables_of.filter({"db": dbs[0]}).pluck("id", "name").coerce_to("array"), conn)
        by_name: dict[str, list[str]] = collections.defaultdict(list)
        for entry in entries:
            by_name[entry["name"]].append(entry["id"])
        for name, ids in by_name.items():
            if ASIDE.match(name):  # left over by a process that stopped half-way
                await self._drop_if_empty(conn, name, name, r.table(name).count(), r.table_drop(name))
            elif len(ids) > 1:
                await self._settle_table(conn, name, sorted(ids))

    async def _settle_table(self, conn: Any, name: str, ids: list[str]) -> None:
        tables_of = r.db("rethinkdb").table("table_config", identifier_format="uuid")
        # The lowest id keeps the name (so the name never goes missing, which would make other
        # processes create it again); the others are renamed apart, so each can be counted.
        first, *others = ids
        for table_id in others:
            await self._run(tables_of.get(table_id).update({"name": _aside(name, table_id)}), conn)
        sizes = {table_id: await self._run(r.table(_aside(name, table_id)).count(), conn) for table_id in others}
        keep = first
        if not await self._run(r.table(name).count(), conn):  # rather a copy that has data, if one has
            keep = min((table_id for table_id in others if sizes[table_id]), default=first)
        if keep != first:
            await self._run(tables_of.get(first).update({"name": _aside(name, first)}), conn)
            await self._run(tables_of.get(keep).update({"name": name}), conn)
        for table_id in ids:
            if table_id != keep:
                aside = _aside(name, table_id)
                await self._drop_if_empty(conn, name, aside, r.table(aside).count(), r.table_drop(aside))

    async def _drop_if_empty(self, conn: Any, name: str, aside: str, size: Any, drop: Any) -> None:
        """Drop a copy renamed out of the way, if ``size`` (counted under that name, which nothing
        else uses) says it is empty; else leave it for an operator."""
        try:
            if await self._run(size, conn):
                log.error("rethinkdb: a duplicate of %r holds data; kept as %r, merge it by hand", name, aside)
                return
            await self._run(drop, conn)
        except StoreUnavailable as exc:
            if "does not exist" not in str(exc):  # else another process dropped it first
                raise
        else:
            log.info("rethinkdb: dropped %r, an empty duplicate of %r left by a concurrent start", aside, name)
