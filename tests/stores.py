"""The store backends the contract suite runs against."""

from __future__ import annotations

from typing import Any

from gateway.store import Store, store_from_url

BACKENDS = ["sqlite"]


def make_store(backend: str, tmp_path: Any, history_limit: int = 100_000) -> Store:
    if backend == "sqlite":
        return store_from_url(f"sqlite:{tmp_path}/contract.db", history_limit)
    raise ValueError(backend)
