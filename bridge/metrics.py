"""Prometheus metrics, one registry per daemon, and the reading side for `status` and the admin.

A registry per daemon (not the process-global default) lets tests and
benchmarks run several daemons in one process without mixing their numbers.
Labels are bounded: endpoints, reasons and codes are fixed sets, and
subscriptions are counted by table channel, never by row channel
(`tasks:owner_id=7` counts under `tasks`; a channel that names no watched
table counts under `_other`), so a million owners do not make a million series.

Most numbers are counted where they happen. Two are read when scraped: the
subscriptions (from the hub) and the event log's size and oldest position
(from the database, at most every few seconds, by the server).

The second half reads a daemon's /metrics text back into a Summary, so
`python -m bridge status` and the Django admin page show the same numbers.
"""

from __future__ import annotations

import collections
import math
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["CONTENT_TYPE_LATEST", "LogStats", "Metrics", "Summary", "fold_channel", "scrape",
           "subscription_counts",
           "summarize"]

LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
               10.0)
OTHER_CHANNEL = "_other"


@dataclass(frozen=True)
class LogStats:
    """The event log as last measured: what an operator needs to size and prune it."""

    bytes: int
    rows_estimate: int
    unstamped: int
    oldest_tick: int | None
    oldest_id: int | None
    oldest_age: float | None
    pruned_through: int


def fold_channel(channel: str, watched: Mapping[str, object]) -> str:
    """The label a subscription counts under: its table channel, or `_other`."""
    base = channel.partition(":")[0]
    return base if base in watched else OTHER_CHANNEL


def subscription_counts(hub: Hub[Any]) -> dict[str, int]:
    """Subscribers per table channel (row channels folded in), for bridge_subscriptions."""
    counts: collections.Counter[str] = collections.Counter()
    for channel, n in hub.channel_counts().items():
        counts[fold_channel(channel, hub.watched)] += n
    return dict(counts)


class Metrics:
    """The daemon's metrics, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("bridge_info", "Always 1: the daemon's version and instance name",
                          ["version", "instance"], registry=r)
        self.connections = Gauge("bridge_connections", "Open WebSocket connections",
                                 ["endpoint"], registry=r)
        for endpoint in ("v1", "legacy"):
            self.connections.labels(endpoint=endpoint)
        self.events_read = Counter("bridge_events_read", "Events read from the log", registry=r)
        self.frames_sent = Counter("bridge_frames_sent", "Frames written to clients",
                                   ["endpoint"], registry=r)
        self.delivery_lag = Histogram(
            "bridge_delivery_lag_seconds",
            "From the NOTIFY that woke the reader (the writer's commit) to the frames written,"
            " once per wake that read events",
            buckets=LAG_BUCKETS, registry=r)
        self.resyncs = Counter("bridge_resyncs", "Resync frames sent", ["reason"], registry=r)
        self.slow_closes = Counter("bridge_slow_consumer_closes",
                                   "Clients closed with 4008 for not reading", registry=r)
        self.auth_failures = Counter("bridge_auth_failures",
                                     "Refused handshakes, tokens and channels", ["reason"],
                                     registry=r)
        self.bad_messages = Counter("bridge_bad_messages", "Client frames answered with an error",
                                    ["code"], registry=r)
        self.listener_reconnects = Counter("bridge_listener_reconnects",
                                           "Database reconnections of the listener", registry=r)
        self.notifies = Counter(
            "bridge_notifies_received", "Notifications received on LISTEN (writers' wake-ups,"
            " other daemons' ticks), not counting the daemon's own ticks", registry=r)
        self.guard_switches = Counter(
            "bridge_guard_switches", "Guard mode changes, by the mode entered: sleeping (holds"
            " the key, writers NOTIFY), draining (writers skip NOTIFY), waiting (for the key)",
            ["mode"], registry=r)
        self.listener_up = Gauge("bridge_listener_up", "1 while the listener is connected and"
                                 " caught up", registry=r)
        self.cursor_tick = Gauge("bridge_cursor_tick", "Tick of the newest event read", registry=r)
        self.log_bytes = Gauge("bridge_log_bytes", "Size of bridge.log with its indexes",
                               registry=r)
        self.log_rows = Gauge("bridge_log_rows", "Rows in bridge.log (planner estimate)",
                              registry=r)
        self.log_unstamped = Gauge("bridge_log_unstamped_rows",
                                   "Committed or open log rows not yet stamped", registry=r)
        self.log_oldest_tick = Gauge("bridge_log_oldest_tick",
                                     "Tick of the oldest retained event (0: the log is empty)",
                                     registry=r)
        self.log_oldest_id = Gauge("bridge_log_oldest_id", "Id of the oldest retained event",
                                   registry=r)
        self.log_oldest_age = Gauge("bridge_log_oldest_age_seconds",
                                    "Age of the oldest retained event: how far back a client"
                                    " can resume", registry=r)
        self.log_pruned_through = Gauge("bridge_log_pruned_through_tick",
                                        "Positions at or before this tick resume with a resync",
                                        registry=r)
        self._subscriptions: Callable[[], Mapping[str, int]] = dict
        r.register(_Subscriptions(self))

    def watch_subscriptions(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Read subscriptions per table channel from `counts` at each scrape."""
        self._subscriptions = counts

    def set_log_stats(self, stats: LogStats) -> None:
        self.log_bytes.set(stats.bytes)
        self.log_rows.set(stats.rows_estimate)
        self.log_unstamped.set(stats.unstamped)
        self.log_oldest_tick.set(stats.oldest_tick or 0)
        self.log_oldest_id.set(stats.oldest_id or 0)
        self.log_oldest_age.set(stats.oldest_age or 0.0)
        self.log_pruned_through.set(stats.pruned_through)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Subscriptions:
    """A collector that counts subscriptions when scraped, not on every subscribe."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("bridge_subscriptions", "", labels=["channel"])]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("bridge_subscriptions",
                                   "Subscriptions by table channel (row channels folded in)",
                                   labels=["channel"])
        for channel, count in sorted(self.metrics._subscriptions().items()):
            family.add_metric([channel], count)
        yield family


# -- reading /metrics back ------------------------------------------------------


@dataclass
class Summary:
    """One daemon's numbers, read from its /metrics text."""

    instance: str = ""
    version: str = ""
    clients: dict[str, float] = field(default_factory=dict)
    channels: dict[str, float] = field(default_factory=dict)
    events_read: float = 0.0
    frames_sent: float = 0.0
    lag_count: float = 0.0
    lag_sum: float = 0.0
    lag_buckets: list[tuple[float, float]] = field(default_factory=list)
    resyncs: float = 0.0
    slow_closes: float = 0.0
    auth_failures: dict[str, float] = field(default_factory=dict)
    listener_up: bool = False
    listener_reconnects: float = 0.0
    cursor_tick: float = 0.0
    log_bytes: float = 0.0
    log_oldest_tick: float = 0.0
    log_oldest_age: float = 0.0

    @property
    def total_clients(self) -> int:
        return int(sum(self.clients.values()))

    @property
    def total_subscriptions(self) -> int:
        return int(sum(self.channels.values()))

    def lag_quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile q (None before any delivery)."""
        if self.lag_count <= 0:
            return None
        rank = q * self.lag_count
        for bound, cumulative in self.lag_buckets:
            if cumulative >= rank:
                return bound
        return math.inf

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (the admin page's)."""
        p50, p99 = self.lag_quantile(0.5), self.lag_quantile(0.99)
        return {
            "instance": self.instance, "version": self.version,
            "clients": self.clients, "total_clients": self.total_clients,
            "channels": self.channels, "total_subscriptions": self.total_subscriptions,
            "events_read": self.events_read, "frames_sent": self.frames_sent,
            "lag_count": self.lag_count, "lag_sum": self.lag_sum,
            "lag_p50": None if p50 is None or math.isinf(p50) else p50,
            "lag_p99": None if p99 is None or math.isinf(p99) else p99,
            "resyncs": self.resyncs, "slow_closes": self.slow_closes,
            "auth_failures": self.auth_failures, "listener_up": self.listener_up,
            "listener_reconnects": self.listener_reconnects, "log_bytes": self.log_bytes,
            "log_oldest_age": self.log_oldest_age,
        }


