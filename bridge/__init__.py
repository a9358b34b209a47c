"""pg-notify-bridge: push PostgreSQL changes to browsers over WebSockets.

Data flows down this list: install.py puts capture triggers on tables;
listener.py wakes on NOTIFY; reader.py stamps committed log rows into
positions (log.py) and publishes them to hub.py; server.py writes the hub's
frames to WebSocket clients (protocol.py), after auth.py let them in.
"""

__version__ = "0.1.0"
