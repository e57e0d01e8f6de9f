"""Workflows of a project's webhook: its secret and settings, accepting a delivery, and what a
push or a pull request does. Builds, clones and deletions go through the public verbs of
`services.actions` and `environments.actions`, as a click on the page would."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from environments.actions import clone_environment, delete_environment, set_variables
from environments.yaml_document import PlannedService, writes_of
from environments.models import Environment, EnvironmentVariable
from environments.secrets import encrypt
from hooks import payloads
from hooks.models import CommitStatus, Delivery, Preview, ProjectHook, new_hook_secret
from hooks.status import repository_path
from services import lifecycle
from services.actions import deploy_service, start_all
from services.models import Service
from spaces import audit
from spaces.models import Project

logger = logging.getLogger(__name__)

HANDLED_EVENTS = ("push", "pull_request")


# --- settings (owners) ---------------------------------------------------------------------------


@transaction.atomic
def ensure_hook(project: Project) -> ProjectHook:
    """The project's hook, made on first sight with a fresh secret."""
    hook = ProjectHook.objects.select_for_update().filter(project=project).first()
    if hook is None:
        hook = ProjectHook.objects.create(project=project, secret_encrypted=encrypt(new_hook_secret()))
    return hook


@transaction.atomic
def rotate_secret(*, acting_user: AbstractBaseUser, project: Project) -> ProjectHook:
    hook = ensure_hook(project)
    hook.secret_encrypted = encrypt(new_hook_secret())
    hook.rotated_at = timezone.now()
    hook.save(update_fields=["secret_encrypted", "rotated_at"])
    audit.record(acting_user, project.space_id, audit.Action.HOOK_SETTINGS, "Rotated the webhook secret", project=project)
    return hook


@transaction.atomic
def set_preview_settings(
    *,
    acting_user: AbstractBaseUser,
    project: Project,
    enabled: bool,
    base: Environment | None,
    with_secrets: bool,
    allow_forks: bool,
) -> ProjectHook:
    if base is not None and base.project_id != project.pk:
        raise ValueError("The base environment belongs to another project.")
    if enabled and base is None:
        raise ValidationError("Pick the environment previews are cloned from.")
    hook = ensure_hook(project)
    hook.previews_enabled = enabled
    hook.preview_base = base
    hook.previews_get_secrets = with_secrets
    hook.previews_allow_forks = allow_forks
    hook.save(update_fields=["previews_enabled", "preview_base", "previews_get_secrets", "previews_allow_forks"])
    audit.record(
        acting_user, project.space_id, audit.Action.HOOK_SETTINGS,
        f"{'Turned on' if enabled else 'Turned off'} preview environments" + (f" (from {base.name})" if enabled and base else ""),
        project=project, details={"secrets": with_secrets, "forks": allow_forks},
    )  # fmt: skip
    return hook


@transaction.atomic
def set_host_token(*, acting_user: AbstractBaseUser, project: Project, token: str, api_url: str) -> ProjectHook:
    """Store (or with an empty token, forget) the Git host token commit statuses are posted with."""
    hook = ensure_hook(project)
    hook.host_token_encrypted = encrypt(token) if token else ""
    hook.host_api_url = api_url
    hook.save(update_fields=["host_token_encrypted", "host_api_url"])
    audit.record(
        acting_user, project.space_id, audit.Action.HOOK_SETTINGS,
        "Stored a Git host token for commit statuses" if token else "Removed the Git host token",
        project=project,
    )
    return hook


def set_deploy_on_push(service: Service, deploy_on_push: bool) -> None:
    """The deploy modal's "Deploy on push" box. Not part of the spec: a rollback or a YAML file
    leaves it as the person last set it."""
    if service.deploy_on_push != deploy_on_push:
        Service.objects.filter(pk=service.pk).update(deploy_on_push=deploy_on_push)
        service.deploy_on_push = deploy_on_push


# --- deliveries ----------------------------------------------------------------------------------

# Compared against when the hook is unknown, so that an unknown id costs what a known one does.
_DUMMY_SECRET = new_hook_secret()


def accept_delivery(hook_id: str, headers: dict[str, str], body: bytes) -> Delivery | None:
    """Check a delivery and store it; None when it is refused or was processed already. The
    caller enqueues `hooks.tasks.process_delivery` for the delivery returned.

    The caller answers every outcome alike: an unknown hook, a bad signature, an event ale
    does not handle and a replay must not be told apart from outside.
    """
    provider = payloads.provider_of(headers)
    hook = ProjectHook.objects.filter(public_id=hook_id).first()
    secret = hook.secret if hook is not None else _DUMMY_SECRET
    signed = payloads.signature_ok(provider or payloads.GITHUB, headers, body, secret)
    if hook is None or provider is None or not signed:
        return None
    event = payloads.event_of(provider, headers)
    if event not in HANDLED_EVENTS:
        return None
    delivery_id = payloads.delivery_id_of(provider, headers, body)
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                hook=hook, delivery_id=delivery_id, provider=provider, event=event, body=body.decode("utf-8", "replace")
            )
    except IntegrityError:
        # Seen before. Processed: nothing to do. Not yet (its task was lost with a broker
        # outage): the redelivery enqueues it again; the task acts on a delivery only once.
        logger.info("hook %s: delivery %s replayed", hook.pk, delivery_id)
        return Delivery.objects.filter(hook=hook, delivery_id=delivery_id, processed_at__isnull=True).first()
    return delivery


