"""Prometheus metrics, one registry per daemon.

A registry per daemon (not the process-global default) lets tests and
benchmarks run several daemons in one process without mixing their numbers.
Labels are bounded: endpoints and reasons are fixed sets, and subscriptions
are counted by table channel, never by row channel, so a million owners do
not make a million series.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The daemon's metrics, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("bridge_connections", "Open WebSocket connections",
                                 ["endpoint"], registry=r)
        self.subscriptions = Gauge("bridge_subscriptions",
                                   "Subscriptions by table channel (row channels folded in)",
                                   ["channel"], registry=r)
        self.events_read = Counter("bridge_events_read", "Events read from the log", registry=r)
        self.frames_sent = Counter("bridge_frames_sent", "Frames written to clients",
                                   ["endpoint"], registry=r)
        self.delivery_lag = Histogram("bridge_delivery_lag_seconds",
                                      "From the tick that stamped an event to its send",
                                      buckets=_LAG_BUCKETS, registry=r)
        self.resyncs = Counter("bridge_resyncs", "Resync frames sent", ["reason"], registry=r)
        self.slow_closes = Counter("bridge_slow_consumer_closes",
                                   "Clients closed with 4008 for not reading", registry=r)
        self.auth_failures = Counter("bridge_auth_failures", "Refused tokens and origins",
                                     ["reason"], registry=r)
        self.bad_messages = Counter("bridge_bad_messages", "Client frames answered with an error",
                                    ["code"], registry=r)
        self.listener_reconnects = Counter("bridge_listener_reconnects",
                                           "Database reconnections of the listener", registry=r)
        self.listener_up = Gauge("bridge_listener_up", "1 while the listener is connected and"
                                 " caught up", registry=r)
        self.log_rows = Gauge("bridge_log_rows", "Rows in the event log (estimate)", registry=r)
        self.cursor_tick = Gauge("bridge_cursor_tick", "Tick of the newest event read", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
