from __future__ import annotations

from django.urls import path

from spaces import views

app_name = "spaces"

urlpatterns = [
    path("spaces/<str:space_id>/", views.space_detail, name="detail"),
    path("spaces/<str:space_id>/projects/new/", views.project_create, name="project-create"),
    path("projects/<str:project_id>/", views.project_detail, name="project-detail"),
    path("@<str:space_name>/<str:project_name>/", views.project_alias, name="project-alias"),
]
