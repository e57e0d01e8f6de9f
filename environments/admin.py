from __future__ import annotations

from django.contrib import admin

from environments.models import Environment


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "project", "cluster", "color", "created_at"]
    list_filter = ["cluster"]
    list_select_related = ["project__space", "cluster"]
    search_fields = ["name", "public_id", "project__name", "project__space__name"]
    readonly_fields = ["public_id", "created_at"]
    raw_id_fields = ["project", "created_by"]
