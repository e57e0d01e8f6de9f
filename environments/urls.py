from __future__ import annotations

from django.urls import path

from environments import config_views, views

app_name = "environments"

urlpatterns = [
    path("environments/<str:env_id>/", views.detail, name="detail"),
    path("environments/<str:env_id>/events/", views.events, name="events"),
    path("environments/<str:env_id>/settings/", views.settings, name="settings"),
    path("environments/<str:env_id>/rename/", views.rename, name="rename"),
    path("environments/<str:env_id>/project/", views.project_update, name="project-update"),
    path("environments/<str:env_id>/set-default/", views.set_default, name="set-default"),
    path("environments/<str:env_id>/delete/", views.delete, name="delete"),
    path("projects/<str:project_id>/environments/new/", views.create, name="create"),
    path("environments/<str:env_id>/yaml/", config_views.download_yaml, name="download-yaml"),
    path("environments/<str:env_id>/yaml/preview/", config_views.yaml_preview, name="yaml-preview"),
    path("environments/<str:env_id>/yaml/apply/", config_views.yaml_apply, name="yaml-apply"),
    path("environments/<str:env_id>/variables/", config_views.variable_set, name="variable-set"),
    path("environments/<str:env_id>/variables/delete/", config_views.variable_delete, name="variable-delete"),
    path("environments/<str:env_id>/variables/restart/", config_views.variables_restart, name="variables-restart"),
    path("environments/<str:env_id>/variables/dotenv/", config_views.dotenv_preview, name="dotenv-preview"),
    path("environments/<str:env_id>/variables/dotenv/apply/", config_views.dotenv_apply, name="dotenv-apply"),
    path("environments/<str:env_id>/firewall/", config_views.firewall, name="firewall"),
    path("environments/<str:env_id>/terminal-access/", config_views.terminal_access, name="terminal-access"),
]
