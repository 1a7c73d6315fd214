"""A RethinkDB server for the tests: ``RETHINKDB_URL`` if set, else one started from PATH.

The server is started lazily, the first time a test asks for it, and once per
test session (``stop()`` runs from a session fixture in ``conftest.py``): a
RethinkDB start takes a few seconds, far more than the tests that use it.
Each store the tests make gets a database of its own (:func:`new_db_name`),
so tests never see each other's data; on a server of our own they vanish with
its data directory, on a ``RETHINKDB_URL`` server :func:`stop` drops them.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.peers import free_port

#: How long a started server may take to accept driver connections.
START_TIMEOUT = 60.0
#: Where the servers keep their data: in memory (tmpfs) where there is one. RethinkDB syncs its
#: metadata to disk on every table it creates, which made a fresh database (the schema: a dozen
#: tables) take about 0.8 s on disk against 0.5 s here; a killed server still finds its data on restart.
DATA_ROOT = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
SKIP_REASON = "no rethinkdb on PATH and RETHINKDB_URL unset"


@dataclass
class _Server:
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    directory: str | None = None


_server: _Server | None = None
_failure: str | None = None  # why starting failed, so later tests fail fast with the same reason
_databases: list[str] = []


def _can_connect(host: str, port: int) -> bool:
    """Whether the server completes a driver handshake (a bound port alone is not enough)."""
    from rethinkdb import RethinkDB
    from rethinkdb.errors import ReqlDriverError

    r = RethinkDB()  # the default, blocking loop type: no event loop needed here
    try:
        conn = r.connect(host=host, port=port, timeout=2)
    except (ReqlDriverError, OSError):
        return False
    conn.close(noreply_wait=False)
    return True


def _log_tail(directory: str) -> str:
    try:
        with open(os.path.join(directory, "server.log"), "rb") as log:
            return log.read()[-2000:].decode(errors="replace")
    except OSError:
        return ""


def _spawn(binary: str, directory: str, port: int, cluster_port: int, name: str,
           cache_mb: int, join: int | None = None) -> subprocess.Popen[bytes]:
    """A rethinkdb process on loopback ports, its data and log in ``directory``; with ``join``, a
    node of the cluster whose node listens on that cluster port."""
    with open(os.path.join(directory, "server.log"), "ab") as log:
        return subprocess.Popen(
            [binary, "--directory", os.path.join(directory, "data"), "--bind", "127.0.0.1",
             "--driver-port", str(port), "--cluster-port", str(cluster_port), "--no-http-admin",
             "--no-update-check", "--server-name", name, "--cache-size", str(cache_mb),
             *(["--join", f"127.0.0.1:{join}"] if join is not None else [])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


def _came_up(process: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until the server takes driver connections; False if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _can_connect("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling a process we cannot be notified by
    return True


def _start() -> _Server:
    binary = shutil.which("rethinkdb")
    assert binary is not None
    failure = ""
    for _ in range(3):  # a free port can be taken between our probe and the server's bind: try others
        directory = tempfile.mkdtemp(prefix="gateway-rethinkdb-", dir=DATA_ROOT)
        driver_port, cluster_port = free_port(), free_port()
        process = _spawn(binary, directory, driver_port, cluster_port, "gateway_tests", 256)
        server = _Server("127.0.0.1", driver_port, process, directory)
        if _came_up(process, driver_port):
            return server
        exited = process.poll() is not None
        failure = f"rethinkdb did not start (exit code {process.poll()}):\n{_log_tail(directory)}"
        _stop_process(server)
        if not exited:
            break  # hung rather than exited: another try would not help
    raise RuntimeError(failure)


def _stop_process(server: _Server) -> None:
    if server.process is not None and server.process.poll() is None:
        # SIGKILL: its data is removed next, and a clean shutdown closes every table of every test's
        # database first (about 1.5 s at the end of a worker's session)
        server.process.kill()
        server.process.wait()
    if server.directory is not None:
        shutil.rmtree(server.directory, ignore_errors=True)


def server_address() -> tuple[str, int]:
    """The test server's host and driver port; skips the calling test when there is none."""
    global _server, _failure
    if _server is None:
        url = os.environ.get("RETHINKDB_URL")
        if url:
            parts = urlsplit(url)
            _server = _Server(parts.hostname or "localhost", parts.port or 28015)
        elif shutil.which("rethinkdb") is None:
            pytest.skip(SKIP_REASON)
        else:
            if _failure is None:
                try:
                    _server = _start()
                    atexit.register(stop)  # in case the session fixture never runs its teardown
                except RuntimeError as exc:
                    _failure = str(exc)
            if _failure is not None:  # a broken install fails every test that needs it, at once
                pytest.fail(_failure, pytrace=False)
    assert _server is not None
    return _server.host, _server.port


