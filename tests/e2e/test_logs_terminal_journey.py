"""Browser journeys: follow a service's logs (search, download, hostile lines), open a terminal."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import Page, expect

from tests.e2e.steps import assert_accessible, sign_in
from tests.fixtures.devcluster import start_devcluster_process, stop_process

pytestmark = pytest.mark.e2e

HOSTILE = "<script>window.pwned=1</script>\x1b[2J\x1b]0;pwned-title\x07\x1b]52;c;cHduZWQ=\x07\x1b[31mred\x1b[0m"

SETUP = """
import json, time
from clusters.client import client_for
from clusters.models import Cluster
from environments.manifests import render_environment
from services.manifests import render_service
from services.models import Service
from spaces.actions import create_project
from spaces.models import Space
from tests.factories import PASSWORD, make_user

user = make_user("streamer")
space = Space.objects.get(owner=user, is_default=True)
project = create_project(acting_user=user, space=space, name="streams", display_name="Streams", cluster=Cluster.objects.get(name="local"))
env = project.environments.get()
kube = client_for(env.cluster)
services = {}
for name, image, variables in (("app", "loggen:1", {"LOG_RATE": "20"}), ("busy", "busybox:1", {"EVIL": %r}),
                                ("fast", "loggen:1", {"LOG_RATE": "50000"})):
    service = Service.objects.create(environment=env, name=name, image=image, port=8080,
                                     env_vars=[{"name": k, "value": v} for k, v in variables.items()])
    kube.apply(render_environment(env) + render_service(service))
    services[name] = service.public_id
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    pods, _ = kube.list("v1", "Pod", namespace=env.namespace)
    if len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods):
        break
    time.sleep(0.1)
print(json.dumps({"username": "streamer", "password": PASSWORD, "env": env.public_id, **services}))
""" % HOSTILE


@pytest.fixture(scope="module")
def streams_world(ale_server) -> Iterator[dict[str, str]]:
    """A devcluster where the server's `local` cluster looks for it, and a user with three
    running services (a slow log, a hostile one, a fast one)."""
    workdir = Path(ale_server.var_dir) / "devcluster"
    started = None
    if not (workdir / "kubeconfig").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        started, _ = start_devcluster_process(workdir)
        ale_server.processes.append(started)
    try:
        yield json.loads(ale_server.manage("shell", "-c", SETUP).strip().splitlines()[-1])
    finally:
        if started is not None:
            stop_process(started)
            ale_server.processes.remove(started)


def sign_in_to_streams(page: Page, ale_server, world: dict[str, str]) -> None:
    sign_in(page, ale_server.url(""), world["username"], world["password"])
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def highest_seq(page: Page) -> int:
    texts = page.locator(".log-row .log-text").all_text_contents()
    return max((int(m.group(1)) for t in texts if (m := re.search(r"seq=(\d+)", t))), default=-1)


def test_logs_arrive_live_and_can_be_searched_and_downloaded(page: Page, ale_server, streams_world):
    sign_in_to_streams(page, ale_server, streams_world)
    page.goto(ale_server.url(f"/environments/{streams_world['env']}/"))
    page.locator(f"#service-{streams_world['app']}").get_by_role("link", name="Log view").click()
    expect(page).to_have_url(re.compile(rf"/services/{streams_world['app']}/logs/$"))

    rows = page.locator(".log-row")
    expect(rows.first).to_contain_text("loggen seq=")
    expect(page.locator("[data-role=status]")).to_have_text("Streaming.")
    seen = highest_seq(page)
    page.wait_for_function(
        "seen => [...document.querySelectorAll('.log-row')].some(r => /seq=(\\d+)/.test(r.textContent) && +r.textContent.match(/seq=(\\d+)/)[1] > seen)",
        arg=seen,
    )
    expect(page.locator("select[name=container]")).to_have_value("app")
    assert_accessible(page, "the Log view")

    # Search: hits are counted and highlighted; next moves to another one.
    page.get_by_label("Search the logs").fill("cache refreshed")
    counter = page.locator("[data-role=matches]")
    # The newest hit is selected; lines that keep arriving add hits after it, not before.
    expect(counter).to_have_text(re.compile(r"^\d+ / \d+$"))
    expect(page.locator(".log-row mark.is-current")).to_have_text("cache refreshed")
    current = int(counter.text_content().split(" / ")[0])
    assert current >= 1
    page.get_by_role("button", name="Previous match").click()
    if current > 1:
        expect(counter).to_have_text(re.compile(rf"^{current - 1} / \d+$"))

    # Timestamps on: the download carries the same options.
    page.get_by_label("Timestamps").check()
    expect(page.locator(".log-ts").first).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT"))
    with page.expect_download() as info:
        page.locator("[data-role=download]").click()
    download = info.value
    assert re.fullmatch(r"app-latest-\d{8}-\d{6}\.log", download.suggested_filename)
    lines = Path(download.path()).read_text().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\S+Z loggen seq=\d+", line) for line in lines)


# Run in the page: for `ms` milliseconds, at every animation frame, how many log rows are inside
# the view's box and how many lines the viewer has dropped so far (it drops only once full).
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
    const bottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 2 * 19;
    frames.push({ visible, bottom, dropped: dropped.hidden ? 0 : +dropped.textContent.split(" ")[0].replace(/\\D/g, "") });
    if (now < end) requestAnimationFrame(sample); else resolve(frames);
  }
  requestAnimationFrame(sample);
})
"""


