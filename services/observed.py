"""From a `ClusterState` to the database and the browsers: statuses, events, removed pages.

`write_changes` is the one place where what the cluster says becomes rows: the watcher
(`clusters.watcher`, through the writer `services.apps` registers at startup) calls it with
what changed since its last call, the periodic resync (`services.resync`) with everything it
listed. A service's status is written only when something its card shows changed, and only
over the row the derivation read (`services.lifecycle.observe`'s compare-and-set; for many
services at once `lifecycle.observe_many`, the same in bulk, one UPDATE per distinct new
value); events are stored in one statement per batch, and the changed cards are published
once the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import transaction
from django.utils import timezone

from clusters.state import WARNING_WINDOW_SECONDS, Changes, ClusterState, Obj, WriteResult, environment_id_of_namespace
from environments.models import ClusterEvent, Environment
from services import lifecycle, live, progress, queue
from services.builds import job_outcome
from services.models import Build, Service
from services.status import ObservedStatus, derive_status

logger = logging.getLogger(__name__)

# Rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits.
BATCH = 500

# What the card needs beyond the service row; loaded with the services in one query.
CARD_RELATED = ("environment__project__space", "environment__cluster", "deployed_by")

# The columns a derivation reads (`derive_for`) and its compare-and-set compares
# (`lifecycle.COMPARED`). A storm derives each service many times and changes its card a few:
# only the cards that changed are read whole, with `CARD_RELATED`, to be rendered.
DERIVED_FROM = ("public_id", "environment", *lifecycle.COMPARED)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)


def event_times(event: Obj) -> tuple[datetime, datetime]:
    """First and last time of a core/v1 Event, whichever API (core or events.k8s.io) wrote it."""
    meta = event.get("metadata") or {}
    series = event.get("series") or {}
    created = parse_time(meta.get("creationTimestamp")) or timezone.now()
    first = parse_time(event.get("firstTimestamp")) or parse_time(event.get("eventTime")) or created
    last = (
        parse_time(event.get("lastTimestamp"))
        or parse_time(series.get("lastObservedTime"))
        or parse_time(event.get("eventTime"))
        or first
    )
    return first, max(first, last)


def _owner_name(kind: str, name: str) -> str:
    """The Deployment (= service) name a ReplicaSet or Pod name was generated from."""
    parts = name.split("-")
    if kind == "ReplicaSet" and len(parts) > 1:
        return "-".join(parts[:-1])  # <deployment>-<pod-template-hash>
    if kind == "Pod" and len(parts) > 2:
        return "-".join(parts[:-2])  # <deployment>-<pod-template-hash>-<suffix>
    return name


def match_service(
    state: ClusterState,
    namespace: str,
    kind: str,
    name: str,
    services_by_name: dict[str, tuple[int, str]],
    by_public_id: dict[str, tuple[int, str]] | None = None,
) -> tuple[int, str] | None:
    """The (pk, public id) of the service an event is about, from its involved object.

    `by_public_id`, the same services by public id, spares a scan of them for each pod event."""
    if kind == "Pod":
        public_id = state.pod_service(namespace, name)
        if public_id:
            if by_public_id is None:
                by_public_id = {candidate[1]: candidate for candidate in services_by_name.values()}
            if public_id in by_public_id:
                return by_public_id[public_id]
    exact = services_by_name.get(_owner_name(kind, name)) or services_by_name.get(name)
    if exact:
        return exact
    # Anything else the service owns (a build Job, its pods) is named `<service>-...`; the
    # longest name wins so that `web-api-x` goes to `web-api`, not to `web`.
    candidates = [s for s in services_by_name if name.startswith(f"{s}-")]
    return services_by_name[max(candidates, key=len)] if candidates else None


def _text(value: object, limit: int | None = None) -> str:
    """A string of an event as a column takes it: PostgreSQL's text holds no NUL character,
    which a cluster's event may (a container's message quoted)."""
    text = value if isinstance(value, str) else ""
    return text.replace("\x00", "")[:limit]


def _count(event: Obj) -> int:
    """How many times the event happened, 1 when the cluster says nothing usable."""
    series = event.get("series")
    for value in (event.get("count"), series.get("count") if isinstance(series, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
            return value
    return 1


def _store_events(
    cluster_id: int, state: ClusterState, events: dict[str, Obj], warning_since: datetime
) -> tuple[int, set[str], list[ClusterEvent]]:
    """Upsert the events; returns how many changed, the services with fresh Warnings and the
    rows written (for the Events tabs open on them)."""
    env_ids = {environment_id_of_namespace((e.get("metadata") or {}).get("namespace", "")) for e in events.values()}
    environments = {
        env.public_id: env
        for env in Environment.objects.filter(cluster_id=cluster_id, public_id__in=env_ids - {None}).only("pk", "public_id")
    }
    if not environments:
        return 0, set(), []
    services: dict[int, dict[str, tuple[int, str]]] = {}
    for pk, public_id, name, environment_id in Service.objects.filter(
        environment_id__in=[env.pk for env in environments.values()]
    ).values_list("pk", "public_id", "name", "environment_id"):
        services.setdefault(environment_id, {})[name] = (pk, public_id)

    by_public_id = {
        environment_id: {service[1]: service for service in by_name.values()}
        for environment_id, by_name in services.items()
    }
    rows: dict[tuple[int, str], ClusterEvent] = {}
    warned: set[str] = set()
    for uid, event in events.items():
        meta = event.get("metadata") or {}
        namespace = meta.get("namespace", "")
        environment = environments.get(environment_id_of_namespace(namespace) or "")
        if environment is None:
            continue
        environment_pk = environment.pk
        involved = event.get("involvedObject") or event.get("regarding") or {}
        kind, name = involved.get("kind", ""), involved.get("name", "")
        service = match_service(
            state, namespace, kind, name, services.get(environment_pk, {}), by_public_id.get(environment_pk, {})
        )
        first, last = event_times(event)
        event_type = "Warning" if event.get("type") == "Warning" else "Normal"
        count = _count(event)
        rows[(environment_pk, uid)] = ClusterEvent(
            # The instance, not only its key: the pages are told under its public id.
            environment=environment,
            service_id=service[0] if service else None,
            uid=_text(uid, 64),
            type=event_type,
            reason=_text(event.get("reason"), 128),
            message=_text(event.get("message") or event.get("note")),
            involved_kind=_text(kind, 64),
            involved_name=_text(name, 253),
            count=count,
            first_seen=first,
            last_seen=last,
        )
        if service and event_type == "Warning" and last >= warning_since:
            state.note_warning(service[1], uid, event, mark=False)
            warned.add(service[1])

    # A relist hands over every event again: those stored as they are are not written, so that
    # neither the database nor the open Events tabs churn.
    fresh = ClusterEvent.objects.upsert(list(rows.values()))
    return len(fresh), warned, fresh


def derive_for(service: Service, state: ClusterState) -> ObservedStatus:
    deployment, pods, warnings = state.observed(service.public_id)
    return derive_status(
        current_status=service.status,
        current_reason=service.status_reason,
        desired_state=service.desired_state,
        replicas=service.replicas,
        deployment=deployment,
        pods=pods,
        events=warnings,
        now=timezone.now(),
        generation=service.generation,
    )


def store_statuses(services: Iterable[Service], state: ClusterState, result: WriteResult) -> None:
    """Derive each service's status from the state and write those that changed; a service
    whose row moved under the derivation goes to `result.retry`, to be derived again."""
    now = timezone.now()
    pending: list[tuple[Service, ObservedStatus]] = []
    for service in services:
        observed = derive_for(service, state)
        if observed != (service.status, service.status_reason, service.ready_replicas):
            pending.append((service, observed))
    if len(pending) == 1:
        service, observed = pending[0]
        if lifecycle.observe(service, observed, now):
            result.changed.append(service)
        else:
            result.retry.add(service.public_id)
        return
    for start in range(0, len(pending), BATCH):
        written, moved = lifecycle.observe_many(pending[start : start + BATCH], now)
        result.changed.extend(written)
        result.retry.update(service.public_id for service in moved)


def services_to_derive(cluster_id: int, changes: Changes) -> list[Service]:
    """The services `changes` touch, with only the columns the derivation reads."""
    queryset = Service.objects.filter(environment__cluster_id=cluster_id).only(*DERIVED_FROM)
    if not changes.all_services:
        if not changes.services:
            return []
        queryset = queryset.filter(public_id__in=changes.services)
    return list(queryset)


def cards_of(services: list[Service]) -> list[Service]:
    """The rows of `services` as their cards render them (written in this transaction), in one
    query, in the same order."""
    if not services:
        return []
    rows = Service.objects.select_related(*CARD_RELATED).in_bulk([service.pk for service in services])
    return [rows[service.pk] for service in services if service.pk in rows]


def write_changes(
    cluster_id: int, state: ClusterState, changes: Changes, *, services: list[Service] | None = None
) -> WriteResult:
    """Store what changed and publish it on commit.

    `services` may be given already read (the resync reads them before listing the cluster, so
    that its compare-and-set loses to any newer write by the watcher).
    """
    result = WriteResult()
    warning_since = timezone.now() - timedelta(seconds=WARNING_WINDOW_SECONDS)
    with transaction.atomic():
        fresh_events: list[ClusterEvent] = []
        if changes.events:
            result.events_written, warned, fresh_events = _store_events(
                cluster_id, state, changes.events, warning_since
            )
            changes.services |= warned
        if services is None:
            services = services_to_derive(cluster_id, changes)
        store_statuses(services, state, result)
        result.changed = cards_of(result.changed)
        # The banner goes in the cards' message: a page swaps it with the cards it counts.
        live.publish_services(result.changed, alongside=progress.banners_for(result.changed))
        live.publish_events(fresh_events)
        if changes.namespaces_gone:
            _publish_removed(cluster_id, changes.namespaces_gone)
        if changes.builds or changes.all_services:
            _hand_over_builds(cluster_id, state, changes)
    return result


def _hand_over_builds(cluster_id: int, state: ClusterState, changes: Changes) -> None:
    """Enqueue `finish_build` for each build still active whose Job finished or vanished.

    The task reads the build log and moves the service on; the watcher only notices. A build
    already finished in the database is skipped, so a relist does not enqueue it again.
    """
    jobs = state.build_jobs(None if changes.all_services else changes.builds)
    done = {build for build, job in jobs.items() if job_outcome(job) is not None}
    vanished = changes.builds - set(jobs)
    if not done and not vanished:
        return
    active = Build.objects.filter(service__environment__cluster_id=cluster_id, public_id__in=done | vanished)
    # A build whose Job is not applied yet (queued) has nothing to vanish.
    for pk, public_id, status in active.filter(status__in=Build.ACTIVE).values_list("pk", "public_id", "status"):
        if public_id in done or status == Build.Status.BUILDING:
            queue.on_commit(queue.FINISH_BUILD, pk)


def _publish_removed(cluster_id: int, namespaces: set[str]) -> None:
    """Pages open on an environment whose namespace is gone, because the environment was
    deleted, learn it. A namespace deleted by hand under a live environment is not that."""
    public_ids = {environment_id_of_namespace(ns) for ns in namespaces} - {None}
    alive = set(
        Environment.objects.filter(public_id__in=public_ids, deleting_at__isnull=True).values_list("public_id", flat=True)
    )
    for public_id in sorted(public_ids - alive):
        live.publish_environment_removed(public_id)

