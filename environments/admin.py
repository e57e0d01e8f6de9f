from __future__ import annotations

from django.contrib import admin

from environments.models import Environment, EnvironmentVariable


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "project", "cluster", "color", "created_at"]
    list_filter = ["cluster"]
    list_select_related = ["project__space", "cluster"]
    search_fields = ["name", "public_id", "project__name", "project__space__name"]
    readonly_fields = ["public_id", "created_at"]
    raw_id_fields = ["project", "created_by"]


@admin.register(EnvironmentVariable)
class EnvironmentVariableAdmin(admin.ModelAdmin):
    """Keys and who set them; never the value, encrypted or not (`fields` leaves it out)."""

    list_display = ["key", "environment", "is_secret", "updated_at", "updated_by"]
    list_filter = ["is_secret"]
    list_select_related = ["environment", "updated_by"]
    search_fields = ["key", "environment__public_id", "environment__name"]
    fields = ["environment", "key", "is_secret", "created_by", "created_at", "updated_by", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        # A value can only be set through Secret Management, which encrypts it.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
