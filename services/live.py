"""Live updates of the environment page: rendered fragments sent to the environment's group.

Everything here sends on commit, so a browser never sees a card the database then rolls back,
and to one explicit audience: the group `environment-<public id>`, which
`environments.consumers.EnvironmentConsumer` joins only after checking membership.

The page holds one websocket through the htmx ws extension, which swaps every top-level element
of a message that has an id out of band (outerHTML) — a card whose root is
`<article id="service-<public id>">` replaces the card with that id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.html import format_html

from environments.models import ClusterEvent, Environment
from services import guards
from services.models import Service
from services.metrics import attach_card_metrics

logger = logging.getLogger(__name__)

CARD_UPDATE = "card.update"
ENVIRONMENT_REMOVED = "environment.removed"

# The tab whose page shows a message's element, under "tab" in the message: the consumer does
# not send it to a page that said it shows another tab. A message without one goes to all.
SHOWN_ON_INFORMATION = "information"
SHOWN_ON_EVENTS = "events"


def group_name(environment_public_id: str) -> str:
    return f"environment-{environment_public_id}"


def render_card(service: Service) -> str:
    """The card as the Information tab renders it: its root element carries the service's id."""
    return render_to_string("services/_card.html", {"service": service}).strip()


def publish_service(service: Service) -> None:
    """Send the service's card to its environment's page once the current transaction commits."""
    publish_services([service])


def publish_services(services: Iterable[Service]) -> None:
    """Send several cards on commit, in one trip to the channel layer.

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
    messages = [
        (
            group_name(service.environment.public_id),
            {"type": CARD_UPDATE, "html": render_card(service), "tab": SHOWN_ON_INFORMATION},
        )
        for service in services
    ]
    if messages:
        transaction.on_commit(lambda: send_now(messages))


def publish_service_removed(environment_public_id: str, service_public_id: str) -> None:
    """Take a deleted service's card off the pages open on its environment, on commit.

    The element asks for an out-of-band `delete` swap of the card with its id.
    """
    html = format_html('<div id="service-{}" hx-swap-oob="delete"></div>', service_public_id)
    message = {"type": CARD_UPDATE, "html": str(html), "tab": SHOWN_ON_INFORMATION}
    transaction.on_commit(lambda: send_now([(group_name(environment_public_id), message)]))


def publish_fragment(environment_public_id: str, html: str, tab: str | None = None) -> None:
    """Send one element (its root has an id) to the pages open on the environment, on commit:
    to those showing `tab`, or to all of them when `tab` is None."""
    message = {"type": CARD_UPDATE, "html": html}
    if tab is not None:
        message["tab"] = tab
    transaction.on_commit(lambda: send_now([(group_name(environment_public_id), message)]))


def render_event_list(environment: Environment) -> str:
    events = ClusterEvent.objects.recent(environment)
    return render_to_string("environments/_event_list.html", {"environment": environment, "events": events}).strip()


def publish_event_list(environment: Environment) -> None:
    """Send the Events tab's list (root `id="event-list"`) on commit, to the pages on that tab."""

    def send() -> None:
        # Rendered after the commit so that it lists the events just written.
        html = render_event_list(environment)
        send_now([(group_name(environment.public_id), {"type": CARD_UPDATE, "html": html, "tab": SHOWN_ON_EVENTS})])

    transaction.on_commit(send)


def publish_environment_removed(environment_public_id: str) -> None:
    """Tell pages still open on an environment whose namespace is gone, then close their socket."""
    notice = format_html(
        '<div id="environment-notice" class="notice notice-danger" role="alert">{}</div>',
        "This environment has been deleted. Its services no longer run.",
    )
    message = {"type": ENVIRONMENT_REMOVED, "html": str(notice)}
    transaction.on_commit(lambda: send_now([(group_name(environment_public_id), message)]))


def send_now(messages: list[tuple[str, dict]]) -> None:
    """Group-send the messages now, in one event loop (one connection to Redis, not one each).

    A channel layer that is down costs the browser a live update, never the caller its work:
    the database already holds the truth and the page shows it on the next load.
    """
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    try:
        async_to_sync(send_all)()
    except Exception:  # noqa: BLE001 - see the docstring: a lost update must not break the writer
        logger.exception("Could not publish %d live update(s)", len(messages))
