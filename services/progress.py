"""The progress banner of a Start All or Stop All in flight: "Starting 120 of 300 services".

The bulk action writes what it moved on the environment (`Environment.bulk_action`,
`bulk_service_ids`, `bulk_started_at`); a service of the batch is done once its status leaves
the transient ones (building, deploying, stopping) — running, stopped or failed — or it is gone.
Whoever writes statuses the cluster reports (`services.observed`, a task's failure) publishes
the banner of the environments it touched; the last one done says so briefly and clears the
state, so that a reload shows no banner.

The banner's root is `<div id="environment-progress">`, swapped out of band by id on every tab.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils import timezone

from environments.models import Environment
from services import live
from services.models import Service

ELEMENT_ID = "environment-progress"

# A service in one of these is still on its way to what the bulk action asked.
PENDING = (Service.Status.BUILDING, Service.Status.DEPLOYING, Service.Status.STOPPING)

_WORDS = {
    Environment.BulkAction.START: ("Starting", "Started"),
    Environment.BulkAction.STOP: ("Stopping", "Stopped"),
}


@dataclass(frozen=True)
class Progress:
    action: str
    total: int
    done: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def sentence(self) -> str:
        ongoing, past = _WORDS[Environment.BulkAction(self.action)]
        noun = "service" if self.total == 1 else "services"
        if self.finished:
            return f"{past} {self.total} {noun}."
        return f"{ongoing} {self.done} of {self.total} {noun}…"


def begin(environment: Environment, action: str, services: Sequence[Service]) -> None:
    """Record a bulk action on the locked environment (replacing one still in flight)."""
    environment.bulk_action = action
    environment.bulk_service_ids = [service.pk for service in services]
    environment.bulk_started_at = timezone.now()
    environment.save(update_fields=["bulk_action", "bulk_service_ids", "bulk_started_at"])


def progress_of(environment: Environment) -> Progress | None:
    """How far the environment's bulk action is, in one query; None when none is in flight."""
    if not environment.bulk_action:
        return None
    ids = environment.bulk_service_ids
    # The environment's services still on their way, matched with the batch here: hundreds of
    # ids as parameters of every count cost more than the rows, once per write of a storm.
    batch = set(ids)
    pending = sum(
        pk in batch
        for pk in Service.objects.filter(environment=environment, status__in=PENDING).values_list("pk", flat=True)
    )
    return Progress(environment.bulk_action, len(ids), len(ids) - pending)


def render(progress: Progress | None, *, oob: bool = False) -> str:
    """The banner (`oob`: marked for an out-of-band swap, in an htmx answer)."""
    return render_to_string("services/_progress.html", {"progress": progress, "oob": oob}).strip()


def shown(environment: Environment) -> Progress | None:
    """The progress the environment page shows on load: none once the action is done."""
    progress = progress_of(environment)
    return progress if progress is not None and not progress.finished else None


def render_for(environment: Environment, *, oob: bool = False) -> str:
    return render(shown(environment), oob=oob)


def banners_for(services: Iterable[Service]) -> dict[str, str]:
    """The banner of each environment of `services` with a bulk action in flight, by its public
    id, for `live.publish_services` to send with their cards; one that is done says so and
    forgets the action (compare-and-set, so that a newer bulk action started meanwhile stays)."""
    environment_ids = {service.environment_id for service in services}
    if not environment_ids:
        return {}
    banners = {}
    for environment in Environment.objects.filter(pk__in=environment_ids).exclude(bulk_action=""):
        progress = progress_of(environment)
        assert progress is not None
        if progress.finished:
            Environment.objects.filter(pk=environment.pk, bulk_started_at=environment.bulk_started_at).update(
                bulk_action="", bulk_service_ids=[], bulk_started_at=None
            )
        banners[environment.public_id] = render(progress)
    return banners


def publish_for(services: Iterable[Service]) -> None:
    """Send, on commit, `banners_for(services)` on their own, to every tab."""
    for public_id, html in banners_for(services).items():
        live.publish_fragment(public_id, html, tab=None)
