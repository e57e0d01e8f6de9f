from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from spaces.models import Membership, Project, Space


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
    inlines = [MembershipInline]

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
