from __future__ import annotations

from django.urls import path

from hooks import views

app_name = "hooks"

urlpatterns = [
    path("hooks/<str:hook_id>/", views.receive, name="receive"),
    path("environments/<str:env_id>/hook/", views.section, name="section"),
    path("environments/<str:env_id>/hook/rotate/", views.rotate, name="rotate"),
    path("environments/<str:env_id>/hook/previews/", views.previews, name="previews"),
    path("environments/<str:env_id>/hook/token/", views.host_token, name="host-token"),
]
