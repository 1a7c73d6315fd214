"""Queries as ReQL: ``where`` conditions with the SQLite backend's semantics, sort keys, and index choice."""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

from gateway.store.documents import Contains, Doc, In, Substring
from gateway.store.rethink.pool import r
from gateway.store.rethink.template import Template
from gateway.store.schema import INDEXES, TABLES

#: find() looks up at most this many keys in an index (an In, or Ins on a compound index).
MAX_INDEX_KEYS = 100


def index_function(fields: tuple[str, ...]) -> Callable[[Any], Any]:
    """The ReQL function of an index on ``fields`` (compound when there are several)."""
    if len(fields) == 1:
        return lambda doc: doc[fields[0]]
    return lambda doc: [doc[name] for name in fields]


def table_name(table: str) -> str:
    """``table``, if it is one of the schema's (unknown names would otherwise come back as
    "table does not exist", an availability error)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    return table


def _indexable(value: Any) -> bool:
    """Whether ``value`` can be looked up in an index (RethinkDB refuses null keys; objects are left to filter)."""
    return isinstance(value, (str, int, float))


def _index_keys(cond: Any) -> list[Any] | None:
    """The index keys a ``where`` condition matches, or None when an index cannot serve it."""
    if isinstance(cond, In):
        return list(cond.values) if cond.values and all(_indexable(v) for v in cond.values) else None
    return [cond] if _indexable(cond) else None


def literal_pattern(text: str) -> str:
    """An RE2 pattern matching ``text`` literally (``\\x{...}`` escapes for all but ASCII letters and digits)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


def _condition(doc: Any, name: str, cond: Any) -> Any:
    """One ``where`` entry as a ReQL predicate, with the SQLite backend's semantics:
    a missing field equals only None, and never matches a value, In or Contains."""
    if isinstance(cond, In):
        values = [v for v in cond.values if v is not None]  # SQL's IN never matches NULL
        return r.expr(values).contains(doc[name]).default(False) if values else r.expr(False)
    if isinstance(cond, Contains):
        field = doc[name]
        return r.branch(field.type_of().eq("ARRAY"), field.contains(r.expr(cond.value)), False).default(False)
    if isinstance(cond, Substring):  # RE2 with every character but letters and digits escaped
        field = doc[name]
        return r.branch(field.type_of().eq("STRING"), field.match(literal_pattern(cond.value)).ne(None),
                        False).default(False)
    if cond is None:
        return doc[name].default(None).eq(None)
    return doc[name].eq(r.expr(cond)).default(False)


def predicate(where: dict[str, Any]) -> Callable[[Any], Any] | None:
    """``where`` as a ReQL predicate on a document, or None for no condition."""
    if not where:
        return None
    return lambda doc: r.and_(*(_condition(doc, name, cond) for name, cond in where.items()))


def order_key(value: Any) -> Any:
    """A value's sort key in SQLite's order: missing and null first, booleans as 0 and 1 among the
    numbers, then strings (RethinkDB's own order puts booleans before null, and missing before null)."""
    return r.branch(value.eq(None), [0], value.type_of().eq("BOOL"), [1, r.branch(value, 1, 0)], [1, value])


@functools.lru_cache(maxsize=256)
def order(name: str, descending: bool) -> Any:
    """The ``order_by`` term for a field, ordered as SQLite does (:func:`order_key`).  Built once
    per field: a term with a function takes the driver long to build, and a built one serves every query."""
    def key(doc: Any) -> Any:
        return order_key(doc[name].default(None))
    return r.desc(key) if descending else r.asc(key)


#: Indexes that serve a page in order: table -> name -> (a field ``where`` fixes, the field the page
#: is ordered by).  Their keys are ``[value, order_key(field)]``, so an index read is SQLite's order
#: but for ties, which it breaks by id the index's way (descending, in a descending read).
ORDER_INDEXES: dict[str, dict[str, tuple[str, str]]] = {
    "emails": {"owner_created_order": ("owner", "created")},
}


