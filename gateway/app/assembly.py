"""Building every service of a gateway process, explicitly, in one function.

:func:`build` wires the parts together: each receives what it needs through
its constructor, so no part looks another up.  Nothing here starts anything;
:class:`gateway.app.server.Gateway` starts them in order and stops them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import tornado.web

from events.dispatcher import EventDispatcher
from events.subscriptions import SubscriptionRegistry
from gateway.app.web import make_app, sockjs_settings
from gateway.auth import Accounts, Passwords, Tokens
from gateway.config import WEBHOOK_CONCURRENCY_EACH, Config
from gateway.mail.delivery import DeliveryWorker
from gateway.mail.recipients import Recipients
from gateway.mail.relay import Relay
from gateway.metrics import Metrics
from gateway.sockjs import Router
from gateway.state import State
from gateway.store import Store, sqlite_path
from gateway.store.follow import Follower
from gateway.webhooks import WebhookQueue, Webhooks
from gateway.webhooks.destinations import Destinations
from gateway.webhooks.sender import Sender
from gateway.store.timing import time_operations
from gateway.ws.connection import Endpoint


@dataclass
class Services:
    """Everything one gateway process runs, wired together."""

    state: State
    registry: SubscriptionRegistry
    dispatcher: EventDispatcher
    delivery: DeliveryWorker
    webhook_queue: WebhookQueue
    endpoint: Endpoint
    router: Router
    app: tornado.web.Application
    metrics: Metrics
    recipients: Recipients


def secret_file(config: Config) -> str:
    """Where the signing secret lives: the option, or beside the SQLite file, or ./gateway.secret."""
    if config.secret_file:
        return config.secret_file
    db = sqlite_path(config.store)
    if db and db != ":memory:":
        return os.path.join(os.path.dirname(os.path.abspath(db)), "gateway.secret")
    return os.path.abspath("gateway.secret")


def build(config: Config, store: Store, secret: bytes) -> Services:
    """Every service over an opened ``store``; call inside the running loop (the SockJS router needs it)."""
    tokens = Tokens(store, secret, config.token_ttl)
    recipients = Recipients(store, config.mail_domain)
    accounts = Accounts(store, Passwords(config.argon2_memory), tokens, config.mail_domain, [recipients.forget])
    metrics = Metrics()
    time_operations(store, lambda operation: metrics.store_seconds.labels(store.backend, operation).observe)
    registry = SubscriptionRegistry(store)
    tokens.watch(registry.followers)  # the tokens and accounts feeds: verified identities kept until they change
    recipients.watch(registry.followers)  # the same feeds: inbound mail's recipients kept until their account changes
    dispatcher = EventDispatcher(store, registry, metrics)
    delivery = DeliveryWorker(store, config.mail_domain, Relay.from_url(config.relay), config.delivery_attempts,
                              config.delivery_backoff, config.delivery_lease, metrics)
    destinations = Destinations(config.webhook_allow_networks)
    sender = Sender(destinations, config.webhook_timeout, max_clients=config.webhook_concurrency)
    webhooks = Webhooks(store, destinations, sender)
    webhook_queue = WebhookQueue(store, webhooks, config.webhook_attempts, config.webhook_backoff,
                                 config.webhook_disable_after, config.delivery_lease, config.webhook_concurrency,
                                 WEBHOOK_CONCURRENCY_EACH, metrics)
    webhook_queue.attach(dispatcher.feed)  # one event feed per process, read by the sockets and the webhooks
    followers = [*registry.followers, dispatcher.feed, delivery.queue_feed, webhook_queue.hooks_feed,
                 webhook_queue.jobs.feed]
    state = State(config, store, tokens, accounts, webhooks, lambda: {f.name: f.live for f in followers})
    endpoint = Endpoint(config, tokens, store, registry, dispatcher, metrics)
    router = Router(endpoint.connection, endpoint.prefix, sockjs_settings(config))
    app = make_app(state, router.urls, metrics,
                   # over the limit, tornado drops the websocket; under it, the session answers too_large
                   websocket_max_message_size=4 * config.ws_max_message + 65536)
    endpoint.app = app
    watch(metrics, endpoint, registry, delivery, webhook_queue, followers)
    return Services(state, registry, dispatcher, delivery, webhook_queue, endpoint, router, app, metrics, recipients)


def watch(metrics: Metrics, endpoint: Endpoint, registry: SubscriptionRegistry, delivery: DeliveryWorker,
          webhook_queue: WebhookQueue, followers: list[Follower]) -> None:
    """The gauges read at scrape time, and the feeds' reconnects."""
    def sessions() -> dict[tuple[str, ...], float]:
        by_transport: dict[tuple[str, ...], float] = {}
        for connection in endpoint.live:
            key = (connection.transport,)
            by_transport[key] = by_transport.get(key, 0) + 1
        return by_transport

    metrics.watch("gateway_sessions", "Open SockJS sessions, by transport", ("transport",), sessions)
    metrics.watch("gateway_subscriptions", "Sessions bound to an account", (),
                  lambda: {(): float(registry.counts()["subscribers"])})
    metrics.watch("gateway_delivery_queue", "Queued emails this process has scheduled or is delivering", (),
                  lambda: {(): float(delivery.pending())})
    metrics.watch("gateway_webhook_queue", "Webhook jobs this process has scheduled or is posting", (),
                  lambda: {(): float(webhook_queue.jobs.pending())})
    metrics.watch("gateway_feed_live", "Whether each change feed is open (1) or being reopened (0)", ("feed",),
                  lambda: {(f.name,): 1.0 if f.live else 0.0 for f in followers})
    for follower in followers:
        follower.on_reconnect = lambda name: metrics.feed_reconnects.labels(name).inc()
