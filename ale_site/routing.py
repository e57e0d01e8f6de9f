"""Websocket routes of every app, gathered under `ws/`."""

from __future__ import annotations

websocket_urlpatterns: list = []