def new_db_name() -> str:
    """A database name no other test uses; dropped by :func:`stop` on a server we did not start."""
    name = f"gateway_test_{uuid.uuid4().hex}"
    _databases.append(name)
    return name


def store_url() -> str:
    """A ``rethinkdb://`` store URL with a fresh database; skips the calling test when there is no server."""
    host, port = server_address()
    return f"rethinkdb://{host}:{port}/{new_db_name()}"


#: How many databases :func:`prepared_store_url` keeps made ahead.
PREPARED_AHEAD = 2


class _Preparer:
    """Makes fresh databases with the gateway's schema ahead of the tests that ask for one, on a thread.

    A new database's tables and indexes take RethinkDB about half a second, mostly waiting on its own
    bookkeeping; made while the tests before run, that wait overlaps theirs.  The schema is made by the
    store's own ``open()``, so a schema that cannot be made still fails a test: the one that gets a fresh
    database when the thread has given up (:func:`prepared_store_url`).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ready: queue.Queue[str] = queue.Queue()
        self.room = threading.Semaphore(PREPARED_AHEAD)  # released as a test takes a prepared one
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rethinkdb-prepare", daemon=True)
        self.thread.start()

    def take(self) -> str | None:
        """A prepared database's URL, or None when none is ready yet."""
        try:
            url = self.ready.get_nowait()
        except queue.Empty:
            return None
        self.room.release()
        return url

    def _run(self) -> None:
        from gateway.store import store_from_url

        async def make(url: str) -> None:
            store = store_from_url(url, 100_000)
            await store.open()
            await store.close()

        while True:
            self.room.acquire()
            if self.stopping.is_set():
                return
            url = f"rethinkdb://{self.host}:{self.port}/{new_db_name()}"
            try:
                asyncio.run(make(url))
            except Exception:  # the tests that ask get fresh databases, and meet the failure themselves
                return
            self.ready.put(url)

    def stop(self) -> None:
        self.stopping.set()
        self.room.release()
        self.thread.join(60)


_preparer: _Preparer | None = None


def prepared_store_url() -> str:
    """A ``rethinkdb://`` store URL of a fresh database whose tables and indexes are made already, by
    the store's own ``open()`` ahead of time (:class:`_Preparer`): for tests of what a store or a gateway
    does with it, not of how it makes its schema; :func:`store_url`'s empty one when none is ready yet.
    Skips the calling test when there is no server."""
    global _preparer
    host, port = server_address()
    if _preparer is None:
        _preparer = _Preparer(host, port)
    return _preparer.take() or store_url()


def stop() -> None:
    """Stop the server we started, or drop the test databases from a ``RETHINKDB_URL`` server."""
    global _server, _preparer
    preparer, _preparer = _preparer, None
    if preparer is not None:
        preparer.stop()  # first: it makes databases on the server
    server, _server = _server, None
    names, _databases[:] = list(_databases), []
    if server is None:
        return
    if server.process is not None:
        _stop_process(server)
        return
    from rethinkdb import RethinkDB

    r = RethinkDB()
    try:
        with r.connect(host=server.host, port=server.port, timeout=5) as conn:
            existing = set(r.db_list().run(conn))
            for name in names:
                if name in existing:
                    r.db_drop(name).run(conn)
    except Exception as exc:  # cleanup only: never fail the session for it
        print(f"could not drop the test databases on {server.host}:{server.port}: {exc}")


