"""Mail addresses with display names (``Alice <alice@example.org>``): what the API accepts, what a
document keeps, and how a header carries them.

A document keeps each address as one string: the bare address (``bob@example.org``) or the
display name and the address (``Alice Example <alice@example.org>``, ``"Smith, John"
<john@example.org>``), names in plain Unicode.  :func:`address_of` gives the address part, which is
what routing and the SMTP envelope use.  Headers are written by :func:`address_header`, which makes
non-ASCII names (and names that could read as encoded words) RFC 2047 encoded words of their literal
text, so a name can never turn into new header lines.
"""

from __future__ import annotations

import email.utils
import itertools
import re
import unicodedata
from email.message import Message
from typing import Any, Callable

from gateway.mail.headers import encoded_words

#: An address as the API takes it: no spaces, quotes, brackets or separators; a plain domain.
ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
#: ``Display Name <address>``: the name is everything before the last ``<`` (brackets only when quoted).
NAMED = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>$", re.S)
#: Characters that make a display name a quoted string in a header (RFC 5322 specials).
SPECIALS = re.compile(r'[][\\()<>@,:;".]')
MAX_NAME = 200
#: A bare address the email package reads back as it is (dot-atoms of plain ASCII: nothing it would
#: decode, quote or flag), so a header of only such addresses needs no parse (:func:`header_mailboxes`).
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
#: A plain address with a display name of plain words (``Alice Example <alice@example.org>``), which
#: the email package reads back as they are: RFC 5322 atoms of ASCII (no quotes, dots or comments),
#: without "=" and "?", so that nothing can read as an encoded word.
#: (Words are separated by white space, so a name is matched one way only: no backtracking to try.)
PLAIN_NAMED = re.compile(r"(?P<name>(?:[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?:[ \t]+[A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*)?)"
                         rf"[ \t]*<(?P<address>{PLAIN_ADDRESS.pattern})>")


def control_problem(value: str) -> str | None:
    """Why text cannot go into a header: control characters (CR, LF, VT, FF, NEL, ...), line or
    paragraph separators, or lone surrogates (a tab is allowed)."""
    for char in value:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs"):
            return f"must not contain control or line-separator characters (found U+{ord(char):04X})"
    return None


def split(entry: str) -> tuple[str, str]:
    """``(display name, address)`` of an entry as the API takes it; ValueError saying why not."""
    problem = control_problem(entry)
    if problem:
        raise ValueError(problem)
    entry = entry.strip()
    match = NAMED.match(entry)
    name, address = (match["name"].strip(), match["address"].strip()) if match else ("", entry)
    if name.startswith('"'):
        if len(name) < 2 or not name.endswith('"') or name.endswith('\\"') and not name.endswith('\\\\"'):
            raise ValueError("has an unterminated quoted display name")
        name = email.utils.unquote(name)
    elif "<" in name or ">" in name:
        raise ValueError("has angle brackets in a display name that is not quoted")
    # "=?" would read as an encoded word in a header: never part of an address
    if not ADDRESS.fullmatch(address) or "=?" in address:
        raise ValueError("is not an address")
    if len(name) > MAX_NAME:
        raise ValueError(f"has a display name over {MAX_NAME} characters")
    return name, address


def mailbox(name: str, address: str) -> str:
    """The string a document keeps: ``address``, or ``name <address>`` (quoted where a header would need it)."""
    name = " ".join(name.split())
    if not name:
        return address
    if SPECIALS.search(name):
        name = f'"{email.utils.quote(name)}"'
    return f"{name} <{address}>"


def normalized(entry: str) -> str:
    """An API entry as a document keeps it (ValueError when it is no address)."""
    return mailbox(*split(entry))


def address_of(entry: str) -> str:
    """The address part of an entry a document keeps (the bare address, or what is in its ``<>``)."""
    if entry.endswith(">") and "<" in entry:
        return entry[entry.rindex("<") + 1:-1]
    return entry


def _phrase(name: str) -> str:
    """A display name as a header phrase: as it is, quoted, or encoded words when not plain ASCII."""
    if name.isascii() and name.isprintable() and "=?" not in name:  # at most MAX_NAME: fits a line
        return f'"{email.utils.quote(name)}"' if SPECIALS.search(name) else name
    return encoded_words(name)


def address_header(entries: list[str]) -> str:
    """The value of a From, To or Cc header for ``entries`` (as documents keep them), folded per address."""
    values = []
    for entry in entries:
        address = address_of(entry)
        name = entry[:-len(address) - 2].strip() if address != entry else ""
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = email.utils.unquote(name)
        values.append(f"{_phrase(name)} <{address}>" if name else address)
    return ",\r\n ".join(values)


def _clean(name: str) -> str:
    """A display name from the wire, with control characters as spaces and spaces collapsed."""
    return " ".join("".join(" " if control_problem(c) else c for c in name).split())


