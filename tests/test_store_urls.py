"""Store URLs: a RethinkDB cluster's nodes, replicas and query timeout, and clear errors for what cannot be used."""

from __future__ import annotations

import pytest

from gateway.store import store_from_url
from gateway.store.rethink import RethinkStore


def test_a_cluster_url_names_its_nodes_in_order_and_the_replicas() -> None:
    store = store_from_url("rethinkdb://admin:pw@a:1,b:2,[::1]:3/mail?replicas=3&timeout=2.5")
    assert isinstance(store, RethinkStore)
    assert store._pool.hosts == [("a", 1), ("b", 2), ("::1", 3)]
    assert (store.db, store._pool.replicas, store._pool.user, store._pool.password) == ("mail", 3, "admin", "pw")
    assert store._pool.query_timeout == 2.5
    plain = store_from_url("rethinkdb://db1")
    assert isinstance(plain, RethinkStore)
    assert (plain._pool.hosts, plain.db, plain._pool.replicas) == ([("db1", 28015)], "gateway", 1)
    assert plain._pool.query_timeout == 30


@pytest.mark.parametrize("url, message", [
    ("rethinkdb://a:x/db", "bad port"),
    ("rethinkdb://a,/db", "a host is missing"),
    ("rethinkdb://a/db?replicas=0", "replicas must be a number from 1 to 9"),
    ("rethinkdb://a/db?replicas=many", "replicas must be a number from 1 to 9"),
    ("rethinkdb://a/db?shards=2", "expected rethinkdb://HOST:PORT"),
    ("rethinkdb://a/db?timeout=0", "timeout must be a number of seconds from 0.1 to 3600"),
    ("rethinkdb://a/db?timeout=soon", "timeout must be a number of seconds from 0.1 to 3600"),
    ("rethinkdb://a/db?timeout=nan", "timeout must be a number of seconds from 0.1 to 3600"),
    ("rethinkdb://a/bad.name", "bad RethinkDB database name"),
])
def test_a_bad_cluster_url_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store_from_url(url)
