"""Environment endpoints: create (empty, clone), default, delete, YAML, variables, events."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from environments.models import ClusterEvent, Environment, EnvironmentVariable
from spaces.models import AuditEntry
from tests.api.helpers import auth, make_service, make_token

pytestmark = pytest.mark.django_db


def send(client, method: str, path: str, body: dict | None, raw: str, **headers):
    data = json.dumps(body) if body is not None else ""
    return getattr(client, method)(path, data, content_type="application/json", **auth(raw), **headers)


class TestEnvironments:
    def test_it_creates_an_empty_environment_once_per_key(self, client, owner, project):
        raw = make_token(owner)
        body = {"name": "qa", "cluster": "local"}
        first = send(client, "post", f"/api/v1/projects/{project.public_id}/environments", body, raw, HTTP_IDEMPOTENCY_KEY="k1")
        again = send(client, "post", f"/api/v1/projects/{project.public_id}/environments", body, raw, HTTP_IDEMPOTENCY_KEY="k1")
        assert first.status_code == again.status_code == 201, first.content
        assert first.json() == again.json() and first.json()["name"] == "qa"
        assert project.environments.filter(name="qa").count() == 1
        assert AuditEntry.objects.get(action="environment.create", environment_name="qa").details["token"] == "ci"

    def test_it_clones_with_the_services_stopped(self, client, owner, project, main_env):
        make_service(main_env, owner)
        response = send(client, "post", f"/api/v1/projects/{project.public_id}/environments",
                        {"name": "qa", "cluster": "local", "source": main_env.public_id}, make_token(owner))
        assert response.status_code == 201
        clone = Environment.objects.get(public_id=response.json()["id"])
        assert [(s.name, s.desired_state) for s in clone.services.all()] == [("web", "stopped")]

    def test_it_refuses_a_taken_name_and_an_unknown_cluster_as_the_form_does(self, client, owner, project):
        raw = make_token(owner)
        taken = send(client, "post", f"/api/v1/projects/{project.public_id}/environments", {"name": "Main", "cluster": "local"}, raw)
        assert taken.status_code == 422 and taken.json()["errors"][0]["field"] == "name"
        unknown = send(client, "post", f"/api/v1/projects/{project.public_id}/environments", {"name": "qa", "cluster": "nope"}, raw)
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "cluster"

    def test_it_sets_the_default_and_deletes(self, client, owner, project, main_env):
        raw = make_token(owner)
        qa = send(client, "post", f"/api/v1/projects/{project.public_id}/environments", {"name": "qa", "cluster": "local"}, raw).json()
        assert send(client, "post", f"/api/v1/environments/{qa['id']}/default", None, raw).json()["is_default"] is True
        assert send(client, "delete", f"/api/v1/environments/{qa['id']}", None, raw).status_code == 204
        assert client.get(f"/api/v1/environments/{qa['id']}", **auth(raw)).status_code == 404
        project.refresh_from_db()
        assert project.default_environment == main_env

    def test_it_refuses_a_read_token_and_an_outsider(self, client, owner, outsider, project, main_env):
        body = {"name": "qa", "cluster": "local"}
        assert send(client, "post", f"/api/v1/projects/{project.public_id}/environments", body, make_token(owner, permission="read")).status_code == 403
        assert send(client, "post", f"/api/v1/projects/{project.public_id}/environments", body, make_token(outsider)).status_code == 404
        assert send(client, "delete", f"/api/v1/environments/{main_env.public_id}", None, make_token(outsider)).status_code == 404
        assert send(client, "delete", f"/api/v1/environments/{main_env.public_id}", None, make_token(owner, permission="read", name="r")).status_code == 403


class TestYaml:
    def test_it_exports_previews_and_applies(self, client, owner, main_env):
        make_service(main_env, owner)
        raw = make_token(owner)
        document = client.get(f"/api/v1/environments/{main_env.public_id}/yaml", **auth(raw)).json()["yaml"]
        assert "web" in document and "nginx:1.27" in document
        changed = document.replace("nginx:1.27", "nginx:1.28")
        preview = send(client, "post", f"/api/v1/environments/{main_env.public_id}/yaml/preview", {"yaml": changed}, raw).json()
        assert [(s["name"], s["action"]) for s in preview["services"]] == [("web", "change")]
        applied = send(client, "post", f"/api/v1/environments/{main_env.public_id}/yaml/apply", {"yaml": changed}, raw).json()
        assert applied["changed"] == ["web"]

    def test_it_names_what_is_wrong_in_a_file(self, client, owner, main_env):
        response = send(client, "post", f"/api/v1/environments/{main_env.public_id}/yaml/preview", {"yaml": "services: [1"}, make_token(owner))
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "yaml"

    def test_it_refuses_a_file_over_1_mib(self, client, owner, main_env):
        response = send(client, "post", f"/api/v1/environments/{main_env.public_id}/yaml/preview",
                        {"yaml": "#" * (1024 * 1024 + 1)}, make_token(owner))
        assert response.status_code == 413


class TestVariables:
    def test_it_sets_lists_and_deletes_with_secrets_write_only(self, client, owner, main_env):
        raw = make_token(owner)
        base = f"/api/v1/environments/{main_env.public_id}/variables"
        assert send(client, "put", f"{base}/DATABASE_URL", {"value": "postgres://secret"}, raw).json() == {"key": "DATABASE_URL", "created": True}
        assert send(client, "put", f"{base}/LOG_LEVEL", {"value": "debug", "is_secret": False}, raw).status_code == 200
        listed = client.get(base, **auth(raw))
        assert "postgres://secret" not in listed.content.decode()
        assert [(v["key"], v["value"]) for v in listed.json()] == [("DATABASE_URL", None), ("LOG_LEVEL", "debug")]
        assert send(client, "delete", f"{base}/LOG_LEVEL", None, raw).status_code == 204
        assert send(client, "delete", f"{base}/LOG_LEVEL", None, raw).status_code == 404
        assert list(EnvironmentVariable.objects.values_list("key", flat=True)) == ["DATABASE_URL"]

    def test_it_names_a_bad_key_as_the_form_does(self, client, owner, main_env):
        response = send(client, "put", f"/api/v1/environments/{main_env.public_id}/variables/1BAD", {"value": "x"}, make_token(owner))
        assert response.status_code == 422
        assert response.json()["errors"][0] == {"field": "key", "code": "invalid",
                                                "message": "Use letters, digits and underscores, not starting with a digit."}


class TestEvents:
    @pytest.mark.parametrize("count", [1, 5])
    def test_it_lists_events_in_constant_queries(self, client, owner, main_env, count, django_assert_num_queries):
        service = make_service(main_env, owner)
        now = timezone.now()
        for index in range(count):
            ClusterEvent.objects.create(environment=main_env, service=service, uid=f"u{index}", type="Warning", reason="BackOff",
                                        message="Back-off restarting", involved_kind="Pod", involved_name=f"web-{index}",
                                        first_seen=now, last_seen=now)
        raw = make_token(owner)
        client.get("/api/v1/spaces", **auth(raw))
        with django_assert_num_queries(3):
            response = client.get(f"/api/v1/environments/{main_env.public_id}/events", **auth(raw))
        assert len(response.json()) == count and response.json()[0]["service"] == service.public_id

    @pytest.mark.parametrize("count", [1, 5])
    def test_it_lists_variables_in_constant_queries(self, client, owner, main_env, count, django_assert_num_queries):
        raw = make_token(owner)
        for index in range(count):
            send(client, "put", f"/api/v1/environments/{main_env.public_id}/variables/K{index}", {"value": "v", "is_secret": False}, raw)
        with django_assert_num_queries(3):
            assert len(client.get(f"/api/v1/environments/{main_env.public_id}/variables", **auth(raw)).json()) == count
