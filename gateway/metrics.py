"""The gateway's metrics, in Prometheus's format (prometheus-client), one registry per process.

:class:`Metrics` holds the counters and histograms the parts update as things
happen; gauges that describe the present (sessions, subscriptions, the delivery
queue, whether each feed is live) are read when scraped, from the callables the
assembly registers with :meth:`Metrics.watch`.  Nothing here is a module-level
global: every gateway (and every test) has its own registry.  It imports
nothing of the project's, so every layer may report to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: The content type of :meth:`Metrics.render`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: A gauge read at scrape time: label values -> value.
Reading = Callable[[], dict[tuple[str, ...], float]]


class _Watched(Collector):
    """Gauges computed when scraped."""

    def __init__(self) -> None:
        self.gauges: list[tuple[str, str, tuple[str, ...], Reading]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, labels, read in self.gauges:
            family = GaugeMetricFamily(name, documentation, labels=list(labels))
            for values, value in read().items():
                family.add_metric(list(values), value)
            yield family


class Metrics:
    """Every metric of one gateway process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._watched = _Watched()
        self.registry.register(self._watched)
        self.requests = Counter("gateway_requests", "API requests answered, by route, method, status and path "
                                "(http or tunnel)", ["route", "method", "status", "via"], registry=self.registry)
        self.request_seconds = Histogram("gateway_request_seconds", "API request latency", ["route", "via"],
                                         registry=self.registry)
        self.events = Counter("gateway_events_delivered", "Events sent to subscribed sessions, by kind", ["kind"],
                              registry=self.registry)
        self.event_lag = Histogram("gateway_event_lag_seconds", "From the store's write to the socket send",
                                   buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                   registry=self.registry)
        self.queue_overflows = Counter("gateway_session_queue_overflows",
                                       "Sessions closed because their client fell --ws-max-queue behind",
                                       registry=self.registry)
        self.delivery_attempts = Counter("gateway_delivery_attempts", "Delivery attempts of queued emails",
                                         registry=self.registry)
        self.delivery_failures = Counter("gateway_delivery_failures", "Attempts that failed, by outcome "
                                         "(retry or failed)", ["outcome"], registry=self.registry)
        self.webhook_attempts = Counter("gateway_webhook_attempts", "Webhook POSTs, by result (succeeded or failed)",
                                        ["result"], registry=self.registry)
        self.store_seconds = Histogram("gateway_store_seconds", "Store operations, by backend (sqlite or "
                                       "rethinkdb) and operation (get, insert, find, event_history, ...)",
                                       ["backend", "operation"],
                                       buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                                .5, 1, 2.5, 5),
                                       registry=self.registry)
        self.feed_reconnects = Counter("gateway_feed_reconnects", "Change feeds reopened after the store went "
                                       "away, by feed", ["feed"], registry=self.registry)

    def watch(self, name: str, documentation: str, labels: tuple[str, ...], read: Reading) -> None:
        """Report a gauge read when scraped (``read`` returns label values -> value)."""
        self._watched.gauges.append((name, documentation, labels, read))

    def render(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)
