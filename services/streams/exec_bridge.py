"""The terminal: a shell in a container, bridged to the event loop by two threads of its own."""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from clusters.client import KubeClient
from clusters.errors import ClusterError
from clusters.exec_session import ExecSession
from services.streams.pipe import Pipe

logger = logging.getLogger(__name__)

# The shell of a terminal: bash when the image has it, sh otherwise. Chosen in the container by
# sh itself, so one exec does it; the browser never sends a command. TERM is set because exec
# sessions get none from the runtime, and full-screen programs need it. The INT trap keeps a
# Ctrl-C typed in the first milliseconds from killing the chooser (it is non-interactive); a
# caught signal goes back to its default at `exec`, so the shell gets Ctrl-C as usual.
SHELL_COMMAND = [
    "/bin/sh",
    "-c",
    "trap : INT; TERM=xterm-256color; export TERM; "
    "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi",
]


@dataclass
class Output:
    data: bytes


@dataclass
class Opened:
    pod: str
    container: str


@dataclass
class Exited:
    code: int | None
    message: str = ""
    failed: bool = False


class ExecBridge:
    """A shell in a container: a thread opens and reads the session, another writes to it.

    Writes have a thread of their own so that neither a slow send to the cluster nor the close
    handshake (up to a second) ever runs on the event loop.
    """

    READ_TIMEOUT = 0.5

    def __init__(
        self, kube: KubeClient, namespace: str, pod: str, container: str, pipe: Pipe, *, cols: int, rows: int
    ) -> None:
        self.kube, self.namespace, self.pod, self.container, self.pipe = kube, namespace, pod, container, pipe
        self._size = (cols, rows)
        self._session: ExecSession | None = None
        self._ready = threading.Event()
        self._writes: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self.reader = threading.Thread(target=self._read, name=f"ale-exec-read-{pod}", daemon=True)
        self.writer = threading.Thread(target=self._write, name=f"ale-exec-write-{pod}", daemon=True)

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.reader, self.writer]

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def write(self, data: str | bytes) -> None:
        self._writes.put(("stdin", data))

    def resize(self, cols: int, rows: int) -> None:
        self._writes.put(("resize", (cols, rows)))

    def stop(self) -> None:
        """From the loop: close the session (in the writer thread) and end both threads."""
        self._stopped.set()
        self._writes.put(None)

    def _read(self) -> None:
        try:
            self._read_session()
        except Exception:
            logger.exception("exec reader for %s/%s failed", self.namespace, self.pod)
            self.pipe.put(Exited(None, "The terminal failed.", failed=True), bounded=False)
        finally:
            self._ready.set()
            self._stopped.set()
            self._writes.put(None)

    def _read_session(self) -> None:
        try:
            session = self.kube.open_exec(self.namespace, self.pod, container=self.container, command=SHELL_COMMAND)
        except ClusterError as exc:
            self.pipe.put(Exited(None, exc.user_message, failed=True), bounded=False)
            return
        self._session = session
        self._ready.set()
        if self._stopped.is_set():
            return
        cols, rows = self._size
        try:
            session.resize(cols, rows)
        except ClusterError:
            pass
        self.pipe.put(Opened(self.pod, self.container), bounded=False)
        while not self._stopped.is_set():
            try:
                chunks = session.read(timeout=self.READ_TIMEOUT)
            except ClusterError as exc:
                if not self._stopped.is_set():
                    self.pipe.put(Exited(None, exc.user_message, failed=True), bounded=False)
                return
            for _, data in chunks:
                if not self.pipe.put(Output(data)):
                    return
            if not chunks and not session.is_open():
                if not self._stopped.is_set():
                    code = session.returncode
                    message = "" if code is not None else self._error_message(session)
                    self.pipe.put(Exited(code, message), bounded=False)
                return

    @staticmethod
    def _error_message(session: ExecSession) -> str:
        """Why a session ended without an exit status: the runtime's message on the error channel
        (the official client cannot parse a Status that is not an exit, e.g. a command that does
        not exist in the image, and gives no return code for it)."""
        # `ExecSession.read` hands out stdout and stderr only; the error channel (3) stays in the
        # official client's buffer, where this reads it.
        raw = session._ws._channels.get(3, b"")
        try:
            status = json.loads(raw)
            return str(status.get("message") or "")[:500]
        except (ValueError, TypeError, AttributeError):
            return ""

    def _write(self) -> None:
        self._ready.wait()
        while True:
            op = self._writes.get()
            session = self._session
            if op is None or session is None:
                break
            kind, value = op
            try:
                if kind == "stdin":
                    session.write_stdin(value)
                else:
                    session.resize(*value)
            except ClusterError:
                break
        if self._session is not None:
            self._session.close()
