"""The tables and secondary indexes every backend provides, declared once.

A backend creates what is declared here (SQLite as expression indexes,
RethinkDB as secondary indexes) and may add tables of its own for events.
"""

from __future__ import annotations

#: The tables every backend provides.
TABLES: tuple[str, ...] = (
    "accounts", "usernames", "tokens", "emails", "threads", "labels", "contacts",
    "idempotency",  # the Idempotency-Key of a send -> its email (gateway/mail/outbox.py)
    "messages",  # an email's raw message, by the email's id (gateway/mail/mailbox.py): kept out of the
                 # email document, whose every query would otherwise parse it
    "webhooks", "webhook_jobs", "webhook_attempts",  # gateway/webhooks/
)

#: The tables whose documents belong to an account (an ``owner`` field, indexed).
OWNED_TABLES: tuple[str, ...] = ("tokens", "emails", "threads", "labels", "contacts", "idempotency", "messages",
                                 "webhooks", "webhook_jobs", "webhook_attempts")

#: Secondary indexes: table -> index name -> the fields it is built on, most specific first
#: (a backend serves a query from the first index whose fields the query fills).
INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
    **{table: {"owner": ("owner",)} for table in OWNED_TABLES},
    "emails": {
        "owner_thread": ("owner", "thread"),
        "owner_message_id": ("owner", "message_id"),
        "owner": ("owner",),
        "status": ("status",),
    },
    "webhook_jobs": {
        "webhook_email": ("webhook", "email"),
        "status": ("status",),
        "owner": ("owner",),
    },
    "webhook_attempts": {
        "webhook": ("webhook",),
        "owner": ("owner",),
    },
}
