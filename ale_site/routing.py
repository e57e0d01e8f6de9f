"""Websocket routes of every app, gathered under `ws/`."""

from __future__ import annotations

from environments.routing import websocket_urlpatterns as environment_patterns
from services.routing import websocket_urlpatterns as service_patterns

websocket_urlpatterns: list = [*environment_patterns, *service_patterns]
