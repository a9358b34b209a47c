"""The Django Channels peer: every WebSocket joins group "tasks" and gets what is sent to it.

Run by daphne (`daphne bench.peer_asgi:application`). The consumer is the
one the Channels tutorial teaches: join the group on connect, forward each
group message to the socket. After joining it sends a `subscribed` frame, so
the load generator knows when the subscription is live (as with the bridge).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peer_settings")

import django

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "tasks"
SUBSCRIBED = '{"type":"subscribed","channel":"example_task"}'


class TaskConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send(text_data=SUBSCRIBED)

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def task_event(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["frame"])


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/tasks/", TaskConsumer.as_asgi())])})