def test_following_a_fast_log_with_a_full_buffer_never_draws_an_empty_frame(page: Page, ale_server, streams_world):
    sign_in_to_streams(page, ale_server, streams_world)
    page.goto(ale_server.url(f"/services/{streams_world['fast']}/logs/"))
    # 50,000 lines a second: the viewer's buffer fills and it starts dropping the oldest lines.
    expect(page.locator("[data-role=dropped]")).to_be_visible(timeout=60_000)

    frames = page.evaluate(SAMPLE_FRAMES, 3000)

    trims = len({f["dropped"] for f in frames})
    assert trims >= 3, f"the buffer was trimmed only {trims - 1} times while frames were sampled: {frames[-1]}"
    empty = [i for i, f in enumerate(frames) if f["visible"] == 0]
    assert not empty, f"{len(empty)} of {len(frames)} frames showed no log rows (frames {empty[:10]})"
    assert all(f["bottom"] for f in frames), "the view stopped following the newest lines"


def test_a_hostile_log_line_renders_inert(page: Page, ale_server, streams_world):
    sign_in_to_streams(page, ale_server, streams_world)
    page.goto(ale_server.url(f"/services/{streams_world['busy']}/logs/"))
    title = page.title()
    row = page.locator(".log-row", has_text="config EVIL=")
    expect(row).to_contain_text("config EVIL=<script>window.pwned=1</script>red")
    # Red stays red; the markup stayed text, the title and the screen were not touched.
    expect(row.locator(".ansi-fg-c1", has_text="red")).to_be_visible()
    assert page.locator(".log-view script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.title() == title
    assert "\x1b" not in row.text_content() and "pwned-title" not in row.text_content()


def test_a_terminal_runs_commands_and_follows_the_window_size(page: Page, ale_server, streams_world):
    sign_in_to_streams(page, ale_server, streams_world)
    page.goto(ale_server.url(f"/environments/{streams_world['env']}/"))
    page.locator(f"#service-{streams_world['app']}").get_by_role("link", name="Terminal").click()
    expect(page).to_have_url(re.compile(rf"/services/{streams_world['app']}/terminal/$"))
    expect(page.locator("[data-role=status]")).to_contain_text("Connected to")
    # The frame wears the environment's colour (main's grey) and name.
    expect(page.locator(".terminal-frame")).to_have_css("border-top-color", "rgb(154, 163, 175)")
    expect(page.locator(".terminal-frame-label")).to_contain_text("main")
    assert_accessible(page, "the Terminal")

    screen = page.locator(".xterm-rows")
    page.locator(".terminal-host").click()
    page.keyboard.type("echo hello-$((40+2))")
    page.keyboard.press("Enter")
    expect(screen).to_contain_text("hello-42")

    page.keyboard.type("stty size")
    page.keyboard.press("Enter")
    expect(screen).to_contain_text(re.compile(r"\n?\d+ \d+"))
    before = page.evaluate("document.querySelector('.xterm-rows').textContent")
    first = re.findall(r"(?<![\d-])(\d{2,3}) (\d{2,3})(?!\d)", before)[-1]

    page.set_viewport_size({"width": 900, "height": 600})
    # The resize travels browser → server → pty while the command is typed: ask again, as a
    # person would, until the shell reports the new size.
    for attempt in range(10):
        page.keyboard.type("clear; stty size")
        page.keyboard.press("Enter")
        try:
            page.wait_for_function(
                "first => { const m = [...document.querySelector('.xterm-rows').textContent.matchAll(/(?<![\\d-])(\\d{2,3}) (\\d{2,3})(?!\\d)/g)]; "
                "return m.length && m[m.length - 1][0] !== first; }",
                arg=" ".join(first),
                timeout=1500,
            )
            break
        except PlaywrightTimeoutError:
            continue
    after = re.findall(
        r"(?<![\d-])(\d{2,3}) (\d{2,3})(?!\d)", page.evaluate("document.querySelector('.xterm-rows').textContent")
    )[-1]
    assert int(after[0]) < int(first[0]) and int(after[1]) < int(first[1])

    # Ctrl-C reaches the program; the shell survives it.
    page.keyboard.type("sleep 30")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    page.keyboard.press("Control+C")
    page.keyboard.type("echo back-$((1+1))")
    page.keyboard.press("Enter")
    expect(screen).to_contain_text("back-2", timeout=3000)

    page.keyboard.type("exit 0")
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=status]")).to_contain_text("The shell exited (status 0)")


def test_a_paste_over_the_terminals_limit_closes_it_with_the_reason(page: Page, ale_server, streams_world):
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in_to_streams(page, ale_server, streams_world)
    page.goto(ale_server.url(f"/services/{streams_world['app']}/terminal/"))
    status = page.locator("[data-role=status]")
    expect(status).to_contain_text("Connected to")
    page.locator(".terminal-host").click()

    # One paste over 256 KiB: the server refuses it in one frame, and the page says why.
    page.keyboard.insert_text("x" * 300_000)

    expect(status).to_have_text("The input was over 256 KiB at once; the terminal was closed.")
    page.get_by_role("button", name="Open a new shell").click()
    expect(status).to_contain_text("Connected to")
    assert not errors, errors
