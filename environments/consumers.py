"""The environment page's websocket: live cards and events, pushed by the watcher.

Fragments published to the environment's group (`services.live`) are not sent one by one: a
page is sent at most one message per short window (`COALESCE_SECONDS`). A fragment that comes
after a quiet window goes out at once (a person's click shows without waiting), together with
what the same commit publishes a few milliseconds later (`GATHER_SECONDS`); those that come
within the window after a message are held under their key, the last per key wins, and at its
end everything held goes out as one websocket message. A storm of pod events thus costs the page
a few messages a second, each card in each at most once, and the page applies a message in one
go (static/js/services.js). Events arrive as the keys of the rows just written: a page on the
Events tab renders their rows when its message goes, and no other page renders any.

The browser never changes anything through it. It says only which tab the page shows,
`{"tab": "events"}`, when the socket opens and when the tab changes (static/js/services.js), and
is then sent only what that tab shows (see `services.live`); whatever else it sends is dropped.
Access is checked once, at the handshake, with the same helper the pages use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from environments.access import get_environment_for_user
from environments.tabs import TABS
from services.live import ROOT_ID, SHOWN_ON_EVENTS, group_name, render_event_rows

logger = logging.getLogger(__name__)

# Sent when the environment was deleted: the htmx ws extension reconnects only after abnormal
# closes (1006, 1011-1013), so an application code here ends the page's attempts for good.
CLOSE_ENVIRONMENT_GONE = 4410

# `{"tab": "information"}` and the like are far shorter: anything longer is not read.
MAX_TAB_MESSAGE = 64

# The least time between two messages to a page: short enough that a change still looks
# immediate, long enough that a Start All's pod events for one card arrive as one.
COALESCE_SECONDS = 0.15
# How long a message after a quiet window waits for the rest of what the same commit publishes
# (the watcher's writer sends a batch's cards, with their progress banner, and then the new
# events' keys: two trips to the channel layer a few milliseconds apart): one message.
GATHER_SECONDS = 0.03


class EnvironmentConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    # The tab the page last said it shows; until it says, it is sent everything.
    tab: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # key -> (tab it shows on, html), in the order first held.
        self.held: dict[str, tuple[str | None, str]] = {}
        # Events written meanwhile, rendered when the window ends if the page shows their tab.
        self.held_events: set[int] = set()
        self.environment_pk: int | None = None
        self.flush_task: asyncio.Task | None = None
        # When the last message went out (the event loop's clock); none yet: long ago.
        self.last_sent = float("-inf")
        self.closed = False

    async def connect(self) -> None:
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        try:
            environment = await database_sync_to_async(get_environment_for_user)(self.scope["user"], public_id)
        except Http404:
            # Before accept, so the handshake itself is refused (HTTP 403): an outsider learns
            # nothing, not even whether the environment exists.
            await self.close()
            return
        self.environment_pk = environment.pk
        self.group = group_name(environment.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        self.closed = True
        await self.drop_held()
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

    def shows(self, tab: str | None) -> bool:
        return self.tab is None or tab is None or tab == self.tab

    async def page_fragments(self, event: dict[str, Any]) -> None:
        """Fragments to hold for the next message: (key, html) for the pages showing the
        message's tab, or (key, html, tab) for one shown on another (the progress banner that
        travels with the cards it counts, for every tab)."""
        if self.closed:
            return
        held = False
        for key, html, *own_tab in event["fragments"]:
            tab = own_tab[0] if own_tab else event.get("tab")
            if self.shows(tab):
                self.held[key] = (tab, html)
                held = True
        if held:
            self.flush_soon()

    async def page_events(self, event: dict[str, Any]) -> None:
        """Events just written: their rows are rendered when the window ends, only for a page
        that shows the Events tab then."""
        if self.closed or not self.shows(event.get("tab")):
            return
        self.held_events.update(int(pk) for pk in event["events"])
        self.flush_soon()

    def flush_soon(self) -> None:
        if self.flush_task is None:
            self.flush_task = asyncio.create_task(self.flush_later())

    def _window_left(self) -> float:
        """How long until a message may go: nothing after a quiet window, else the rest of it."""
        return max(0.0, self.last_sent + COALESCE_SECONDS - asyncio.get_running_loop().time())

    async def card_update(self, event: dict[str, Any]) -> None:
        """A single fragment in the shape sent before fragments were coalesced."""
        match = ROOT_ID.match(event["html"])
        key = match.group(1) if match else event["html"]
        await self.page_fragments({"fragments": [(key, event["html"])], "tab": event.get("tab")})

    async def flush_later(self) -> None:
        # Even with no window left, what the same commit publishes joins this message.
        await asyncio.sleep(max(self._window_left(), GATHER_SECONDS))
        held, self.held = self.held, {}
        events, self.held_events = self.held_events, set()
        # The page may have changed tabs while these waited.
        fragments = [fragment for tab, fragment in held.values() if self.shows(tab)]
        if events and self.shows(SHOWN_ON_EVENTS):
            rows = await database_sync_to_async(render_event_rows)(self.environment_pk, events)
            fragments += [html for _, html in rows]
        html = "".join(fragments)
        if html and not self.closed:
            self.last_sent = asyncio.get_running_loop().time()
            try:
                await self.send(text_data=html)
            except Exception:  # noqa: BLE001 - see below
                # The page went away after the window began and before its disconnect reached
                # this consumer (daphne raises autobahn's Disconnected, other servers an
                # OSError): nobody is left to send to, and the disconnect follows.
                logger.debug("environment page closed before its update was sent")
                self.closed = True
        self.flush_task = None
        # What arrived while this was sending starts the next window.
        if (self.held or self.held_events) and not self.closed:
            self.flush_task = asyncio.create_task(self.flush_later())

    async def drop_held(self) -> None:
        """Cancel the pending flush and forget what it would have sent: no task outlives the
        connection and nothing is sent after it closed."""
        task, self.flush_task = self.flush_task, None
        self.held = {}
        self.held_events = set()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def environment_removed(self, event: dict[str, Any]) -> None:
        # What was held is about an environment that is gone: the notice is the last word.
        await self.drop_held()
        await self.send(text_data=event["html"])
        self.closed = True
        await self.close(code=CLOSE_ENVIRONMENT_GONE)
