"""A command running in a container, over the Kubernetes exec websocket."""

from __future__ import annotations

import builtins
import json
import logging
import socket

import yaml
from kubernetes.stream import ws_client

from clusters.errors import ClusterError, transport_error

logger = logging.getLogger(__name__)


class ExecSession:
    """A command running in a container, over the Kubernetes exec websocket.

    One thread calls `read()`; others may call `write_stdin()`, `resize()` and `close()`.
    """

    def __init__(self, ws: ws_client.WSClient, cluster: str, what: str) -> None:
        self._ws = ws
        self._cluster = cluster
        self._what = what
        self._closed = False
        # The WSClient copies all output into a buffer for `read_all()`; a terminal left open
        # for hours would keep every byte in memory.
        ws._all = ws_client._IgnoredIO()

    def write_stdin(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._send(ws_client.STDIN_CHANNEL, data)

    def resize(self, cols: int, rows: int) -> None:
        self._send(ws_client.RESIZE_CHANNEL, json.dumps({"Width": int(cols), "Height": int(rows)}).encode())

    def _send(self, channel: int, data: bytes) -> None:
        if self._closed:
            raise ClusterError(
                f"{self._what}: the session is closed", retryable=False, reason="Closed",
                user_message="The terminal session has ended.",
            )
        try:
            self._ws.write_channel(channel, data)
        except Exception as exc:  # websocket-client raises its own types and OSError
            raise transport_error(self._cluster, exc, what=self._what) from exc

    def read(self, timeout: float = 0) -> builtins.list[tuple[int, bytes]]:
        """Output received within `timeout` seconds, as `(channel, bytes)` (1 stdout, 2 stderr).

        Returns [] when nothing came; once the command ended, `is_open()` is False and
        `returncode` is set.
        """
        if self._closed:
            return []
        try:
            self._ws.update(timeout=timeout)
        except Exception as exc:
            if self._closed:
                return []
            self._ws._connected = False
            raise transport_error(self._cluster, exc, what=self._what) from exc
        chunks = []
        for channel in (ws_client.STDOUT_CHANNEL, ws_client.STDERR_CHANNEL):
            data = self._ws._channels.pop(channel, b"")
            if data:
                chunks.append((channel, data))
        return chunks

    def is_open(self) -> bool:
        return not self._closed and self._ws.is_open()

    @property
    def returncode(self) -> int | None:
        """The exit status once the command has ended (None while it runs, or if unknown)."""
        if self._ws.is_open():
            return None
        try:
            return self._ws.returncode
        except (TypeError, KeyError, IndexError, ValueError, yaml.YAMLError):
            return None

    def close(self) -> None:
        """End the session from any thread; idempotent.

        The close frame is sent, never waited for: the thread in `read()` may be reading the same
        socket, and two readers of one TLS stream take each other's bytes, leaving one blocked on
        a frame that will not come. Shutting the socket down then wakes that reader (closing it
        would not: a `recv` already waiting keeps waiting)."""
        if self._closed:
            return
        self._closed = True
        self._ws._connected = False
        websocket = self._ws.sock
        raw = getattr(websocket, "sock", None)
        try:
            if websocket is not None:
                websocket.send_close()
        except Exception:  # the connection may be gone already
            pass
        try:
            if raw is not None:
                raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            if websocket is not None:
                websocket.shutdown()
        except Exception:
            pass

    def __enter__(self) -> ExecSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
