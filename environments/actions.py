"""Workflows on environments. Views, commands and tests all go through these verbs."""

from __future__ import annotations

from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster
from environments.colors import next_color
from environments.forms import validate_cidrs
from environments.yaml_document import PlannedService, referenced_secret_keys, writes_of
from environments.models import MAIN, Environment, EnvironmentVariable
from environments.secrets import encrypt
from environments.tasks import delete_environment as delete_environment_task
from environments.tasks import reconcile_environment
from services import lifecycle
from services.actions import redeploy_service
from services.models import Service
from spaces import audit
from spaces.models import Project
from spaces.resources import check_allocation, spec_from_fields


def _lock(project: Project) -> Project:
    # Serialises work on one project's environments, so that two requests can neither pick the
    # same colour nor both delete "the last" environment.
    return Project.objects.select_for_update().get(pk=project.pk)


@transaction.atomic
def create_environment(
    *, acting_user: AbstractBaseUser, project: Project, name: str, cluster: Cluster
) -> Environment:
    _lock(project)
    if name.lower() == MAIN:
        color = ""
    else:
        color = next_color(Environment.objects.filter(project=project).values_list("color", flat=True))
    environment = Environment.objects.create(
        project=project, name=name, cluster=cluster, color=color, created_by=acting_user
    )
    audit.record(
        acting_user, project.space_id, audit.Action.ENVIRONMENT_CREATE,
        f"Created environment {name} on {cluster.name}", project=project, environment=environment,
    )
    # The namespace exists before the first deploy, and an empty environment is isolated too.
    transaction.on_commit(partial(reconcile_environment.delay, environment.pk), robust=True)
    return environment


def rename_environment(*, acting_user: AbstractBaseUser, environment: Environment, name: str) -> Environment:
    # The colour stays: users learn an environment by its colour, not by its name.
    environment.name = name
    environment.save(update_fields=["name"])
    return environment


@transaction.atomic
def set_default_environment(*, acting_user: AbstractBaseUser, environment: Environment) -> Environment:
    from spaces import audit

    project = environment.project
    project.default_environment = environment
    project.save(update_fields=["default_environment"])
    audit.record(
        acting_user, project.space_id, audit.Action.ENVIRONMENT_DEFAULT,
        f"Set {environment.name} as the default environment of {project.name}", environment=environment,
    )
    return environment


@transaction.atomic
def delete_environment(*, acting_user: AbstractBaseUser, environment: Environment) -> Project | None:
    """Mark the environment as being deleted and start the task that deletes its namespace,
    then its row. When it is the project's last environment, the project goes too.

    Returns the project when it remains, None when it goes with its last environment.
    """
    project = _lock(environment.project)
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    if environment.deleting_at is None:
        environment.deleting_at = timezone.now()
        # The colour is free at once: a new environment may take it while this one goes.
        environment.color = ""
        environment.save(update_fields=["deleting_at", "color"])
        # Its services as any deleted service: builds cancelled, cards saying so.
        lifecycle.begin_delete_environment(environment)
    # robust: the mark is committed either way; a broker outage must not fail the request.
    transaction.on_commit(partial(delete_environment_task.delay, environment.pk), robust=True)
    audit.record(
        acting_user, project.space_id, audit.Action.ENVIRONMENT_DELETE, f"Deleted environment {environment.name}",
        project=project, environment=environment,
    )
    # Environments already going do not keep the project alive.
    remaining = Environment.objects.filter(project=project, deleting_at__isnull=True).exclude(pk=environment.pk)
    if not remaining.exists():
        return None
    if project.default_environment_id in (None, environment.pk):
        # The project must still open somewhere: `main` when it exists, else the oldest.
        project.default_environment = remaining.filter(name__iexact=MAIN).first() or remaining.first()
        project.save(update_fields=["default_environment"])
    return project


# --- variables and secrets (Settings → Secret Management) -----------------------------------------


def _enqueue_environment(environment: Environment) -> None:
    transaction.on_commit(partial(reconcile_environment.delay, environment.pk), robust=True)


