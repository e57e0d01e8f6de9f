"""Many log sockets on one server process: memory, event loop lag, errors.

    python bench/streams.py --idle 300 --active 50 [--seconds 20]

One ale server process (daphne) holds --idle sockets following a quiet pod (a heartbeat every
2 s) and --active sockets following a loggen pod at 100 lines/s, all acknowledging as the
viewer does. Once all are connected, it watches for --seconds: the server's RSS at the end, the
99th percentile of its event loop lag (sampled every 20 ms inside the server), and the errors
(sockets refused or closed, error statuses, gaps in the active sockets' line numbers). Prints:

{"idle", "active", "rss_mb", "loop_lag_p99_ms", "errors", "active_lines_per_s"}

Numbers only: it never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import psutil

from streams_harness import emit, percentile, start

SEQ = re.compile(r"loggen seq=(\d+)")


class Counters:
    def __init__(self) -> None:
        self.errors = 0
        self.lines = 0
        self.connected = 0


async def follow(
    session, url: str, counters: Counters, stop: asyncio.Event, opening: asyncio.Semaphore, *, active: bool
) -> None:
    import aiohttp

    try:
        # A few handshakes at a time, as browsers arriving over a few seconds would: a burst of
        # hundreds at once overflows the listen backlog, which is not what this measures.
        await opening.acquire()
        try:
            ws = await session.ws_connect(url, heartbeat=None)
        finally:
            opening.release()
        async with ws:
            counters.connected += 1
            expected = None
            while not stop.is_set():
                try:
                    frame = await ws.receive(timeout=1)
                except asyncio.TimeoutError:
                    continue
                if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    if not counters.errors:
                        print(f"first close: {frame!r}", file=sys.stderr)
                    counters.errors += 1
                    return
                message = json.loads(frame.data)
                if message["t"] == "lines":
                    await ws.send_str(json.dumps({"t": "ack", "seq": message["seq"]}))
                    if active:
                        for line in message["lines"]:
                            match = SEQ.search(line)
                            if match:
                                seq = int(match.group(1))
                                if expected is not None and seq != expected:
                                    counters.errors += 1
                                expected = seq + 1
                                counters.lines += 1
                elif message["t"] == "status" and message["state"] == "error":
                    if not counters.errors:
                        print(f"first error status: {message!r}", file=sys.stderr)
                    counters.errors += 1
                elif message["t"] == "ping":
                    await ws.send_str('{"t":"pong"}')
    except (aiohttp.ClientError, OSError) as exc:
        if not counters.errors:
            print(f"first error: {exc!r}", file=sys.stderr)
        counters.errors += 1


async def run(world, idle: int, active: int, seconds: float) -> dict:
    import aiohttp

    counters = Counters()
    stop = asyncio.Event()
    opening = asyncio.Semaphore(10)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=world.headers(), connector=connector) as session:
        tasks = []
        quiet = f"{world.ws_base}/ws/services/{world.services['quiet']}/logs/?tail=10"
        busy = f"{world.ws_base}/ws/services/{world.services['busy']}/logs/?tail=0"
        for i in range(idle + active):
            is_active = i >= idle
            tasks.append(asyncio.create_task(follow(session, busy if is_active else quiet, counters, stop, opening, active=is_active)))
        deadline = time.monotonic() + 60
        while counters.connected + counters.errors < idle + active and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # readers opened, tails sent
        lines_before, since = counters.lines, time.time()
        await asyncio.sleep(seconds)
        lags = world.lags_since(since)
        rss = psutil.Process(world.server.pid).memory_info().rss / (1024 * 1024)
        rate = (counters.lines - lines_before) / seconds / max(1, active)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "idle": idle,
        "active": active,
        "rss_mb": rss,
        "loop_lag_p99_ms": percentile(lags, 99),
        "errors": counters.errors + (idle + active - counters.connected),
        "active_lines_per_s": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--active", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    options = parser.parse_args()

    world = start({"quiet": ("busybox:1", {}, 1), "busy": ("loggen:1", {"LOG_RATE": "100"}, 1)})
    try:
        emit(asyncio.run(run(world, options.idle, options.active, options.seconds)))
    finally:
        world.close()


if __name__ == "__main__":
    main()
