"""The mail domain: documents and their builders, mailbox rules, composing, SMTP in, delivery, relay, MIME."""
