"""The audit log of a space: who did what, and when.

Actions call `record` inside their own transaction, so an entry exists exactly when what it
describes was committed. Entries carry names and public ids as text: the entry about deleting
a service is still readable once the service is gone.

Secrets: callers pass variable *keys* only. `record` also refuses details whose keys look like
they hold a value (`value`, `values`, `secret_value`), so that a careless caller fails in the
tests instead of writing a secret into the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from spaces.models import AuditEntry, Project, Space

if TYPE_CHECKING:
    from environments.models import Environment
    from services.models import Service

Action = AuditEntry.Action

_FORBIDDEN_DETAIL_KEYS = {"value", "values", "secret_value", "plaintext"}

# The name of the API token a request acts through (set by the API for the request's duration):
# every entry the request causes records it, whichever action writes the entry.
acting_token_name: ContextVar[str] = ContextVar("acting_token_name", default="")


def record(
    actor: AbstractBaseUser | AnonymousUser | None,
    space: Space | int,
    action: str,
    summary: str,
    *,
    project: Project | None = None,
    environment: Environment | None = None,
    service: Service | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Write one entry. `service` implies its environment and `environment` its project."""
    details = dict(details or {})
    leaked = _FORBIDDEN_DETAIL_KEYS & set(details)
    if leaked:
        raise ValueError(f"Audit details never hold values: drop {sorted(leaked)}.")
    if service is not None and environment is None:
        environment = service.environment
    if environment is not None and project is None:
        project = environment.project
    token_name = acting_token_name.get()
    if token_name:
        details["token"] = token_name
    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEntry.objects.create(
        space_id=space if isinstance(space, int) else space.pk,
        project_public_id=project.public_id if project else "",
        project_name=project.name if project else "",
        environment_public_id=environment.public_id if environment else "",
        environment_name=environment.name[:40] if environment else "",
        service_public_id=service.public_id if service else "",
        service_name=service.name if service else "",
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        action=action,
        summary=summary[:500],
        details=details,
    )


def space_id_of(environment: Environment) -> int:
    return environment.project.space_id


# --- reading -------------------------------------------------------------------------------------

FILTERS = ("project", "environment", "user", "action")


def filtered_entries(space: Space, params: dict[str, str]) -> QuerySet[AuditEntry]:
    """The space's entries, newest first, narrowed by the filters the page and the CSV share:
    `project` and `environment` (public ids), `user` (username), `action` (an action code)."""
    entries = AuditEntry.objects.filter(space=space)
    if params.get("project"):
        entries = entries.filter(project_public_id=params["project"])
    if params.get("environment"):
        entries = entries.filter(environment_public_id=params["environment"])
    if params.get("user"):
        entries = entries.filter(actor_name=params["user"])
    if params.get("action") in Action.values:
        entries = entries.filter(action=params["action"])
    return entries.order_by("-created_at", "-pk")


CSV_HEADER = ["time", "user", "action", "project", "environment", "service", "summary", "details"]


def csv_rows(entries: QuerySet[AuditEntry]) -> Iterator[list[str]]:
    """The rows of the CSV download, the header first; read in chunks, never all at once."""
    import json

    yield CSV_HEADER
    for entry in entries.iterator(chunk_size=500):
        yield [
            entry.created_at.isoformat(),
            _csv_safe(entry.actor_name),
            entry.action,
            _csv_safe(entry.project_name),
            _csv_safe(entry.environment_name),
            _csv_safe(entry.service_name),
            _csv_safe(entry.summary),
            json.dumps(entry.details, sort_keys=True),
        ]


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet (CSV injection): a user-chosen
    # name in a summary must stay text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def record_terminal_session(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """A terminal session opened (`services.TerminalSession` written): its audit entry.

    Connected to the model's `post_save` (see `SpacesConfig.ready`) rather than called from the
    terminal's socket, so that every way a session row is written is recorded the same way.
    """
    if not created:
        return
    service = instance.service
    environment = service.environment
    user = instance.user
    entry = record(
        user,
        environment.project.space_id,
        Action.TERMINAL_OPEN,
        f"Opened a terminal in {service.name} ({instance.pod}/{instance.container})",
        service=service,
        details={"pod": instance.pod, "container": instance.container, "session": instance.pk},
    )
    if user is None and instance.username:
        # The session keeps its username when the account goes; so does the entry.
        AuditEntry.objects.filter(pk=entry.pk).update(actor_name=instance.username)
