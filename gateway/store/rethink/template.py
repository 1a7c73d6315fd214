"""ReQL queries built once and run many times with new values, and the JSON codec they go through.

The driver builds a query's term tree in Python on every call, and a query
with functions in it (``r.do``, ``r.branch`` over ``lambda``, an update
function) takes it milliseconds, more than the database takes to run it.  A
:class:`Template` builds its function once, and encodes it to JSON once; each
call sends it with the call's values as its arguments (``r.do(values...,
function)`` on the wire), the values converted by :func:`datum` rather than
the driver's ``r.expr``.  Connections use :class:`Encoder` (which sends a
template's JSON as it is) and :class:`Decoder` (plain JSON: the store never
asks for times, binary or grouped data, so the driver's conversion of every
object it receives is skipped).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from rethinkdb import ql2_pb2
from rethinkdb.ast import ReQLEncoder, RqlQuery, expr

FUNCALL = ql2_pb2.Term.TermType.FUNCALL
MAKE_ARRAY = ql2_pb2.Term.TermType.MAKE_ARRAY
JSON = ql2_pb2.Term.TermType.JSON
_ENCODER = ReQLEncoder()


def _plain(value: Any) -> bool:
    """Whether ``value`` holds no ReQL term (so it can go as JSON text)."""
    if isinstance(value, dict):
        return all(_plain(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    return not isinstance(value, RqlQuery)


def argument(value: Any) -> Any:
    """A template's argument in ReQL's wire form: an object or array without terms in it goes as
    ``r.json(text)``, which the server parses at once, rather than as a tree of MAKE_ARRAY terms
    it compiles and evaluates one by one."""
    if isinstance(value, (dict, list, tuple)) and _plain(value):
        return [JSON, [_ENCODER.encode(value)]]
    return datum(value)


def datum(value: Any) -> Any:
    """A JSON value (or a ReQL term) in ReQL's wire form: arrays become MAKE_ARRAY terms."""
    if isinstance(value, dict):
        return {key: datum(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [MAKE_ARRAY, [datum(item) for item in value]]
    if isinstance(value, RqlQuery):
        return value.build()
    return value


class Call(RqlQuery):  # type: ignore[misc]  # the driver has no type hints
    """A template applied to values: sent as JSON made once, or built into an enclosing query."""

    def __init__(self, template: Template, values: tuple[Any, ...]) -> None:
        super().__init__()
        self._arguments = [argument(value) for value in values]
        arguments = _ENCODER.encode(self._arguments)[1:-1]  # "a,b" of "[a,b]"
        self.json = f"[{FUNCALL},[{template.json}{',' if arguments else ''}{arguments}]]"
        self._function = template.function

    def build(self) -> Any:
        return [FUNCALL, [self._function, *self._arguments]]

    def compose(self, args: Any, optargs: Any) -> str:
        return "<template>"  # what the driver's error messages show for it


class Template:
    """``Template(lambda a, b: <ReQL>)``, then ``template(x, y)`` is the query for ``a=x, b=y``."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = expr(function)
        self.json = _ENCODER.encode(self.function)

    def __call__(self, *values: Any) -> Call:
        return Call(self, values)


class Encoder(ReQLEncoder):  # type: ignore[misc]
    """The driver's encoder, but a query that is a template's :class:`Call` goes as its JSON."""

    def encode(self, o: Any) -> str:
        if isinstance(o, list) and len(o) >= 2 and isinstance(o[1], Call):
            rest = "".join("," + super(Encoder, self).encode(item) for item in o[2:])
            return f"[{int(o[0])},{o[1].json}{rest}]"
        return str(super().encode(o))


class Decoder(json.JSONDecoder):
    """Plain JSON: what the store reads holds no ReQL pseudo-types."""

    def __init__(self, reql_format_opts: Any = None) -> None:
        super().__init__()