def _plain_addresses(values: list[str]) -> list[str] | None:
    """The addresses of a header's raw ``values`` when they hold only plain addresses, bare or with a
    display name of plain words (``a@b.example, Ann Lee <c@d.example>``), as the email package would
    read them and :func:`mailbox` keep them; None when they hold anything else."""
    found: list[str] = []
    for value in values:
        for part in "".join(value.splitlines()).split(","):
            entry = _plain_entry(part)
            if entry is None:
                return None
            found.append(entry)
    return found


def _plain_entry(entry: str) -> str | None:
    """One entry of an address list as :func:`mailbox` keeps it, when it is a plain address, bare or
    with a display name of plain words; None for anything else."""
    entry = entry.strip(" \t")
    if PLAIN_ADDRESS.fullmatch(entry):
        return entry
    named = PLAIN_NAMED.fullmatch(entry)
    if named is None:
        return None
    name = " ".join(named["name"].split())
    return f"{name} <{named['address']}>" if name else named["address"]


def header_mailboxes(message: Message, header: str, raw_headers: dict[str, list[str]] | None = None) -> list[str]:
    """The addresses of a received message's header, display names kept (decoded from encoded words);
    ``raw_headers``: the message's raw header values by lower-case name, when the caller has them."""
    name = header.lower()
    values = raw_headers.get(name, []) if raw_headers is not None else \
        [str(value) for key, value in message.raw_items() if key.lower() == name]
    plain = _plain_addresses(values)
    if plain is not None:  # what the parse below would give, at a fraction of its cost
        return plain
    factory = getattr(message.policy, "header_factory", None)
    if sum(map(len, values)) > LONG_HEADER and factory is not None:
        return _long_header_mailboxes(factory, header, values)
    return _package_mailboxes(lambda: message.get_all(header, []), values)


def _package_mailboxes(parsed: Callable[[], list[Any]], values: list[str]) -> list[str]:
    """The addresses of the header objects ``parsed()`` gives (the email package's reading of the raw
    ``values``) as a document keeps them (:func:`mailbox`), those without an address left out; when
    the package raises on them (asking again would raise again), as the raw text reads."""
    try:
        found = [(a.display_name, a.addr_spec) for value in parsed() for a in getattr(value, "addresses", ())]
    except Exception:
        found = _raw_addresses(values)
    return [mailbox(_clean(name), _clean(address).replace(" ", "")) for name, address in found
            if address and address != "<>"]


#: An address header longer than this is read entry by entry (:func:`entries`): the email package's
#: address parser takes time growing with the square of a header's length (it gathers every token's
#: defects by list concatenation), so that a 64 KB To header of words held the event loop for 2.8 s.
LONG_HEADER = 4096
#: The most entries of one header read (the email package reads one in 20-200 us): a document keeps
#: the addresses among the first thousand.
MAX_ENTRIES = 1000
#: An entry longer than this is no address (a mailbox is at most 256 octets, RFC 5321, and a display
#: name is kept to :data:`MAX_NAME` characters): it is dropped unread.
MAX_ENTRY = 1024


def entries(text: str) -> list[str]:
    """An address list's entries: ``text`` split at its commas outside quoted strings, angle brackets
    and (nested) comments, a backslash escaping the character after it in quotes and comments."""
    found: list[str] = []
    start, quoted, depth, angle, escaped = 0, False, 0, False, False
    for at, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif depth:
            if char == ")":
                depth -= 1
        elif char == '"':
            quoted = True
        elif char in "<>":
            angle = char == "<"
        elif char == "," and not angle:
            found.append(text[start:at])
            start = at + 1
    found.append(text[start:])
    return found


def _long_header_mailboxes(factory: Any, header: str, values: list[str]) -> list[str]:
    """A long header's addresses (:data:`LONG_HEADER`), read entry by entry: plain ones as they are,
    the others by the email package one at a time (``factory``: its policy's ``header_factory``);
    an entry over :data:`MAX_ENTRY` is dropped, and so is what follows the first :data:`MAX_ENTRIES`."""
    kept: list[str] = []
    listed = (entry for value in values for entry in entries("".join(value.splitlines())))
    for entry in itertools.islice(listed, MAX_ENTRIES):
        plain = _plain_entry(entry)
        if plain is not None:
            kept.append(plain)
        elif len(entry) <= MAX_ENTRY:
            # (the lambda is called before the loop goes on)
            kept.extend(_package_mailboxes(lambda: [factory(header, entry)], [entry]))
    return kept


def _raw_addresses(values: list[str]) -> list[tuple[str, str]]:
    """The addresses of raw header values as :func:`email.utils.getaddresses` reads the text; none
    when even it fails (it recurses into nested comments: a thousand deep is too deep)."""
    try:
        return email.utils.getaddresses(["".join(value.splitlines()) for value in values])
    except Exception:
        return []
