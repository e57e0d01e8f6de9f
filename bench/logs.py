"""Log streaming: ale's socket against the official client alone, on the same pod log.

    python bench/logs.py [--lines 100000] [--rounds 9] [--frame-seconds 5]

A `loggen` pod prints a burst of --lines lines. The official client reads that log (follow,
all lines) and so does a websocket client through ale (tail=all, acknowledging as the viewer
does), alternately, --rounds times each; the median rates are compared (a round takes a
tenth of a second, so a few of them are always caught by whatever else the machine is doing).
Then a second loggen pod starts, printing 1000 lines/s: the socket follows it for 3 s and the
latency of each line is its arrival time minus its Kubernetes timestamp. Last, Chromium opens
the Log view of loggen pods printing 10k, 50k and 200k lines/s, waits until the viewer's buffer
is full (it drops lines), and counts, over --frame-seconds, the animation frames that showed no
row inside the view while it followed (0 skips this part). Prints one JSON line:

{"lines", "direct_lines_per_s", "socket_lines_per_s", "ratio", "lost", "p50_latency_ms",
 "empty_frame_share": {"<lines/s>": share of frames with no row, ...}, "frames": {...}, "trims": {...}}

Numbers only: it never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from datetime import datetime, timezone

from streams_harness import emit, percentile, start

SEQ = re.compile(rb"loggen seq=(\d+)")
FRAME_RATES = (10_000, 50_000, 200_000)
CHROMIUM = os.environ.get("ALE_CHROMIUM", "/usr/bin/chromium")

# Run in the page (as the Log view's browser test does): at every animation frame for `ms`
# milliseconds, the log rows inside the view's box and how many lines the viewer has dropped.
SAMPLE_FRAMES = """
ms => new Promise(resolve => {
  const view = document.querySelector("[data-role=view]");
  const dropped = document.querySelector("[data-role=dropped]");
  const frames = [];
  const end = performance.now() + ms;
  function sample(now) {
    const box = view.getBoundingClientRect();
    let visible = 0;
    for (const row of view.querySelectorAll(".log-row")) {
      const r = row.getBoundingClientRect();
      if (r.bottom > box.top && r.top < box.bottom) visible++;
    }
    frames.push([visible, dropped.textContent.split(" ")[0]]);
    if (now < end) requestAnimationFrame(sample); else resolve(frames);
  }
  requestAnimationFrame(sample);
})
"""


def direct_rate(world, pod: str, lines: int) -> float:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(world.kubeconfig)))
    started = time.perf_counter()
    response = api.read_namespaced_pod_log(pod, world.namespace, follow=True, timestamps=True, _preload_content=False)
    count = 0
    for chunk in response.stream(64 * 1024):
        count += chunk.count(b"\n")
        if count >= lines:
            break
    elapsed = time.perf_counter() - started
    # Closed, not handed back to the pool: a followed log left open would stay a follower on
    # the cluster for the rest of the run.
    response.close()
    api.api_client.close()
    return lines / elapsed


async def socket_rate(world, service: str, lines: int) -> tuple[float, int]:
    import aiohttp

    # Cheap on this side, as the direct reader is: a batch is checked by its first and last
    # sequence numbers and its length (contiguous, in order), not line by line.
    received, expected = 0, 0
    async with aiohttp.ClientSession(headers=world.headers()) as session:
        started = time.perf_counter()
        async with session.ws_connect(f"{world.ws_base}/ws/services/{service}/logs/?tail=all", max_msg_size=0) as ws:
            async for frame in ws:
                message = json.loads(frame.data)
                if message["t"] != "lines":
                    continue
                await ws.send_str(json.dumps({"t": "ack", "seq": message["seq"]}))
                batch = message["lines"]
                first, last = SEQ.search(batch[0].encode()), SEQ.search(batch[-1].encode())
                if first and last and int(first.group(1)) == expected and int(last.group(1)) == expected + len(batch) - 1:
                    received += len(batch)
                expected = int(last.group(1)) + 1 if last else expected
                if expected >= lines:
                    break
        elapsed = time.perf_counter() - started
    return received / elapsed, lines - received


def _ts(stamp: str) -> float:
    base, _, frac = stamp.rstrip("Z").partition(".")
    moment = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return moment + float("0." + (frac or "0"))


async def latencies(world, service: str, seconds: float) -> list[float]:
    import aiohttp

    found: list[float] = []
    async with aiohttp.ClientSession(headers=world.headers()) as session:
        async with session.ws_connect(f"{world.ws_base}/ws/services/{service}/logs/?tail=0") as ws:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    frame = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                arrived = time.time()
                message = json.loads(frame.data)
                if message["t"] == "lines":
                    found += [(arrived - _ts(line.split(" ", 1)[0])) * 1000 for line in message["lines"]]
                    await ws.send_str(json.dumps({"t": "ack", "seq": message["seq"]}))
    return found


def empty_frames(world, seconds: float) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
    """Per rate: the share of frames the following Log view drew with no row, how many frames
    and how many trims of its buffer they saw (each trim used to draw an empty frame)."""
    from playwright.sync_api import sync_playwright

    world.run_services({f"fast{rate}": ("loggen:1", {"LOG_RATE": str(rate)}, 1) for rate in FRAME_RATES})
    shares, counts, trims = {}, {}, {}
    name, value = world.cookie.split("=", 1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_cookies([{"name": name, "value": value, "url": world.base}])
            for rate in FRAME_RATES:
                page = context.new_page()
                page.goto(f"{world.base}/services/{world.services[f'fast{rate}']}/logs/")
                # Full: the viewer has started dropping its oldest lines.
                page.locator("[data-role=dropped]").wait_for(state="visible", timeout=120_000)
                frames = page.evaluate(SAMPLE_FRAMES, seconds * 1000)
                shares[str(rate)] = round(sum(1 for rows, _ in frames if rows == 0) / len(frames), 3)
                counts[str(rate)] = len(frames)
                trims[str(rate)] = len({dropped for _, dropped in frames}) - 1
                page.close()
        finally:
            browser.close()
    return shares, counts, trims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--frame-seconds", type=float, default=5.0)
    options = parser.parse_args()

    world = start({"burst": ("loggen:1", {"LOG_RATE": "200000", "LOG_COUNT": str(options.lines)}, 1)},
                  pages=options.frame_seconds > 0)
    try:
        from clusters.client import KubeClient
        from clusters.labels import selector_for_service

        kube = KubeClient.from_kubeconfig(world.kubeconfig.read_text())
        pods, _ = kube.list("v1", "Pod", namespace=world.namespace, label_selector=selector_for_service(world.services["burst"]))
        pod = pods[0]["metadata"]["name"]
        time.sleep(options.lines / 200_000 + 0.5)  # the whole burst is in the log

        direct, via_socket, lost = [], [], 0
        for _ in range(options.rounds):
            direct.append(direct_rate(world, pod, options.lines))
            rate, missing = asyncio.run(socket_rate(world, world.services["burst"], options.lines))
            via_socket.append(rate)
            lost = max(lost, missing)
        # Started only now: while the rates are compared, nothing else prints on the cluster,
        # which here shares this machine's cores with ale and both readers.
        world.run_services({"steady": ("loggen:1", {"LOG_RATE": "1000"}, 1)})
        lags = asyncio.run(latencies(world, world.services["steady"], 3.0))
        a, b = statistics.median(direct), statistics.median(via_socket)
        result = {
            "lines": options.lines,
            "direct_lines_per_s": a,
            "socket_lines_per_s": b,
            "ratio": b / a,
            "lost": lost,
            "p50_latency_ms": percentile(lags, 50),
        }
        if options.frame_seconds > 0:
            result["empty_frame_share"], result["frames"], result["trims"] = empty_frames(world, options.frame_seconds)
        emit(result)
    finally:
        world.close()


if __name__ == "__main__":
    main()
