"""Websocket routes of services: the log viewer and the terminal."""

from __future__ import annotations

from django.urls import path

from services.consumers import LogConsumer, TerminalConsumer

websocket_urlpatterns = [
    path("ws/services/<str:public_id>/logs/", LogConsumer.as_asgi()),
    path("ws/services/<str:public_id>/terminal/", TerminalConsumer.as_asgi()),
]
