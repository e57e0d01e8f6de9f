from __future__ import annotations

from datetime import datetime
from itertools import chain

import orjson
from django.conf import settings
from django.core.validators import RegexValidator
from django.db import connections, models
from django.db.models.functions import Lower

from environments.secrets import decrypt, encrypt
from spaces.ids import new_public_id

MAIN = "main"


class Environment(models.Model):
    """One Kubernetes namespace of a project, on one cluster."""

    project = models.ForeignKey("spaces.Project", on_delete=models.CASCADE, related_name="environments")
    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=40)
    # Clusters are removed by operations only once nothing lives on them any more.
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.PROTECT, related_name="environments")
    # Hex colour shown in the selector and the header; blank for `main`, which has none.
    # It goes into a style attribute, hence the strict format.
    color = models.CharField(
        max_length=7, blank=True, validators=[RegexValidator(r"^#[0-9a-f]{6}$", "A colour like #3b82f6.")]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when a user deletes the environment: the row stays (shown as going) until the
    # deletion task has seen its namespace disappear from the cluster. The periodic resync
    # starts the task again when it has been going for long, and moves this to that moment.
    deleting_at = models.DateTimeField(null=True, blank=True)
    # A digest of the objects the last successful apply of the environment's own objects wrote
    # (namespace, policies, secret, quota, firewall), so an unchanged one is not applied again.
    applied_hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    class TerminalAccess(models.TextChoices):
        ALL_MEMBERS = "all_members", "All members"
        OWNERS_ONLY = "owners_only", "Owners only"

    # Who may open a shell in this environment's containers: a production environment is often
    # limited to the space's owners while everyone reads its logs.
    terminal_access = models.CharField(
        max_length=20, choices=TerminalAccess.choices, default=TerminalAccess.ALL_MEMBERS
    )
    # Firewall: when on, TCP services also get an address outside the cluster and a policy
    # admits outside traffic to them, from anywhere or only from `external_allow_cidrs`.
    allow_external_tcp = models.BooleanField(default=False)
    external_allow_cidrs = models.JSONField(default=list, blank=True)

    class BulkAction(models.TextChoices):
        NONE = "", "None"
        START = "start", "Start All"
        STOP = "stop", "Stop All"

    # A Start All or Stop All in flight, for its progress banner (`services.progress`): which
    # services it moved, counted done as the cluster carries them; cleared when all are.
    bulk_action = models.CharField(max_length=10, choices=BulkAction.choices, default="", blank=True)
    bulk_service_ids = models.JSONField(default=list, blank=True)
    bulk_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "project", name="environment_name_unique_in_project"),
            models.UniqueConstraint(
                fields=["project", "color"],
                condition=~models.Q(color=""),
                name="environment_color_unique_in_project",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def namespace(self) -> str:
        return f"ale-{self.public_id}"

    @property
    def is_deleting(self) -> bool:
        return self.deleting_at is not None

    @property
    def is_default(self) -> bool:
        return self.project.default_environment_id == self.pk


class EnvironmentVariable(models.Model):
    """A variable or secret shared by every service of an environment (the Secret `ale-env`).

    The value is only ever stored encrypted (`environments.secrets`), plain variables too: one
    code path, and nothing readable in a database dump. Secrets are write-only in the UI.
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="variables")
    key = models.CharField(
        max_length=253,
        validators=[
            RegexValidator(
                r"^[A-Za-z_][A-Za-z0-9_]*$",
                "Use letters, digits and underscores, not starting with a digit.",
            )
        ],
    )
    is_secret = models.BooleanField(default=True)
    value_encrypted = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["environment", "key"], name="variable_key_unique_in_environment")]

    def __str__(self) -> str:
        # Never the value: this string ends up in logs and the admin.
        return self.key

    @property
    def value(self) -> str:
        return decrypt(self.value_encrypted)

    @value.setter
    def value(self, plaintext: str) -> None:
        self.value_encrypted = encrypt(plaintext)


# How many events the Events tab lists; the page keeps no more as live rows arrive.
RECENT_EVENTS = 200


# Events per upsert statement, where the backend allows as many parameters (11 each).
UPSERT_BATCH = 500
# The columns an upsert writes, in their order in its statement.
UPSERTED = ("environment", "service", "uid", "type", "reason", "message", "involved_kind", "involved_name",
            "count", "first_seen", "last_seen")  # fmt: skip


class ClusterEventQuerySet(models.QuerySet["ClusterEvent"]):
    def recent(self, environment: Environment, limit: int = RECENT_EVENTS) -> models.QuerySet[ClusterEvent]:
        """The Events tab: newest first, with the service each event is about."""
        return self.filter(environment=environment).select_related("service").order_by("-last_seen", "-pk")[:limit]

    def upsert(self, events: list[ClusterEvent]) -> list[ClusterEvent]:
        """Write `events` keyed by (environment, uid): each one new, or stored with another
        count or last time, is inserted or updated; one stored as it is, as a relist hands
        every event over again, is left alone. Returns those written, with their primary keys.

        One INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING per batch (PostgreSQL, and
        SQLite since 3.35): no read of what is stored first, and no rows that did not change.
        On PostgreSQL a batch goes as one JSON parameter (`json_to_recordset`), written by
        orjson: the statement stays short and the same, and the driver quotes one string, not
        thousands of values one by one (Django's psycopg cursors bind on the client).
        """
        if not events:
            return []
        connection = connections[self.db]
        quote, adapt = connection.ops.quote_name, connection.ops.adapt_datetimefield_value
        meta = self.model._meta
        table = quote(meta.db_table)
        fields = [meta.get_field(name) for name in UPSERTED]
        columns = {field.name: quote(field.column) for field in fields}
        kept = {"environment", "uid", "first_seen"}
        as_json = connection.vendor == "postgresql"
        if as_json:
            record = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in fields)
            rows = f"SELECT {', '.join(columns.values())} FROM json_to_recordset(%s::json) AS batch({record})"
        tail = (
            f" ON CONFLICT ({columns['environment']}, {columns['uid']}) DO UPDATE SET "
            + ", ".join(f"{column} = EXCLUDED.{column}" for name, column in columns.items() if name not in kept)
            + f" WHERE {table}.{columns['count']} <> EXCLUDED.{columns['count']}"
            + f" OR {table}.{columns['last_seen']} <> EXCLUDED.{columns['last_seen']}"
            + f" RETURNING {quote(meta.pk.column)}, {columns['environment']}, {columns['uid']}"
        )
        head = f"INSERT INTO {table} ({', '.join(columns.values())}) "
        # One row per key (the last one given): a statement may not update a row twice.
        by_key = {(event.environment_id, event.uid): event for event in events}
        events = list(by_key.values())
        size = UPSERT_BATCH
        if not as_json and connection.features.max_query_params:
            size = min(size, connection.features.max_query_params // len(fields))
        written: list[ClusterEvent] = []
        with connection.cursor() as cursor:
            for start in range(0, len(events), size):
                batch = events[start : start + size]
                if as_json:
                    records = [{f.column: getattr(event, f.attname) for f in fields} for event in batch]
                    cursor.execute(head + rows + tail, [orjson.dumps(records).decode()])
                else:
                    values = [
                        [adapt(v) if isinstance(v, datetime) else v for v in (getattr(event, f.attname) for f in fields)]
                        for event in batch
                    ]
                    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
                    cursor.execute(head + "VALUES " + ", ".join([row] * len(values)) + tail, list(chain(*values)))
                for pk, environment_id, uid in cursor.fetchall():
                    event = by_key[(environment_id, uid)]
                    event.pk = pk
                    event._state.adding, event._state.db = False, self.db
                    written.append(event)
        return written


class ClusterEvent(models.Model):
    """A Kubernetes Event about something in an environment's namespace, kept past the hour
    Kubernetes keeps it (`settings.EVENT_RETENTION_DAYS`)."""

    class Type(models.TextChoices):
        NORMAL = "Normal", "Normal"
        WARNING = "Warning", "Warning"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="cluster_events")
    # The event outlives a deleted service on the Events tab.
    service = models.ForeignKey(
        "services.Service", null=True, blank=True, on_delete=models.SET_NULL, related_name="cluster_events"
    )
    # The Kubernetes Event's metadata.uid: a repeated event keeps its uid and bumps its count.
    uid = models.CharField(max_length=64)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.NORMAL)
    reason = models.CharField(max_length=128, blank=True)
    message = models.TextField(blank=True)
    involved_kind = models.CharField(max_length=64, blank=True)
    involved_name = models.CharField(max_length=253, blank=True)
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    objects = ClusterEventQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen", "-pk"]
        constraints = [models.UniqueConstraint(fields=["environment", "uid"], name="cluster_event_uid_unique")]
        indexes = [
            models.Index(fields=["environment", "-last_seen"], name="cluster_event_env_recent"),
            # The hourly prune deletes by age across all environments.
            models.Index(fields=["last_seen"], name="cluster_event_last_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.involved_kind}/{self.involved_name}: {self.reason}"