@transaction.atomic
def set_variables(
    *, acting_user: AbstractBaseUser, environment: Environment, values: dict[str, str], is_secret: bool
) -> tuple[list[str], list[str]]:
    """Create or replace variables (one from the form, many from a `.env` file); returns the
    keys (created, replaced). A key keeps being a secret once it is one: replacing it from a
    form for plain variables must not reveal it in the list."""
    Environment.objects.select_for_update(of=("self",)).filter(pk=environment.pk).first()
    existing = {v.key: v for v in EnvironmentVariable.objects.filter(environment=environment, key__in=list(values))}
    created, replaced, changed_rows = [], [], []
    new_rows = []
    for key, value in values.items():
        row = existing.get(key)
        if row is None:
            new_rows.append(
                EnvironmentVariable(
                    environment=environment,
                    key=key,
                    is_secret=is_secret,
                    value_encrypted=encrypt(value),
                    created_by=acting_user,
                    updated_by=acting_user,
                )
            )
            created.append(key)
        else:
            row.value_encrypted = encrypt(value)
            row.is_secret = row.is_secret or is_secret
            row.updated_by = acting_user
            row.updated_at = timezone.now()
            changed_rows.append(row)
            replaced.append(key)
    EnvironmentVariable.objects.bulk_create(new_rows)
    if changed_rows:
        EnvironmentVariable.objects.bulk_update(changed_rows, ["value_encrypted", "is_secret", "updated_by", "updated_at"])
    if values:
        _enqueue_environment(environment)
        # Keys only: the log never holds a value, secret or not.
        audit.record(
            acting_user, environment.project.space_id, audit.Action.SECRETS_CHANGE,
            f"Set {len(values)} {'secret' if is_secret else 'variable'}{'s' if len(values) != 1 else ''} in {environment.name}",
            environment=environment, details={"created": created, "replaced": replaced, "secret": is_secret},
        )
    return created, replaced


@transaction.atomic
def delete_variable(*, acting_user: AbstractBaseUser, environment: Environment, key: str) -> bool:
    deleted, _ = EnvironmentVariable.objects.filter(environment=environment, key=key).delete()
    if deleted:
        _enqueue_environment(environment)
        audit.record(
            acting_user, environment.project.space_id, audit.Action.SECRETS_CHANGE,
            f"Deleted {key} from {environment.name}", environment=environment, details={"deleted": [key]},
        )
    return bool(deleted)


def restart_services_using_variables(*, acting_user: AbstractBaseUser, environment: Environment) -> int:
    """Redeploy the running services so that they read the environment's variables again.

    Every service reads them (`envFrom`), so every running one restarts; stopped services read
    the new values when they start. Returns how many were restarted."""
    running = (
        Service.objects.filter(environment=environment, desired_state=Service.DesiredState.RUNNING)
        .exclude(status=Service.Status.DELETING)
        .order_by("name")
    )
    count = 0
    for service in running:
        redeploy_service(acting_user, service)
        count += 1
    return count


# --- firewall ------------------------------------------------------------------------------------


@transaction.atomic
def set_firewall(
    *, acting_user: AbstractBaseUser, environment: Environment, allow: bool, cidrs: list[str], confirmed: bool
) -> Environment:
    """Open or close external TCP access. Opening needs the user's explicit confirmation that
    it admits every IP address (or the listed ranges)."""
    environment = Environment.objects.select_for_update(of=("self",)).select_related("cluster", "project__space").get(pk=environment.pk)
    if environment.is_deleting:
        raise ValidationError("This environment is being deleted.")
    try:
        cidrs = validate_cidrs(cidrs)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if allow and not environment.allow_external_tcp and not confirmed:
        raise ValidationError(
            "Allowing external TCP connections opens this environment's TCP services to all IP addresses: "
            "confirm that you understand."
        )
    environment.allow_external_tcp = allow
    environment.external_allow_cidrs = cidrs
    environment.save(update_fields=["allow_external_tcp", "external_allow_cidrs"])
    _enqueue_environment(environment)
    audit.record(
        acting_user, environment.project.space_id, audit.Action.FIREWALL_CHANGE,
        f"{'Allowed' if allow else 'Closed'} external TCP connections to {environment.name}",
        environment=environment, details={"allow_external_tcp": allow, "allowed_cidrs": cidrs},
    )
    return environment


