from __future__ import annotations

from django.urls import path

from spaces import audit_views, members_views, settings_views, views

app_name = "spaces"

urlpatterns = [
    # Before `spaces/<space_id>/`, so that "new" is never taken for an id.
    path("spaces/new/", views.space_create, name="create"),
    path("spaces/<str:space_id>/", views.space_detail, name="detail"),
    path("spaces/<str:space_id>/projects/new/", views.project_create, name="project-create"),
    path("projects/<str:project_id>/", views.project_detail, name="project-detail"),
    path("@<str:space_name>/<str:project_name>/", views.project_alias, name="project-alias"),
    path("spaces/<str:space_id>/settings/", settings_views.space_settings, name="settings"),
    path("spaces/<str:space_id>/rename/", settings_views.space_rename, name="rename"),
    path("spaces/<str:space_id>/delete/", settings_views.space_delete, name="delete"),
    path("spaces/<str:space_id>/team/", members_views.team, name="team"),
    path("spaces/<str:space_id>/team/invite/", members_views.invite, name="invite"),
    path("spaces/<str:space_id>/team/leave/", members_views.leave, name="leave"),
    path("spaces/<str:space_id>/team/<str:username>/role/", members_views.change_role, name="member-role"),
    path("spaces/<str:space_id>/team/<str:username>/remove/", members_views.remove_member, name="member-remove"),
    path("spaces/<str:space_id>/invitations/<str:ref>/revoke/", members_views.revoke_invitation, name="invitation-revoke"),
    path("spaces/<str:space_id>/audit/", audit_views.audit_log, name="audit"),
    path("spaces/<str:space_id>/audit.csv", audit_views.audit_csv, name="audit-csv"),
    path("spaces/<str:space_id>/usage/", settings_views.usage, name="usage"),
    path("invitations/<str:token>/", members_views.invitation, name="invitation"),
]
