"""Websocket routes of environments."""

from __future__ import annotations

from django.urls import path

from environments.consumers import EnvironmentConsumer

websocket_urlpatterns = [
    path("ws/environments/<str:public_id>/", EnvironmentConsumer.as_asgi()),
]
