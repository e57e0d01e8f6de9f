from __future__ import annotations

from django.urls import path

from environments import compare_views

app_name = "compare"

urlpatterns = [
    path("environments/<str:env_id>/compare/", compare_views.page, name="page"),
    path("environments/<str:env_id>/promote/<str:other_id>/", compare_views.promote_view, name="promote"),
]