def summarize(text: str) -> Summary:
    """Parse Prometheus text from a daemon into a Summary (unknown series are ignored)."""
    summary = Summary()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _absorb(summary, sample.name, sample.labels, sample.value)
    summary.lag_buckets.sort()
    return summary


def _absorb(s: Summary, name: str, labels: Mapping[str, str], value: float) -> None:
    if name == "bridge_info":
        s.instance, s.version = labels.get("instance", ""), labels.get("version", "")
    elif name == "bridge_connections":
        s.clients[labels.get("endpoint", "")] = value
    elif name == "bridge_subscriptions":
        s.channels[labels.get("channel", "")] = value
    elif name == "bridge_events_read_total":
        s.events_read = value
    elif name == "bridge_frames_sent_total":
        s.frames_sent += value
    elif name == "bridge_delivery_lag_seconds_count":
        s.lag_count = value
    elif name == "bridge_delivery_lag_seconds_sum":
        s.lag_sum = value
    elif name == "bridge_delivery_lag_seconds_bucket":
        s.lag_buckets.append((float(labels["le"]), value))
    elif name == "bridge_resyncs_total":
        s.resyncs += value
    elif name == "bridge_slow_consumer_closes_total":
        s.slow_closes = value
    elif name == "bridge_auth_failures_total":
        s.auth_failures[labels.get("reason", "")] = value
    elif name == "bridge_listener_up":
        s.listener_up = value == 1
    elif name == "bridge_listener_reconnects_total":
        s.listener_reconnects = value
    elif name == "bridge_cursor_tick":
        s.cursor_tick = value
    elif name == "bridge_log_bytes":
        s.log_bytes = value
    elif name == "bridge_log_oldest_tick":
        s.log_oldest_tick = value
    elif name == "bridge_log_oldest_age_seconds":
        s.log_oldest_age = value


def scrape(url: str, timeout: float = 5.0) -> Summary:
    """Fetch and summarize a daemon's /metrics; raises OSError or ValueError."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return summarize(response.read().decode())
