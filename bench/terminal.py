"""Keystroke echo through ale's terminal socket against the official client's exec alone.

    python bench/terminal.py [--keys 200]

A shell runs in a devcluster pod. --keys single keystrokes are typed, one at a time, each
timed until the shell's echo of it comes back: first straight through the official client's
exec stream, then through ale's websocket. Prints one JSON line:

{"direct_echo_p50_ms", "socket_echo_p50_ms", "overhead_p50_ms"}

Numbers only: it never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from streams_harness import emit, percentile, start

KEY = "x"
# Readline's kill-line (Ctrl-U): keeps the typed line short so that each echo is one byte.
KILL_EVERY = 40


def direct_echoes(world, pod: str, keys: int) -> list[float]:
    from clusters.client import KubeClient
    from services.streams.exec_bridge import SHELL_COMMAND

    kube = KubeClient.from_kubeconfig(world.kubeconfig.read_text())
    session = kube.open_exec(world.namespace, pod, command=SHELL_COMMAND)
    try:
        _drain(session, 1.0)
        times = []
        for i in range(keys):
            if i and i % KILL_EVERY == 0:
                session.write_stdin("\x15")
                _drain(session, 0.1)
            started = time.perf_counter()
            session.write_stdin(KEY)
            got = b""
            while KEY.encode() not in got:
                for _, data in session.read(timeout=1):
                    got += data
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        session.close()


def _drain(session, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        session.read(timeout=0.05)


async def socket_echoes(world, service: str, keys: int) -> list[float]:
    import aiohttp

    async with aiohttp.ClientSession(headers=world.headers()) as session:
        async with session.ws_connect(f"{world.ws_base}/ws/services/{service}/terminal/?cols=120&rows=40") as ws:
            received = 0

            async def drain(seconds: float) -> None:
                nonlocal received
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    try:
                        frame = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        return
                    if frame.type == aiohttp.WSMsgType.BINARY:
                        received += len(frame.data)
                        await ws.send_str(json.dumps({"t": "ack", "seq": received}))

            await drain(1.5)
            times = []
            for i in range(keys):
                if i and i % KILL_EVERY == 0:
                    await ws.send_str(json.dumps({"t": "in", "d": "\x15"}))
                    await drain(0.1)
                started = time.perf_counter()
                await ws.send_str(json.dumps({"t": "in", "d": KEY}))
                while True:
                    frame = await ws.receive(timeout=5)
                    if frame.type == aiohttp.WSMsgType.BINARY:
                        received += len(frame.data)
                        if KEY.encode() in frame.data:
                            break
                times.append((time.perf_counter() - started) * 1000)
                await ws.send_str(json.dumps({"t": "ack", "seq": received}))
            return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=200)
    options = parser.parse_args()

    world = start({"shell": ("python:3.12", {}, 1)})
    try:
        from clusters.client import KubeClient

        kube = KubeClient.from_kubeconfig(world.kubeconfig.read_text())
        pods, _ = kube.list("v1", "Pod", namespace=world.namespace)
        pod = pods[0]["metadata"]["name"]
        direct = percentile(direct_echoes(world, pod, options.keys), 50)
        via_socket = percentile(asyncio.run(socket_echoes(world, world.services["shell"], options.keys)), 50)
        emit({"direct_echo_p50_ms": direct, "socket_echo_p50_ms": via_socket, "overhead_p50_ms": via_socket - direct})
    finally:
        world.close()


if __name__ == "__main__":
    main()
