"""Django settings for the Django Channels peer (bench/peer_asgi.py): the least it needs."""

from __future__ import annotations

import os

SECRET_KEY = "bench-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "bench.peer_asgi.application"
USE_TZ = True
# What a Django user would pick: channels_redis's pub/sub layer on a real Redis.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")]},
    }
}
LOGGING_CONFIG = None
