"""python -m devcluster --port PORT --kubeconfig PATH [--data DIR] [--pod-ready-seconds S] [--tls]
[--restricted-identity VERBS:RESOURCES ...] [--leak-mib-per-second N]
[--ingress-port PORT [--ingress-port-file PATH]] [--event-ttl DURATION] [--history-size N] [--log-level LEVEL]"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

from . import load_token, write_kubeconfig
from .authz import parse_rule
from .eventttl import DEFAULT_EVENT_TTL, parse_event_ttl
from .store import DEFAULT_HISTORY_SIZE
from .usage import LEAK_DEFAULT_MIB_PER_SECOND

# The cluster's state is tens of thousands of small dicts and lists that live long: each full
# collection walks all of them, and with the default thresholds a storm of writes set one off
# every second or so (a fifth of the process's time at 900 pods). Full collections come ten
# times less often; the young generations keep their default pace. What is created and dropped
# without a cycle (nearly everything here) is freed by reference counting anyway.
GC_THRESHOLDS = (700, 10, 100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description="A Kubernetes API emulator.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write a kubeconfig for this cluster")
    parser.add_argument("--data", type=Path, default=None, help="directory to persist state in (default: memory)")
    parser.add_argument("--pod-ready-seconds", type=float, default=1.0,
                        help="how long pods take from creation to Running")
    parser.add_argument("--bookmark-seconds", type=float, default=60.0, help="interval of watch bookmarks")
    parser.add_argument("--tls", action="store_true",
                        help="serve https with a self-signed certificate (kubectl sends tokens only over TLS)")
    parser.add_argument("--restricted-identity", action="append", metavar="VERBS:RESOURCES", type=_rule,
                        help="give the kubeconfig a second context, devcluster-restricted, whose user may only do "
                             "this (repeatable), e.g. get,list,watch:pods,pods/log,deployments.apps; "
                             "any other call is refused with 403, as RBAC refuses it")
    parser.add_argument("--leak-mib-per-second", type=float, default=LEAK_DEFAULT_MIB_PER_SECOND,
                        help="how fast the memory of images named *leak* grows until they are OOMKilled "
                             "(a container's LEAK_MIB_PER_SECOND env overrides it)")
    parser.add_argument("--ingress-port", type=int, default=None,
                        help="serve the Ingress hosts on this port of 127.0.0.1 (0 picks a free one; default: no ingress)")
    parser.add_argument("--ingress-port-file", type=Path, default=None,
                        help="write the ingress port there once it listens (for a port picked with 0)")
    parser.add_argument("--no-metrics-api", dest="metrics_api", action="store_false",
                        help="serve no metrics.k8s.io, as a cluster without metrics-server")
    parser.add_argument("--event-ttl", type=_event_ttl, default=DEFAULT_EVENT_TTL, metavar="DURATION",
                        help="how long events live after their last write, in seconds or as 1h, 30m, 90s "
                             "(default: 1h, as kube-apiserver)")
    parser.add_argument("--history-size", type=int, default=DEFAULT_HISTORY_SIZE, metavar="N",
                        help="changes kept per kind for watches to resume from; older resourceVersions get 410 Gone "
                             f"(default: {DEFAULT_HISTORY_SIZE})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def _event_ttl(spec: str) -> float:
    try:
        return parse_event_ttl(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rule(spec: str) -> str:
    try:
        parse_rule(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


async def serve(args: argparse.Namespace) -> None:
    from .server import DevServer

    token = load_token(args.data)
    restricted_token = load_token(args.data, "restricted-token") if args.restricted_identity else None
    server = DevServer(token=token, data_dir=args.data, pod_ready_seconds=args.pod_ready_seconds,
                       bookmark_seconds=args.bookmark_seconds, tls=args.tls, restricted_token=restricted_token,
                       restricted_rules=tuple(parse_rule(r) for r in args.restricted_identity or ()),
                       leak_mib_per_second=args.leak_mib_per_second, ingress_port=args.ingress_port,
                       metrics_api=args.metrics_api, event_ttl=args.event_ttl,
                       history_size=args.history_size)
    port = await server.start(args.port)
    # What is loaded by now (the API's schemas, a saved state) lives as long as the process:
    # out of the collector's way, as are objects that live long (see `main`).
    gc.collect()
    gc.freeze()
    if server.ingress is not None:
        print(f"devcluster ingress listening on http://127.0.0.1:{server.ingress.port}", flush=True)
        if args.ingress_port_file is not None:
            _write_atomically(args.ingress_port_file, f"{server.ingress.port}\n")
    url = f"{'https' if args.tls else 'http'}://127.0.0.1:{port}"
    write_kubeconfig(args.kubeconfig, url, token, server.ca_pem, restricted_token)
    print(f"devcluster listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("devcluster").info("shutting down")
    await server.stop()


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for the file: they must never see it half written.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gc.set_threshold(*GC_THRESHOLDS)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