# --- terminal access -----------------------------------------------------------------------------


@transaction.atomic
def set_terminal_access(*, acting_user: AbstractBaseUser, environment: Environment, terminal_access: str) -> Environment:
    """Who may open a terminal in the environment's services: all members, or the space's owners
    only. Only owners may change it: the caller has checked (`spaces.access.is_owner`)."""
    if terminal_access not in Environment.TerminalAccess.values:
        raise ValidationError("Choose who may open a terminal.")
    environment = Environment.objects.select_for_update(of=("self",)).select_related("project__space").get(pk=environment.pk)
    previous = environment.terminal_access
    environment.terminal_access = terminal_access
    environment.save(update_fields=["terminal_access"])
    if terminal_access != previous:
        audit.record(
            acting_user, environment.project.space_id, audit.Action.TERMINAL_ACCESS,
            f"Terminal access to {environment.name}: {environment.get_terminal_access_display().lower()}",
            environment=environment, details={"terminal_access": terminal_access, "previous": previous},
        )
    return environment


# --- cloning -------------------------------------------------------------------------------------


@transaction.atomic
def clone_environment(
    *, acting_user: AbstractBaseUser, source: Environment, name: str, cluster: Cluster
) -> Environment:
    """A new environment of the source's project with a copy of every service, stopped.

    Variables and secrets are not copied: the new environment lists the keys its services
    refer to until they are set. The copy is a bulk write in this transaction (a few queries
    whatever the number of services), so it is done when the page reloads.
    """
    services = Service.objects.filter(environment=source).exclude(status=Service.Status.DELETING).order_by("name")
    # A custom domain serves one service per cluster: on the same cluster the clone goes without.
    taken = {
        host
        for domains in Service.objects.filter(environment__cluster=cluster).exclude(custom_domains=[]).values_list("custom_domains", flat=True)
        for host in domains
    }
    planned = []
    for service in services:
        spec = service.snapshot()
        spec["custom_domains"] = [host for host in spec["custom_domains"] if host not in taken]
        planned.append(PlannedService(service.name, "create", spec, Service.DesiredState.STOPPED))
    # Clones are stopped, so only the per-service maximums and their disks (claims held while
    # stopped) can refuse them; checked before the environment exists, so a refusal leaves
    # nothing behind.
    check_allocation(source.project.space_id, [(None, spec_from_fields(p.name, p.spec, running=False)) for p in planned])
    environment = create_environment(acting_user=acting_user, project=source.project, name=name, cluster=cluster)
    written = lifecycle.write_many(acting_user, environment, writes_of(planned), cause="clone")
    # Where each card says the service came from until it is deployed.
    Service.objects.filter(pk__in=[s.pk for s in written]).update(cloned_from=source.name, cloned_by=acting_user)
    for service in written:
        service.cloned_from, service.cloned_by = source.name, acting_user
    audit.record(
        acting_user, source.project.space_id, audit.Action.ENVIRONMENT_CLONE,
        f"Cloned {source.name} as {environment.name} ({len(written)} service{'s' if len(written) != 1 else ''}, stopped)",
        environment=environment, details={"source": source.public_id, "services": [s.name for s in written]},
    )
    return environment


def missing_secret_keys(environment: Environment) -> list[str]:
    """Keys the environment's services refer to (`${{ secrets.KEY }}`) that are not set."""
    services = list(Service.objects.filter(environment=environment).exclude(status=Service.Status.DELETING).only("env_vars", "git_token_secret"))
    have = set(EnvironmentVariable.objects.filter(environment=environment).values_list("key", flat=True))
    return [key for key in referenced_secret_keys(services) if key not in have]
