"""pg-notify-bridge: push PostgreSQL changes to browsers over WebSockets.

Data flows down this list:

    install.py    puts capture triggers on tables (sql/schema.sql)
    listener.py   LISTEN; wakes the reader on NOTIFY, reconnects with backoff
    reader.py     stamps committed log rows into positions (log.py)
    hub.py        who is subscribed to what; one frame per event (protocol.py),
                  with the event's opaque position (positions.py)
    fanout.py     writes each frame to many sockets; the slow-consumer check
    replay.py     brings a new subscription from `since` to live, no gap
    session.py    one client's state and rules (auth.py's tokens and grants)
    http.py       Host check, exact-path routing, /healthz /readyz /metrics,
                  handshake checks
    server.py     the wiring: builds, starts and stops the parts

config.py builds the one Config; commands.py and __main__.py are the CLI;
metrics.py the Prometheus side; errors.py the exception tree.
"""

__version__ = "0.1.0"
