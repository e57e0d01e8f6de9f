from __future__ import annotations

from django.urls import path

from environments import views

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
]