class OwnServer:
    """A RethinkDB server of one test's own, to kill and restart (same data, same ports).

    Needs a ``rethinkdb`` on PATH (a ``RETHINKDB_URL`` server cannot be killed): skips otherwise.
    ``start()`` blocks until the server takes driver connections: run it in a thread from async tests.
    """

    def __init__(self, name: str = "gateway_own", join: int | None = None) -> None:
        binary = shutil.which("rethinkdb")
        if binary is None:
            pytest.skip("needs a rethinkdb on PATH to kill and restart")
        self.binary = binary
        self.name = name
        self.join = join  # the cluster port of a node to join
        self.directory = tempfile.mkdtemp(prefix="gateway-rethinkdb-own-", dir=DATA_ROOT)
        self.port, self.cluster_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rethinkdb://127.0.0.1:{self.port}/gateway"

    def start(self) -> None:
        self.process = _spawn(self.binary, self.directory, self.port, self.cluster_port, self.name, 128, self.join)
        if not _came_up(self.process, self.port):
            raise RuntimeError(f"rethinkdb did not start:\n{_log_tail(self.directory)}")

    def kill(self) -> None:
        """SIGKILL: the database goes away without a goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class OwnCluster:
    """``size`` RethinkDB nodes of one test's own, joined in one cluster; each can be killed and
    restarted (same data, same ports).  Blocking: call from a thread in async tests."""

    def __init__(self, size: int = 3) -> None:
        first = OwnServer("node1")
        self.nodes = [first] + [OwnServer(f"node{i + 1}", join=first.cluster_port) for i in range(1, size)]

    def url(self, db: str, first: int = 0, replicas: int | None = None) -> str:
        """A store URL naming every node, ``first`` preferred, then the rest in order."""
        order = self.nodes[first:] + self.nodes[:first]
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in order)
        return f"rethinkdb://{hosts}/{db}?replicas={replicas or len(self.nodes)}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        self.wait(lambda r, c: r.db("rethinkdb").table("server_status").count().run(c) == len(self.nodes),
                  "every node to join")

    def admin(self, action: Any) -> Any:
        """Run ``action(r, conn)`` on a connection to the first node that answers."""
        from rethinkdb import RethinkDB
        from rethinkdb.errors import ReqlDriverError

        r = RethinkDB()
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                conn = r.connect(host="127.0.0.1", port=node.port, timeout=5)
            except (ReqlDriverError, OSError):
                continue
            try:
                return action(r, conn)
            finally:
                conn.close(noreply_wait=False)
        raise RuntimeError("no node of the cluster answers")

    def wait(self, condition: Any, what: str, timeout: float = START_TIMEOUT) -> None:
        """Poll ``condition(r, conn)`` (on a live node) until it holds; errors count as not yet."""
        from rethinkdb.errors import ReqlError

        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.admin(condition):
                    return
            except (ReqlError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not come to {what} within {timeout:.0f} s")
            time.sleep(0.1)  # polling the cluster's own state: it notifies nobody

    def make_primary(self, db: str, node: "OwnServer") -> None:
        """Every table of ``db`` gets its primary replica on ``node`` (replicas on every node)."""
        names = [n.name for n in self.nodes]
        self.admin(lambda r, c: r.db("rethinkdb").table("table_config").filter({"db": db}).update(
            {"shards": [{"primary_replica": node.name, "replicas": names, "nonvoting_replicas": []}]}).run(c))
        self.wait_ready(db)

    def primaries(self, db: str) -> set[str]:
        """The nodes holding a primary replica of some table of ``db`` now."""
        statuses = self.admin(lambda r, c: list(r.db("rethinkdb").table("table_status").filter({"db": db}).run(c)))
        return {shard["primary_replicas"][0] for s in statuses for shard in s["shards"] if shard["primary_replicas"]}

    def wait_ready(self, db: str, wait_for: str = "all_replicas_ready", timeout: float = START_TIMEOUT) -> None:
        """Until every table of ``db`` is ready (by default: every replica up to date)."""
        self.wait(lambda r, c: all(s["status"][wait_for] for s in r.db("rethinkdb").table("table_status").filter(
            {"db": db}).run(c)), f"tables {wait_for}", timeout)

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()


async def make_earlier_layout(db: str, stamped: dict[str, Any] | None = None, seq: int = 500) -> None:
    """Database ``db`` as the earlier layout left it: the one counter of every event, at ``seq``
    (and, if given, an email it stamped with that seq)."""
    from rethinkdb import RethinkDB

    driver = RethinkDB()
    driver.set_loop_type("asyncio")
    conn = await driver.connect(*server_address())
    try:
        await driver.db_create(db).run(conn)
        await driver.db(db).table_create("counters").run(conn)
        await driver.db(db).table("counters").insert({"id": "events", "seq": seq, "pruned": 0}).run(conn)
        if stamped is not None:
            await driver.db(db).table_create("emails").run(conn)
            await driver.db(db).table("emails").insert({**stamped, "_event": {"seq": seq, "kind": "receipt"}}).run(conn)
    finally:
        await conn.close()

