from __future__ import annotations

from django.urls import path

from services import stream_views, views

app_name = "services"

urlpatterns = [
    path("environments/<str:env_id>/services/new/", views.deploy, name="deploy"),
    path("environments/<str:env_id>/start-all/", views.start_all, name="start-all"),
    path("environments/<str:env_id>/stop-all/", views.stop_all, name="stop-all"),
    path("services/<str:service_id>/", views.detail, name="detail"),
    path("services/<str:service_id>/metrics/", views.metrics_tab, name="metrics"),
    path("services/<str:service_id>/edit/", views.edit, name="edit"),
    path("services/<str:service_id>/start/", views.start, name="start"),
    path("services/<str:service_id>/stop/", views.stop, name="stop"),
    path("services/<str:service_id>/redeploy/", views.redeploy, name="redeploy"),
    path("services/<str:service_id>/delete/", views.delete, name="delete"),
    path("services/<str:service_id>/revisions/<int:number>/rollback/", views.rollback, name="rollback"),
    # Log view and Terminal.
    path("services/<str:service_id>/logs/", stream_views.logs, name="logs"),
    path("services/<str:service_id>/logs/download/", stream_views.download_logs, name="logs-download"),
    path("services/<str:service_id>/terminal/", stream_views.terminal, name="terminal"),
]
