"""example.settings plus the daemons' metrics URLs, for the admin "Bridge" page tests."""

from __future__ import annotations

import os

from example.settings import *  # noqa: F403
from example.settings import BRIDGE as _EXAMPLE_BRIDGE

BRIDGE = {**_EXAMPLE_BRIDGE,
          "METRICS_URLS": [u for u in os.environ.get("BRIDGE_TEST_METRICS_URLS", "").split(",")
                           if u]}
