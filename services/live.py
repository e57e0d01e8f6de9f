"""Live updates of the environment page: rendered fragments sent to the environment's group.

Everything here sends on commit, so a browser never sees a card the database then rolls back,
and to one explicit audience: the group `environment-<public id>`, which
`environments.consumers.EnvironmentConsumer` joins only after checking membership.

A message to the group carries fragments, each under a key that names what it replaces (a card's
root id `service-<public id>`), or the events just written, whose rows (`event-<pk>`) only the
pages on the Events tab render. The consumer holds them for a short window, keeps the last
fragment per key, and sends what it holds as ONE websocket message, so a
storm of pod events reaches the page as a few messages with each card once, applied in one go by
static/js/services.js: a card or any other top-level element with an id replaces the element
with that id, an event row (in a `<template data-event-row>`) goes into the Events tab's list.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.html import format_html

from environments.models import RECENT_EVENTS, ClusterEvent, Environment
from services import guards
from services.models import Service
from services.metrics import attach_card_metrics

logger = logging.getLogger(__name__)

PAGE_FRAGMENTS = "page.fragments"
# Events just written, by primary key: the pages on the Events tab render their rows.
PAGE_EVENTS = "page.events"
# The shape of a single fragment before fragments were coalesced, still understood by the consumer.
CARD_UPDATE = "card.update"
ENVIRONMENT_REMOVED = "environment.removed"

# The tab whose page shows a message's element, under "tab" in the message: the consumer does
# not send it to a page that said it shows another tab. A message without one goes to all.
SHOWN_ON_INFORMATION = "information"
SHOWN_ON_EVENTS = "events"

ROOT_ID = re.compile(r'\s*<[a-zA-Z][^>]*?\sid="([^"]+)"')


def group_name(environment_public_id: str) -> str:
    return f"environment-{environment_public_id}"


def render_card(service: Service) -> str:
    """The card as the Information tab renders it: its root element carries the service's id."""
    return render_to_string("services/_card.html", {"service": service}).strip()


def publish_service(service: Service) -> None:
    """Send the service's card to its environment's page once the current transaction commits."""
    publish_services([service])


def publish_services(services: Iterable[Service], *, alongside: dict[str, str] | None = None) -> None:
    """Send several cards on commit, in one trip to the channel layer.

    `alongside`: an element for every tab (html whose root has an id) by environment public id,
    sent in the same message as that environment's cards: the progress banner, which a page
    then swaps in the same task as the cards it counts.

    The services must have `environment` loaded (select_related) when many are sent, or each
    one costs a query here.
    """
    services = list(services)
    # A stopped card says which secrets it lacks to start, as the page renders it.
    guards.note_missing_secrets(services)
    if len(services) > 1:
        # The cards' sparklines and sentences for the whole batch in three queries, not three
        # per card (a relist publishes every card of a cluster).
        attach_card_metrics(services)
    by_environment: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for service in services:
        by_environment[service.environment.public_id].append((f"service-{service.public_id}", render_card(service)))
    for public_id, html in (alongside or {}).items():
        by_environment[public_id].append((_root_id(html), html.strip(), None))
    messages = [
        (group_name(public_id), fragments_message(fragments, SHOWN_ON_INFORMATION))
        for public_id, fragments in by_environment.items()
    ]
    if messages:
        transaction.on_commit(lambda: send_now(messages))


def publish_service_removed(environment_public_id: str, service_public_id: str) -> None:
    """Take a deleted service's card off the pages open on its environment, on commit.

    The element asks for an out-of-band `delete` swap of the card with its id.
    """
    html = format_html('<div id="service-{}" hx-swap-oob="delete"></div>', service_public_id)
    message = fragments_message([(f"service-{service_public_id}", str(html))], SHOWN_ON_INFORMATION)
    transaction.on_commit(lambda: send_now([(group_name(environment_public_id), message)]))


def publish_fragment(environment_public_id: str, html: str, tab: str | None = None) -> None:
    """Send one element to the pages open on an environment, on commit, to those showing `tab`
    (None: every tab). Its root element has an id; it replaces the page's element with that id
    (a page without one drops it), and a newer one sent within the window replaces it unsent."""
    message = fragments_message([(_root_id(html), html.strip())], tab)
    transaction.on_commit(lambda: send_now([(group_name(environment_public_id), message)]))


def _root_id(html: str) -> str:
    match = ROOT_ID.match(html)
    if match is None:
        raise ValueError("a live fragment's root element needs an id")
    return match.group(1)


def render_event_list(environment: Environment) -> str:
    events = ClusterEvent.objects.recent(environment)
    context = {"environment": environment, "events": events, "events_shown": RECENT_EVENTS}
    return render_to_string("environments/_event_list.html", context).strip()


def render_event_row(event: ClusterEvent) -> str:
    """One row of the Events tab, in a template element: a bare <tr> next to a card would not
    survive HTML parsing, a template's content keeps it."""
    row = render_to_string("environments/_event_row.html", {"event": event}).strip()
    return f"<template data-event-row>{row}</template>"


