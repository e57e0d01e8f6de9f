"""devcluster: a Kubernetes API emulator for ale's embedded default and its tests.

Embed it in a test process::

    with DevCluster(pod_ready_seconds=0.2) as dc:
        dc.write_kubeconfig(path)
        dc.faults.throttle(retry_after=1, count=2)
        dc.writes.clear(); ...; assert not dc.writes.log()

or run it as a program: ``python -m devcluster --port 0 --kubeconfig PATH``.
"""
from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

from .authz import parse_rule
from .eventttl import DEFAULT_EVENT_TTL, parse_event_ttl
from .faults import Faults, Writes
from .store import DEFAULT_HISTORY_SIZE

__all__ = ["DevCluster", "RESTRICTED_CONTEXT", "write_kubeconfig", "load_token"]


RESTRICTED_CONTEXT = "devcluster-restricted"


def kubeconfig_text(url: str, token: str, ca_pem: bytes | None = None, restricted_token: str | None = None) -> str:
    """A kubeconfig for the admin; with `restricted_token`, also the `devcluster-restricted` context."""
    ca = f"    certificate-authority-data: {base64.b64encode(ca_pem).decode()}\n" if ca_pem else ""
    restricted_context = restricted_user = ""
    if restricted_token:
        restricted_context = (f"- name: {RESTRICTED_CONTEXT}\n  context:\n    cluster: devcluster\n"
                              f"    user: {RESTRICTED_CONTEXT}\n    namespace: default\n")
        restricted_user = f"- name: {RESTRICTED_CONTEXT}\n  user:\n    token: {restricted_token}\n"
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: devcluster\n"
        "  cluster:\n"
        f"{ca}"
        f"    server: {url}\n"
        "contexts:\n"
        "- name: devcluster\n"
        "  context:\n"
        "    cluster: devcluster\n"
        "    user: devcluster\n"
        "    namespace: default\n"
        f"{restricted_context}"
        "current-context: devcluster\n"
        "preferences: {}\n"
        "users:\n"
        "- name: devcluster\n"
        "  user:\n"
        f"    token: {token}\n"
        f"{restricted_user}"
    )


def write_kubeconfig(path: str | os.PathLike[str], url: str, token: str, ca_pem: bytes | None = None,
                     restricted_token: str | None = None) -> Path:
    """Write atomically (temp file + rename) so readers never see half a kubeconfig."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".kubeconfig-")
    with os.fdopen(fd, "w") as f:
        f.write(kubeconfig_text(url, token, ca_pem, restricted_token))
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target


def load_token(data_dir: Path | None, name: str = "token") -> str:
    """A bearer token, kept in the data directory so restarts keep existing kubeconfigs valid."""
    if data_dir is None:
        return secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.write_text(token)
    os.chmod(path, 0o600)
    return token


class DevCluster:
    """The devcluster running in a background thread with its own event loop."""

    def __init__(self, *, port: int = 0, data_dir: str | os.PathLike[str] | None = None,
                 pod_ready_seconds: float = 1.0, bookmark_seconds: float = 60.0, history_size: int = DEFAULT_HISTORY_SIZE,
                 backoff_seconds: float | None = None, token: str | None = None, tls: bool = False,
                 restricted_identity: list[str] | None = None, leak_mib_per_second: float | None = None,
                 ingress_port: int | None = None, metrics_api: bool = True,
                 event_ttl: float | str = DEFAULT_EVENT_TTL):
        """`restricted_identity`: rules (`get,list:pods`, see authz.parse_rule) of a second user, whose
        token `restricted_token` holds and whose context `write_kubeconfig` adds. `event_ttl`: how
        long events live after their last write, in seconds or as a duration like "1h"."""
        self._port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self.token = token or load_token(self._data_dir)
        self.restricted_token = load_token(self._data_dir, "restricted-token") if restricted_identity else None
        self._options: dict[str, Any] = {"pod_ready_seconds": pod_ready_seconds, "bookmark_seconds": bookmark_seconds,
                                         "history_size": history_size, "backoff_base": backoff_seconds,
                                         "tls": tls, "restricted_token": self.restricted_token,
                                         "restricted_rules": tuple(parse_rule(r) for r in restricted_identity or ()),
                                         "ingress_port": ingress_port, "event_ttl": parse_event_ttl(event_ttl)}
        if leak_mib_per_second is not None:
            self._options["leak_mib_per_second"] = leak_mib_per_second
        if not metrics_api:
            self._options["metrics_api"] = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._options["tls"] else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ingress_url(self) -> str:
        """Where the emulated ingress controller listens (`ingress_port` given), else ""."""
        ingress = self._server.ingress if self._server is not None else None
        return f"http://127.0.0.1:{ingress.port}" if ingress is not None else ""

    @property
    def faults(self) -> Faults:
        assert self._server is not None, "DevCluster is not started"
        return self._server.faults

    @property
    def writes(self) -> Writes:
        """The log of write requests (POST, PUT, PATCH, DELETE) the cluster received."""
        assert self._server is not None, "DevCluster is not started"
        return self._server.writes

    @property
    def server(self) -> Any:
        """The DevServer (for emulator tests that need its store or controllers)."""
        return self._server

    def start(self) -> DevCluster:
        self._thread = threading.Thread(target=self._run, name="devcluster", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("devcluster failed to start") from self._error
        if not self._ready.is_set():
            raise RuntimeError("devcluster did not start within 30 s")
        return self

    def _run(self) -> None:
        from .server import DevServer

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = DevServer(token=self.token, data_dir=self._data_dir, **self._options)
            self.port = loop.run_until_complete(self._server.start(self._port))
        except BaseException as exc:  # surfaced to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._server.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the server's loop and return its result (store access from tests)."""
        assert self._loop is not None

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        return write_kubeconfig(path, self.url, self.token, self._server.ca_pem if self._server else None,
                                self.restricted_token)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._thread = None

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
