"""What the domain layer refuses, in words a client can act on.

Services (:mod:`gateway.auth`, :mod:`gateway.mail`) raise these; the HTTP
layer turns each kind into its status (``handlers/base.py``), so the rules
live in one place and the handlers only translate.
"""

from __future__ import annotations


class Refused(Exception):
    """A request the domain refuses: ``code`` for programs, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Invalid(Refused):
    """The input breaks a rule (a weak password, an unknown label, ...)."""


class Forbidden(Refused):
    """The caller may not do this (a wrong current password, a built-in label, ...)."""


class NotFound(Refused):
    """No such thing, or not the caller's."""


class Taken(Refused):
    """The name or address is in use already."""


class TooLarge(Refused):
    """The input is over a size limit (a message larger than the SMTP limit)."""
