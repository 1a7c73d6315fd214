"""The store backends the contract suite runs against."""

from __future__ import annotations

from typing import Any

from gateway.store import Store, store_from_url
from tests import rethinkdb_server

BACKENDS = ["sqlite", "rethinkdb"]


def make_store(backend: str, tmp_path: Any, history_limit: int = 100_000, prepared: bool = False) -> Store:
    """A store on ``backend``, not open yet; ``prepared``: its RethinkDB database's schema may be made
    already (:func:`~tests.rethinkdb_server.prepared_store_url`), else the database does not exist yet."""
    if backend == "sqlite":
        return store_from_url(f"sqlite:{tmp_path}/contract.db", history_limit)
    if backend == "rethinkdb":
        # a database of its own on the session's server; skips the test when there is no server
        url = rethinkdb_server.prepared_store_url() if prepared else rethinkdb_server.store_url()
        return store_from_url(url, history_limit)
    raise ValueError(backend)


def store_option(backend: str) -> dict[str, Any]:
    """The ``start_gateway`` override that runs a gateway on ``backend`` (skips without a RethinkDB): a
    database of its own, its schema made ahead where it could be (see ``prepared_store_url``)."""
    return {} if backend == "sqlite" else {"store": rethinkdb_server.prepared_store_url()}
