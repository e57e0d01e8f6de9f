"""The log download (streamed, with the viewer's options), and the Log view and Terminal pages.
The environment's terminal access setting is tested with the other settings
(tests/environments/test_environment_settings.py)."""

from __future__ import annotations

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.urls import reverse

from environments.models import Environment
from services.models import Service
from spaces.actions import create_project
from tests.services.stream_helpers import delete_namespace, pods_of, run_service

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("streams_cleaned_up"),
]

SEQ = re.compile(r"loggen seq=(\d+)")


@pytest.fixture
def env(kube_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="dl", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    yield environment
    delete_namespace(environment)


def download_url(service: Service, **query: str) -> str:
    qs = "&".join(f"{key}={value}" for key, value in query.items())
    return reverse("services:logs-download", args=[service.public_id]) + (f"?{qs}" if qs else "")


async def fetch(user, url: str):
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    response = await client.get(url)
    body = b"".join([chunk async for chunk in response.streaming_content]) if response.streaming else response.content
    return response, body.decode()


async def test_it_streams_the_tail_as_a_text_file(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "5000", "LOG_COUNT": "2000"})
    await asyncio.sleep(0.6)
    response, text = await fetch(member, download_url(service, tail="100"))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="app-latest-\d{8}-\d{6}\.log"', response["Content-Disposition"])
    lines = text.splitlines()
    assert [int(SEQ.search(line).group(1)) for line in lines] == list(range(1900, 2000))
    assert not re.match(r"\d{4}-\d\d-\d\dT", lines[0])


async def test_it_takes_the_viewers_options(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "5000", "LOG_COUNT": "50"}, replicas=2)
    await asyncio.sleep(0.3)
    response, text = await fetch(member, download_url(service, pod="*", tail="all", timestamps="1"))
    assert "all-pods" in response["Content-Disposition"]
    lines = text.splitlines()
    assert len(lines) == 100
    pods = [pod["metadata"]["name"] for pod in await sync_to_async(pods_of)(service)]
    for pod in pods:
        suffix = pod.rsplit("-", 1)[1]
        mine = [line for line in lines if line.startswith(f"[{suffix}] ")]
        assert len(mine) == 50 and all(f"pod={pod}" in line for line in mine)
        assert all(re.match(rf"\[{suffix}\] \d{{4}}-\d\d-\d\dT\S+Z loggen", line) for line in mine)


async def test_colours_and_control_sequences_are_not_in_the_file(env, member):
    hostile = "\x1b[31mred\x1b[0m \x1b]0;pwned\x07\x1b[2J<b>bold</b>"
    service = await sync_to_async(run_service)(env, image="busybox:1", env={"EVIL": hostile})
    await asyncio.sleep(0.5)
    _, text = await fetch(member, download_url(service, tail="all"))
    line = next(line for line in text.splitlines() if "config EVIL=" in line)
    assert line.endswith("config EVIL=red <b>bold</b>")
    assert "\x1b" not in text


async def test_a_pod_of_another_service_is_not_found(env, member):
    service = await sync_to_async(run_service)(env)
    other = await sync_to_async(run_service)(env, name="other")
    other_pod = (await sync_to_async(pods_of)(other))[0]["metadata"]["name"]
    response, _ = await fetch(member, download_url(service, pod=other_pod))
    assert response.status_code == 404


async def test_an_outsider_gets_404_and_an_anonymous_visitor_the_login_page(env, outsider):
    service = await sync_to_async(Service.objects.create)(environment=env, name="web", image="nginx", port=80)
    response, _ = await fetch(outsider, download_url(service))
    assert response.status_code == 404
    response = await AsyncClient().get(download_url(service))
    assert response.status_code == 302 and "/login/" in response["Location"]
    response = await AsyncClient().post(download_url(service))
    assert response.status_code in (302, 405)


# --- the pages -------------------------------------------------------------------------------------


@pytest.fixture
def service(main_env) -> Service:
    return Service.objects.create(environment=main_env, name="web", image="nginx:1.27", port=80)


def test_it_shows_the_log_view_to_a_member(member_client, service, django_assert_max_num_queries):
    # Nine: the ninth is the out-of-memory explanation (services/_oom_notice.html).
    with django_assert_max_num_queries(9):
        response = member_client.get(reverse("services:logs", args=[service.public_id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-ws-path="/ws/services/{service.public_id}/logs/"' in html
    assert reverse("services:logs-download", args=[service.public_id]) in html
    assert 'name="previous"' in html and 'name="timestamps"' in html and 'name="search"' in html


def test_the_terminal_page_wears_the_environments_colour(owner, member_client, project, service):
    from tests.factories import make_environment

    staging = make_environment(project, by=owner, name="production")
    prod_service = Service.objects.create(environment=staging, name="api", image="python:3.12", port=80)
    response = member_client.get(reverse("services:terminal", args=[prod_service.public_id]))
    html = response.content.decode()
    assert response.status_code == 200
    assert f"--env-color: {staging.color}" in html and "<strong>production</strong>" in html
    assert "vendor/xterm/xterm.js" in html


def test_outsiders_and_the_wrong_method_are_refused(outsider_client, member_client, service):
    for name in ("logs", "terminal", "logs-download"):
        assert outsider_client.get(reverse(f"services:{name}", args=[service.public_id])).status_code == 404
    assert member_client.post(reverse("services:logs", args=[service.public_id])).status_code == 405


def test_owners_only_shows_members_why_there_is_no_terminal(member_client, owner_client, main_env, service):
    main_env.terminal_access = Environment.TerminalAccess.OWNERS_ONLY
    main_env.save()
    response = member_client.get(reverse("services:terminal", args=[service.public_id]))
    assert response.status_code == 403 and b"only the space's owners may open a terminal" in response.content
    assert b"data-terminal" not in response.content
    assert owner_client.get(reverse("services:terminal", args=[service.public_id])).status_code == 200
