"""Header values a user typed, written so that every reader decodes exactly that text."""

from __future__ import annotations

import base64
import re

#: A Message-ID as this server writes it into a header: printable ASCII in angle brackets.
MESSAGE_ID = re.compile(r"^<[!-~]+>$")


def encoded_words(value: str) -> str:
    """``value`` as RFC 2047 encoded words of its UTF-8 (base64), folded: a reader decodes it to
    exactly ``value``, whatever it holds."""
    words, chunk = [], ""
    for char in value:
        if chunk and len((chunk + char).encode("utf-8")) > 45:  # 60 base64 characters a word
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word.encode('utf-8')).decode()}?=" for word in words)


def encoded_header(value: str) -> str:
    """A header value every reader decodes to exactly ``value``.

    Plain printable ASCII with nothing a reader could take for an encoded word
    is written as it is.  Anything else (non-ASCII, or text such as
    ``=?utf-8?q?hi=0D=0AFrom:...?=`` that a reader would decode into new header
    lines) is written as RFC 2047 encoded words of its UTF-8, folded, so it
    comes out as the literal text the user gave and is never reinterpreted.
    The API refuses control characters in such values before they get here.
    """
    if value.isascii() and value.isprintable() and "=?" not in value and len(value) <= 76:
        return value
    return encoded_words(value)
