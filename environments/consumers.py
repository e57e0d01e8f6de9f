"""The environment page's websocket: live cards and events, pushed by the watcher.

The browser never changes anything through it. It says only which tab the page shows,
`{"tab": "events"}`, when the socket opens and when the tab changes (static/js/services.js), and
is then sent only what that tab shows (see `services.live`); whatever else it sends is dropped.
Access is checked once, at the handshake, with the same helper the pages use.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from environments.access import get_environment_for_user
from environments.tabs import TABS
from services.live import group_name

# Sent when the environment was deleted: the htmx ws extension reconnects only after abnormal
# closes (1006, 1011-1013), so an application code here ends the page's attempts for good.
CLOSE_ENVIRONMENT_GONE = 4410

# `{"tab": "information"}` and the like are far shorter: anything longer is not read.
MAX_TAB_MESSAGE = 64


class EnvironmentConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    # The tab the page last said it shows; until it says, it is sent everything.
    tab: str | None = None

    async def connect(self) -> None:
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        try:
            environment = await database_sync_to_async(get_environment_for_user)(self.scope["user"], public_id)
        except Http404:
            # Before accept, so the handshake itself is refused (HTTP 403): an outsider learns
            # nothing, not even whether the environment exists.
            await self.close()
            return
        self.group = group_name(environment.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Note the tab the page shows; ignore anything else. The page changes things through
        forms and views, never through this socket."""
        if text_data is None or len(text_data) > MAX_TAB_MESSAGE:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("tab") in TABS:
            self.tab = message["tab"]

    async def card_update(self, event: dict[str, Any]) -> None:
        shown_on = event.get("tab")
        if self.tab is not None and shown_on is not None and shown_on != self.tab:
            return
        await self.send(text_data=event["html"])

    async def environment_removed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])
        await self.close(code=CLOSE_ENVIRONMENT_GONE)
