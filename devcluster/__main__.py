"""python -m devcluster --port PORT --kubeconfig PATH [--data DIR] [--pod-ready-seconds S] [--tls]
[--ingress-port PORT [--ingress-port-file PATH]] [--log-level LEVEL]"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from . import load_token, write_kubeconfig


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
    parser.add_argument("--ingress-port", type=int, default=None,
                        help="serve the Ingress hosts on this port of 127.0.0.1 (0 picks a free one; default: no ingress)")
    parser.add_argument("--ingress-port-file", type=Path, default=None,
                        help="write the ingress port there once it listens (for a port picked with 0)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    from .server import DevServer

    token = load_token(args.data)
    server = DevServer(token=token, data_dir=args.data, pod_ready_seconds=args.pod_ready_seconds,
                       bookmark_seconds=args.bookmark_seconds, tls=args.tls, ingress_port=args.ingress_port)
    port = await server.start(args.port)
    if server.ingress is not None:
        print(f"devcluster ingress listening on http://127.0.0.1:{server.ingress.port}", flush=True)
        if args.ingress_port_file is not None:
            _write_atomically(args.ingress_port_file, f"{server.ingress.port}\n")
    url = f"{'https' if args.tls else 'http'}://127.0.0.1:{port}"
    write_kubeconfig(args.kubeconfig, url, token, server.ca_pem)
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
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