def process(delivery: Delivery) -> str:
    """Act on a stored delivery (in the task's transaction); returns what was done, for the row."""
    try:
        event = payloads.parse(delivery.provider, delivery.event, delivery.body.encode())
    except payloads.PayloadError as exc:
        return f"Ignored: {exc}"
    if event is None:
        return "Ignored: nothing to do."
    # One delivery of a hook at a time: an "opened" and a "synchronize" arriving together must
    # not both create pr-<n>.
    hook = ProjectHook.objects.select_for_update(of=("self",)).select_related("project__space", "preview_base").get(pk=delivery.hook_id)
    if isinstance(event, payloads.Push):
        return handle_push(hook, event, provider=delivery.provider)
    return handle_pull_request(hook, event, provider=delivery.provider)


def _keys(urls: list[str]) -> set[str]:
    return {key for key in (payloads.repository_key(url) for url in urls) if key}


def _track(hook: ProjectHook, provider: str, service: Service, repository_url: str, sha: str) -> None:
    """Remember the build just started, for its commit status, when the owner gave a token."""
    if not hook.host_token_encrypted or not sha:
        return
    build = service.builds.order_by("-number").first()
    if build is None:
        return
    CommitStatus.objects.create(
        hook=hook, build=build, provider=provider, repository_url=repository_url,
        repository_key=repository_path(repository_url), sha=sha,
    )  # fmt: skip


def handle_push(hook: ProjectHook, push: payloads.Push, *, provider: str = payloads.GITHUB) -> str:
    """Build and deploy every Git service of the project that tracks the pushed repository and
    branch and deploys on push. Previews follow their request's own events instead."""
    keys = _keys(push.repository_urls)
    candidates = (
        Service.objects.filter(
            environment__project=hook.project,
            environment__deleting_at__isnull=True,
            environment__preview__isnull=True,
            source=Service.Source.GIT,
            deploy_on_push=True,
            branch=push.branch,
        )
        .exclude(status=Service.Status.DELETING)
        .select_related("environment__project", "environment__cluster")
        .order_by("pk")
    )
    cause = f"push of {push.short_sha} by {push.pusher}"[:200]
    done, refused = [], []
    for service in candidates:
        if payloads.repository_key(service.repository_url) not in keys:
            continue
        try:
            with transaction.atomic():
                deploy_service(None, service.environment, service.snapshot(), service=service, cause=cause)
                _track(hook, provider, service, service.repository_url, push.sha)
            done.append(f"{service.environment.name}/{service.name}")
        except ValidationError as exc:
            refused.append(f"{service.environment.name}/{service.name}: {' '.join(exc.messages)}")
    if not done and not refused:
        return f"Push to {push.branch}: no service tracks it."
    return f"{cause}: deployed {', '.join(done) or 'nothing'}" + (f"; refused {'; '.join(refused)}" if refused else "")


# --- previews ------------------------------------------------------------------------------------


def preview_name(number: int) -> str:
    return f"pr-{number}"


def _preview_spec(service: Service, request: payloads.PullRequest) -> dict:
    spec = service.snapshot()
    spec["branch"] = request.head_branch
    if request.is_fork:
        # The request's code lives in the fork.
        spec["repository_url"] = request.head_repository_url
    return spec


def _build_preview(hook: ProjectHook, preview: Preview, request: payloads.PullRequest, provider: str, cause: str) -> str:
    """Run the preview: its Git services build the request's head, the others start. All or
    nothing: when the allocation refuses, it stays stopped and says why."""
    keys = _keys(request.base_repository_urls)
    environment = preview.environment
    services = list(
        Service.objects.filter(environment=environment, source=Service.Source.GIT)
        .exclude(status=Service.Status.DELETING)
        .select_related("environment__project", "environment__cluster")
        .order_by("pk")
    )
    head_key = payloads.repository_key(request.head_repository_url)
    tracking = [
        service for service in services
        if payloads.repository_key(service.repository_url) in keys
        or (request.is_fork and payloads.repository_key(service.repository_url) == head_key)
    ]  # fmt: skip
    try:
        with transaction.atomic():
            for service in tracking:
                deploy_service(None, environment, _preview_spec(service, request), service=service, cause=cause)
                _track(hook, provider, service, request.head_repository_url, request.head_sha)
            start_all(None, environment)
    except ValidationError as exc:
        preview.start_refusal = " ".join(exc.messages)
        preview.save(update_fields=["start_refusal"])
        _point_stopped_services_at_head(environment, tracking, request, cause)
        return f"{environment.name} stays stopped: {preview.start_refusal}"
    if preview.start_refusal:
        preview.start_refusal = ""
        preview.save(update_fields=["start_refusal"])
    return f"{environment.name}: {cause}"


