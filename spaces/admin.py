from __future__ import annotations

from functools import partial

from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from environments.models import Environment
from environments.tasks import reconcile_environment

from spaces.models import (
    LIMIT_FIELDS,
    AuditEntry,
    Invitation,
    Membership,
    Project,
    ResourceAllocation,
    ResourceProfile,
    Space,
)


def reapply_quotas(spaces) -> None:  # type: ignore[no-untyped-def]
    """Carry changed limits to the clusters: every namespace of the spaces gets its
    ResourceQuota again (the environment's reconcile renders it from the current limits)."""
    ids = list(Environment.objects.filter(project__space__in=spaces, deleting_at__isnull=True).values_list("pk", flat=True))
    for pk in ids:
        transaction.on_commit(partial(reconcile_environment.delay, pk), robust=True)


class ResourceAllocationInline(admin.StackedInline):
    model = ResourceAllocation
    extra = 0
    max_num = 1
    fieldsets = [
        (None, {"fields": ["profile"], "description": "Limits left empty come from the profile (or `default`)."}),
        ("On-demand totals", {"fields": ["on_demand_cpu_millicores", "on_demand_memory_mib", "on_demand_disk_mib"]}),
        ("Spot totals", {"fields": ["spot_cpu_millicores", "spot_memory_mib", "spot_disk_mib"]}),
        ("Per service", {"fields": ["service_max_cpu_millicores", "service_max_memory_mib", "service_max_disk_mib",
                                    "max_replicas_per_service"]}),
        ("Services", {"fields": ["max_running_services"]}),
    ]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Space)
class SpaceAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "is_default", "owner", "created_at"]
    list_filter = ["is_default"]
    search_fields = ["name", "public_id", "owner__username", "memberships__user__username"]
    readonly_fields = ["public_id", "created_at"]
    raw_id_fields = ["owner"]
    inlines = [ResourceAllocationInline, MembershipInline]

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_related(request, form, formsets, change)
        reapply_quotas([form.instance])

    def has_delete_permission(self, request: HttpRequest, obj: Space | None = None) -> bool:
        # A user's default space stays as long as the user does.
        if obj is not None and obj.is_default:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        # The bulk delete action would bypass Space.delete() and remove default spaces.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "space", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "space"]
    search_fields = ["user__username", "user__email", "space__name"]
    raw_id_fields = ["user", "space"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "space", "public_id", "created_by", "created_at"]
    list_select_related = ["space", "created_by"]
    search_fields = ["name", "display_name", "public_id", "space__name"]
    readonly_fields = ["public_id", "created_at"]
    raw_id_fields = ["space", "default_environment", "created_by"]


@admin.register(ResourceProfile)
class ResourceProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "on_demand_cpu_millicores", "on_demand_memory_mib", "max_running_services"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        ("On-demand totals", {"fields": ["on_demand_cpu_millicores", "on_demand_memory_mib", "on_demand_disk_mib"]}),
        ("Spot totals", {"fields": ["spot_cpu_millicores", "spot_memory_mib", "spot_disk_mib"]}),
        ("Per service", {"fields": ["service_max_cpu_millicores", "service_max_memory_mib", "service_max_disk_mib",
                                    "max_replicas_per_service"]}),
        ("Services", {"fields": ["max_running_services"]}),
    ]

    def save_model(self, request: HttpRequest, obj: ResourceProfile, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        # The spaces using it; for `default`, also every space without an allocation.
        spaces = Space.objects.filter(allocation__profile=obj)
        if obj.name == ResourceProfile.DEFAULT:
            spaces = spaces | Space.objects.filter(allocation__isnull=True) | Space.objects.filter(allocation__profile__isnull=True)
        reapply_quotas(spaces.distinct())


@admin.register(ResourceAllocation)
class ResourceAllocationAdmin(admin.ModelAdmin):
    list_display = ["space", "profile", "updated_at"]
    list_select_related = ["space", "profile"]
    search_fields = ["space__name"]
    raw_id_fields = ["space"]
    fields = ["space", "profile", *LIMIT_FIELDS]

    def save_model(self, request: HttpRequest, obj: ResourceAllocation, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        reapply_quotas([obj.space])


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "space", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_select_related = ["space", "invited_by"]
    search_fields = ["email", "space__name"]
    # The token is never shown: only its hash exists, and it opens nothing.
    exclude = ["token_hash"]
    readonly_fields = ["space", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at", "accepted_by"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "space", "actor_name", "action", "summary"]
    list_filter = ["action"]
    list_select_related = ["space"]
    search_fields = ["space__name", "actor_name", "summary", "service_name", "environment_name", "project_name"]
    date_hierarchy = "created_at"

    # A record of what happened: nobody edits or removes it through the admin.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False