def order_index_function(fixed: str, field: str) -> Callable[[Any], Any]:
    """The ReQL function of an :data:`ORDER_INDEXES` index."""
    return lambda doc: [doc[fixed], order_key(doc[field].default(None))]


def ordered_page(table: str, where: dict[str, Any], order_by: list[tuple[str, bool]], offset: int,
                 limit: int | None) -> Any | None:
    """One page of ``find`` (an array) read from an :data:`ORDER_INDEXES` index, or None when none serves it.

    Sorting every matching document (an account's whole mailbox, for one page of it) is what a
    page costs otherwise.  The index gives the page's documents in order but for ties, so the
    page's range of sort keys is taken from it, and the documents in that range are sorted as
    :func:`order` and the id do, after the count of those before it: the same page as SQLite's.
    """
    if limit is None or len(order_by) != 1 or any(isinstance(c, Substring) for c in where.values()):
        return None  # a search scans the mailbox anyway, and leaves few to sort: in order, it would scan more
    field, descending = order_by[0]
    for name, (fixed, ordered_by) in ORDER_INDEXES.get(table, {}).items():
        value = where.get(fixed)
        if ordered_by != field or not isinstance(value, str):
            continue
        rest = {f: c for f, c in where.items() if f != fixed}
        if not rest:  # the list itself: a query built once (building one with functions costs the driver more)
            return _ordered_template(table, name, field, descending)(value, offset, limit)
        return _ordered(table, name, field, descending, value, offset, limit, predicate(rest))
    return None


@functools.lru_cache(maxsize=64)
def _ordered_template(table: str, name: str, field: str, descending: bool) -> Template:
    return Template(lambda value, offset, limit: _ordered(table, name, field, descending, value, offset, limit, None))


def _ordered(table: str, name: str, field: str, descending: bool, value: Any, offset: Any, limit: Any,
             rest: Callable[[Any], Any] | None) -> Any:
    """:func:`ordered_page`'s query (``value``, ``offset`` and ``limit`` may be a template's arguments)."""
    def between(low: Any, high: Any, **bounds: str) -> Any:
        return r.table(table).between([value, low], [value, high], index=name, **bounds)

    def matching(selection: Any) -> Any:
        return selection if rest is None else selection.filter(rest)

    in_index_order = matching(between(r.minval, r.maxval).order_by(index=r.desc(name) if descending else name))
    keys = in_index_order.skip(offset).limit(limit).map(lambda doc: order_key(doc[field].default(None)))

    def page(keys: Any) -> Any:
        low, high = (keys.nth(-1), keys.nth(0)) if descending else (keys.nth(0), keys.nth(-1))
        before = matching(between(high, r.maxval, left_bound="open") if descending
                          else between(r.minval, low, right_bound="open")).count()
        return matching(between(low, high, right_bound="closed")).order_by(order(field, descending), r.asc("id")) \
            .skip(r.expr(offset).sub(before)).limit(limit)

    return keys.coerce_to("array").do(lambda keys: r.branch(keys.is_empty(), [], page(keys)))


def select(table: str, where: dict[str, Any]) -> Any:
    """The documents of ``table`` matching ``where``, through a secondary index when one fits:
    every field of the index has an equality or an :class:`In` in ``where``."""
    selection = r.table(table_name(table))
    rest = where
    for name, fields in INDEXES.get(table, {}).items():
        choices = [_index_keys(where[f]) if f in where else None for f in fields]
        if None in choices:
            continue
        keys = [list(key) if len(fields) > 1 else key[0]
                for key in itertools.product(*(c for c in choices if c is not None))]
        if len(keys) > MAX_INDEX_KEYS:
            continue
        # each key once (repr tells True from 1, as RethinkDB does), or get_all returns a
        # document once per key it matches
        selection = selection.get_all(*{repr(k): k for k in keys}.values(), index=name)
        rest = {f: c for f, c in where.items() if f not in fields}
        break
    condition = predicate(rest)
    return selection if condition is None else selection.filter(condition)