def _point_stopped_services_at_head(
    environment: Environment, services: list[Service], request: payloads.PullRequest, cause: str
) -> None:
    """The preview could not start: its Git services still take the request's branch, stopped,
    so that starting them later builds the request and not the base's branch. Written as the
    clone writes its services (`lifecycle.write_many`), under the environment's lock."""
    with transaction.atomic():
        environment = lifecycle.lock_environment(environment)
        current = Service.objects.select_for_update(of=("self",)).filter(pk__in=[s.pk for s in services]).order_by("pk")
        planned = [
            PlannedService(service.name, "change", _preview_spec(service, request), service.desired_state, service, spec_changed=True)
            for service in current
            if _preview_spec(service, request) != service.snapshot()
        ]
        if planned:
            # Published and reconciled on commit by the transition itself.
            lifecycle.write_many(None, environment, writes_of(planned), cause=cause)


def handle_pull_request(hook: ProjectHook, request: payloads.PullRequest, *, provider: str = payloads.GITHUB) -> str:
    preview = (
        Preview.objects.filter(hook=hook, number=request.number, environment__deleting_at__isnull=True)
        .select_related("environment__project__space", "environment__cluster")
        .first()
    )
    if request.action == "close":
        if preview is None:
            return f"PR #{request.number} closed: no preview."
        delete_environment(acting_user=None, environment=preview.environment)
        return f"PR #{request.number} closed: deleted {preview.environment.name}."
    if request.action not in ("open", "sync"):
        return f"PR #{request.number}: nothing to do."
    if preview is not None:
        preview.head_sha = request.head_sha
        preview.head_branch = request.head_branch
        preview.last_push_at = timezone.now()
        preview.save(update_fields=["head_sha", "head_branch", "last_push_at"])
        return _build_preview(hook, preview, request, provider, f"push of {request.head_sha[:7]} to PR #{request.number}")
    return open_preview(hook, request, provider=provider)


def open_preview(hook: ProjectHook, request: payloads.PullRequest, *, provider: str = payloads.GITHUB) -> str:
    base = hook.preview_base
    if not hook.previews_enabled or base is None or base.is_deleting:
        return f"PR #{request.number}: previews are off."
    if request.is_fork and not hook.previews_allow_forks:
        return f"PR #{request.number} comes from a fork: ignored (forks are not allowed)."
    keys = _keys(request.base_repository_urls)
    tracked = [
        s for s in Service.objects.filter(environment=base, source=Service.Source.GIT).exclude(status=Service.Status.DELETING)
        if payloads.repository_key(s.repository_url) in keys
    ]
    if not tracked:
        return f"PR #{request.number}: no service of {base.name} builds this repository."
    name = preview_name(request.number)
    if Environment.objects.filter(project=hook.project, name__iexact=name).exists():
        return f"PR #{request.number}: an environment named {name} exists already."
    environment = clone_environment(acting_user=None, source=base, name=name, cluster=base.cluster)
    preview = Preview.objects.create(
        environment=environment, hook=hook, number=request.number, url=request.url, head_branch=request.head_branch,
        head_sha=request.head_sha, repository_url=request.head_repository_url, is_fork=request.is_fork,
        last_push_at=timezone.now(),
    )  # fmt: skip
    _copy_variables(hook, base, environment, with_secrets=hook.previews_get_secrets and not request.is_fork)
    audit.record(
        None, hook.project.space_id, audit.Action.PREVIEW_CREATE,
        f"Created preview {name} for PR #{request.number} from {base.name}", environment=environment,
        details={"number": request.number, "branch": request.head_branch, "fork": request.is_fork},
    )  # fmt: skip
    return _build_preview(hook, preview, request, provider, f"pull request #{request.number}")


def _copy_variables(hook: ProjectHook, base: Environment, environment: Environment, *, with_secrets: bool) -> None:
    variables = list(EnvironmentVariable.objects.filter(environment=base))
    plain = {v.key: v.value for v in variables if not v.is_secret}
    if plain:
        set_variables(acting_user=None, environment=environment, values=plain, is_secret=False)
    if with_secrets:
        secret = {v.key: v.value for v in variables if v.is_secret}
        if secret:
            set_variables(acting_user=None, environment=environment, values=secret, is_secret=True)


def expire_previews(now: datetime | None = None) -> list[str]:
    """Delete the previews with no push for PREVIEW_TTL_DAYS; returns their names."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PREVIEW_TTL_DAYS)
    expired = Preview.objects.filter(last_push_at__lt=cutoff, environment__deleting_at__isnull=True).select_related(
        "environment__project__space"
    )
    names = []
    for preview in expired:
        with transaction.atomic():
            delete_environment(acting_user=None, environment=preview.environment)
        names.append(preview.environment.name)
    return names