def publish_events(events: Iterable[ClusterEvent]) -> None:
    """Tell the pages of their environments, on commit, which events were just written (new, or
    a repeat that bumped its count; saved, so with their keys). Only a page on the Events tab
    renders them (`render_event_rows`, in its consumer): a storm of events costs the writer no rendering,
    and costs nothing at all while nobody looks at the tab. Each row goes to the top of the
    list or replaces its own, and the page keeps as many rows as the tab lists."""
    by_environment: dict[str, list[int]] = defaultdict(list)
    # Events written with their environment loaded (the watcher's) are grouped as they are; the
    # others by one query after the commit.
    by_pk: list[int] = []
    for event in events:
        if ClusterEvent.environment.is_cached(event):
            by_environment[event.environment.public_id].append(event.pk)
        else:
            by_pk.append(event.pk)
    if not by_environment and not by_pk:
        return

    def send() -> None:
        if by_pk:
            rows = ClusterEvent.objects.filter(pk__in=by_pk).values_list("environment__public_id", "pk")
            for public_id, pk in rows:
                by_environment[public_id].append(pk)
        send_now(
            [
                (group_name(public_id), {"type": PAGE_EVENTS, "events": pks, "tab": SHOWN_ON_EVENTS})
                for public_id, pks in by_environment.items()
            ]
        )

    transaction.on_commit(send)


def render_event_rows(environment_pk: int, pks: Iterable[int]) -> list[tuple[str, str]]:
    """(key, html) of the Events tab's rows for these events of the environment, as they are
    now; events of other environments are not read."""
    rows = (
        ClusterEvent.objects.filter(environment_id=environment_pk, pk__in=list(pks))
        .select_related("service", "environment")
        .order_by("-last_seen", "-pk")
    )
    return [(f"event-{row.pk}", render_event_row(row)) for row in rows]


def publish_event_list(environment: Environment) -> None:
    """Send the Events tab's whole list (root `id="event-list"`) on commit, to the pages on that
    tab. For a page that may have missed rows; as events arrive, `publish_events` sends only them."""

    def send() -> None:
        # Rendered after the commit so that it lists the events just written.
        html = render_event_list(environment)
        send_now([(group_name(environment.public_id), fragments_message([("event-list", html)], SHOWN_ON_EVENTS))])

    transaction.on_commit(send)


def publish_environment_removed(environment_public_id: str) -> None:
    """Tell pages still open on an environment whose namespace is gone, then close their socket."""
    notice = format_html(
        '<div id="environment-notice" class="notice notice-danger" role="alert">{}</div>',
        "This environment has been deleted. Its services no longer run.",
    )
    message = {"type": ENVIRONMENT_REMOVED, "html": str(notice)}
    transaction.on_commit(lambda: send_now([(group_name(environment_public_id), message)]))


def fragments_message(fragments: Sequence[tuple[str, ...]], tab: str | None) -> dict:
    """The group message for `fragments` in the order the page applies them: (key, html) pairs
    for the pages showing `tab` (None: every tab), or (key, html, tab) for one shown elsewhere."""
    return {"type": PAGE_FRAGMENTS, "fragments": [list(fragment) for fragment in fragments], "tab": tab}


# How long a writer waits for its live updates to be handed to the channel layer.
SEND_TIMEOUT_SECONDS = 5.0


class _Publisher:
    """One event loop for the process's group sends from sync code, on a thread of its own,
    with a Redis channel layer of its own.

    channels_redis keeps its Redis connections per event loop, and `async_to_sync` runs each
    call on a loop of its own: each send would open, greet and close a connection. On this
    loop they stay open between sends (a watcher sends several times a second in a storm).
    The layer is its own (made from the same settings) because a layer's `flush()` and
    `close_pools()` close the connections of every loop it was used on, from the caller's. A
    forked child (Celery's pool) starts its own loop on first use; a layer that is not Redis's
    is used as it is, through `async_to_sync`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        # The process's layer the own one was made after (settings may change it), and the own one.
        self._made_after: RedisChannelLayer | None = None
        self._layer: RedisChannelLayer | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not (self._thread and self._thread.is_alive()):
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="live-publisher", daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
                self._made_after = self._layer = None
            return self._loop

    async def _own_layer(self, layer: RedisChannelLayer) -> RedisChannelLayer:
        """Runs on the loop only, so needs no lock."""
        if self._made_after is not layer:
            # Replaced before the await: a send that runs meanwhile uses the new one too.
            replaced = self._layer
            self._made_after, self._layer = layer, channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            if replaced is not None:
                await replaced.close_pools()
        return self._layer

    def send(self, layer, messages: list[tuple[str, dict]]) -> None:
        if not isinstance(layer, RedisChannelLayer):
            async_to_sync(_send_all)(layer, messages)
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("send_now blocks: call it from sync code, not from an event loop")

        async def send() -> None:
            await _send_all(await self._own_layer(layer), messages)

        future = asyncio.run_coroutine_threadsafe(send(), self._running_loop())
        try:
            future.result(SEND_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


async def _send_all(layer, messages: list[tuple[str, dict]]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


_publisher = _Publisher()


def send_now(messages: list[tuple[str, dict]]) -> None:
    """Group-send the messages now, together, on the process's publishing loop (its Redis
    connections stay open from one call to the next).

    A channel layer that is down costs the browser a live update, never the caller its work:
    the database already holds the truth and the page shows it on the next load.
    """
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    try:
        _publisher.send(layer, messages)
    except Exception:  # noqa: BLE001 - see the docstring: a lost update must not break the writer
        logger.exception("Could not publish %d live update(s)", len(messages))
