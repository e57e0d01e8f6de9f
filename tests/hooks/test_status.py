"""Commit statuses, posted to a local stand-in for each Git host's API that checks the
request's method, path, authentication and body as the real APIs expect them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hooks import actions, status
from hooks.models import CommitStatus
from hooks.tasks import report_commit_statuses
from services.models import Build
from tests.hooks import examples as ex
from tests.hooks.test_deliveries import deliver, deploy

TOKEN = "ghp_standin_token"
SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


class StandIn:
    """Answers 201 to a well-formed status request and 401/422 otherwise, like the hosts."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                code = outer.answer or outer.check(self.path, self.headers, body)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def check(path: str, headers: Any, body: dict[str, Any]) -> int:
        if headers.get("Content-Type") != "application/json":
            return 415
        if path.startswith("/api/v4/projects/"):  # GitLab
            if headers.get("PRIVATE-TOKEN") != TOKEN:
                return 401
            return 201 if body.get("state") in {"pending", "running", "success", "failed", "canceled"} and body.get("name") else 422
        auth = headers.get("Authorization", "")
        if auth not in (f"Bearer {TOKEN}", f"token {TOKEN}"):
            return 401
        return 201 if body.get("state") in {"pending", "success", "error", "failure"} and body.get("context") else 422


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


@pytest.mark.parametrize(
    ("provider", "base", "repository", "path", "auth"),
    [
        ("github", "", "Codertocat/Hello-World", f"/repos/Codertocat/Hello-World/statuses/{SHA}", ("Authorization", f"Bearer {TOKEN}")),
        ("gitea", "/api/v1", "gitea/webhooks", f"/api/v1/repos/gitea/webhooks/statuses/{SHA}", ("Authorization", f"token {TOKEN}")),
        ("gitlab", "/api/v4", "mike/diaspora", f"/api/v4/projects/mike%2Fdiaspora/statuses/{SHA}", ("Private-Token", TOKEN)),
    ],
)
def test_each_hosts_status_request_has_the_shape_its_api_expects(standin, provider, base, repository, path, auth):
    request = status.build_request(provider, standin.url + base, TOKEN, repository, SHA, "success", "Built", "http://shop.localtest.me")
    status.send(request)
    (seen,) = standin.requests
    assert seen["path"] == path
    assert seen["headers"][auth[0]] == auth[1]
    expected_state = "success"
    assert seen["body"]["state"] == expected_state and seen["body"]["target_url"] == "http://shop.localtest.me"
    failed = status.build_request(provider, standin.url + base, TOKEN, repository, SHA, "failure", "Failed", "")
    status.send(failed)
    assert standin.requests[-1]["body"]["state"] == ("failed" if provider == "gitlab" else "failure")


def test_a_refused_token_is_a_permanent_error_and_an_outage_a_passing_one(standin):
    request = status.build_request("github", standin.url, "wrong", "a/b", SHA, "pending", "Building", "")
    with pytest.raises(status.StatusError) as refused:
        status.send(request)
    assert not refused.value.retryable and "401" in str(refused.value)
    standin.answer = 503
    with pytest.raises(status.StatusError) as outage:
        status.send(status.build_request("github", standin.url, TOKEN, "a/b", SHA, "pending", "Building", ""))
    assert outage.value.retryable


@pytest.mark.django_db
def test_a_pushed_build_reports_pending_then_its_result(standin, main_env, owner, project):
    main_env.cluster.registry = "registry.local:5000/ale"
    main_env.cluster.save()
    shop = deploy(main_env, owner)
    actions.set_host_token(acting_user=owner, project=project, token=TOKEN, api_url=standin.url)
    hook = actions.ensure_hook(project)
    deliver(hook, "push", ex.github_push(branch="master"))
    row = CommitStatus.objects.get()
    assert (row.repository_key, row.sha) == ("codertocat/hello-world", SHA)

    assert report_commit_statuses() == 1
    assert standin.requests[-1]["body"]["state"] == "pending"
    assert report_commit_statuses() == 0  # nothing new to say

    build = shop.builds.order_by("-number").first()
    Build.objects.filter(pk=build.pk).update(status=Build.Status.SUCCEEDED)
    assert report_commit_statuses() == 1
    seen = standin.requests[-1]
    assert seen["path"] == f"/repos/codertocat/hello-world/statuses/{SHA}"
    assert seen["body"]["state"] == "success" and seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    row.refresh_from_db()
    assert row.reported_state == "success"


@pytest.mark.django_db
def test_without_a_token_nothing_is_tracked(main_env, owner, project):
    main_env.cluster.registry = "registry.local:5000/ale"
    main_env.cluster.save()
    deploy(main_env, owner)
    deliver(actions.ensure_hook(project), "push", ex.github_push(branch="master"))
    assert not CommitStatus.objects.exists()
