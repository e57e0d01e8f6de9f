"""Service endpoints: deploy, idempotency, deploy-and-wait, and query counts of the lists."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from services.models import Service
from tests.api.helpers import auth, make_service, make_token

pytestmark = pytest.mark.django_db


def post(client, path: str, body: dict, raw: str, **headers):
    return client.post(path, json.dumps(body), content_type="application/json", **auth(raw), **headers)


class TestDeploy:
    def test_it_creates_a_service_with_the_modals_defaults(self, client, owner, main_env):
        raw = make_token(owner)
        response = post(client, f"/api/v1/environments/{main_env.public_id}/services", {"name": "api", "image": "nginx:1.27"}, raw)
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["revision"] == 1
        assert body["service"]["port"] == 8080 and body["service"]["cpu"] == "0.25" and body["service"]["status"] == "deploying"
        assert Service.objects.get(public_id=body["service"]["id"]).memory_mib == 256

    def test_it_refuses_a_duplicate_name_as_the_modal_does(self, client, owner, main_env):
        make_service(main_env, owner, name="api")
        response = post(client, f"/api/v1/environments/{main_env.public_id}/services", {"name": "api", "image": "nginx:1.27"},
                        make_token(owner))
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"

    def test_it_changes_only_the_fields_given(self, client, owner, main_env):
        service = make_service(main_env, owner, env_vars="A=1", replicas="2")
        response = post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, make_token(owner))
        assert response.status_code == 201
        service.refresh_from_db()
        assert service.image == "nginx:1.28" and service.replicas == 2 and service.env_vars == [{"name": "A", "value": "1"}]

    def test_it_deploys_once_for_one_idempotency_key(self, client, owner, main_env):
        service = make_service(main_env, owner)
        raw = make_token(owner)
        first = post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, raw, HTTP_IDEMPOTENCY_KEY="build-42")
        again = post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, raw, HTTP_IDEMPOTENCY_KEY="build-42")
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json() and again["Idempotent-Replayed"] == "true"
        assert service.revisions.count() == 2
        other = post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.29"}, raw, HTTP_IDEMPOTENCY_KEY="build-42")
        assert other.status_code == 422 and "different request" in other.json()["detail"]
        assert post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, raw).json()["revision"] == 3
        # A day later the key is forgotten: the same key deploys again.
        from api.models import IdempotentResponse

        IdempotentResponse.objects.update(created_at=timezone.now() - timedelta(days=2))
        later = post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, raw, HTTP_IDEMPOTENCY_KEY="build-42")
        assert later.json()["revision"] == 4 and IdempotentResponse.objects.count() == 1

    def test_it_redeploys_once_for_one_idempotency_key(self, client, owner, main_env):
        service = make_service(main_env, owner)
        raw = make_token(owner)
        for _ in range(2):
            response = post(client, f"/api/v1/services/{service.public_id}/redeploy", {}, raw, HTTP_IDEMPOTENCY_KEY="r1")
            assert response.status_code == 200 and response.json()["revision"] == 2
        assert service.revisions.count() == 2

    def test_it_rolls_back_and_lists_revisions(self, client, owner, main_env):
        service = make_service(main_env, owner)
        raw = make_token(owner)
        post(client, f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, raw)
        response = post(client, f"/api/v1/services/{service.public_id}/rollback", {"revision": 1}, raw)
        assert response.status_code == 201 and response.json()["revision"] == 3
        revisions = client.get(f"/api/v1/services/{service.public_id}/revisions", **auth(raw)).json()
        assert [(r["number"], r["cause"], r["image"]) for r in revisions] == [
            (3, "rollback", "nginx:1.27"), (2, "deploy", "nginx:1.28"), (1, "deploy", "nginx:1.27")
        ]
        assert post(client, f"/api/v1/services/{service.public_id}/rollback", {"revision": 9}, raw).status_code == 422

    def test_it_stops_starts_and_deletes(self, client, owner, main_env):
        service = make_service(main_env, owner)
        raw = make_token(owner)
        assert post(client, f"/api/v1/services/{service.public_id}/stop", {}, raw).json()["desired_state"] == "stopped"
        assert post(client, f"/api/v1/services/{service.public_id}/start", {}, raw).json()["desired_state"] == "running"
        assert client.delete(f"/api/v1/services/{service.public_id}", **auth(raw)).json()["status"] == "deleting"
        refused = post(client, f"/api/v1/services/{service.public_id}/start", {}, raw)
        assert refused.status_code == 422 and refused.json()["detail"] == "This service is being deleted."


class TestWait:
    def test_it_answers_running_once_the_revision_runs(self, client, owner, main_env):
        service = make_service(main_env, owner)
        Service.objects.filter(pk=service.pk).update(status="running", status_changed_at=timezone.now() - timedelta(minutes=1))
        body = client.get(f"/api/v1/services/{service.public_id}?wait_for_revision=1&timeout=5", **auth(make_token(owner))).json()
        assert body["wait"] == {"revision": 1, "outcome": "running", "reason": ""}

    def test_it_answers_the_cards_reason_on_failure(self, client, owner, main_env):
        service = make_service(main_env, owner)
        Service.objects.filter(pk=service.pk).update(status="failed", status_reason="The container keeps crashing (3 restarts).")
        body = client.get(f"/api/v1/services/{service.public_id}?wait_for_revision=1&timeout=5", **auth(make_token(owner))).json()
        assert body["wait"]["outcome"] == "failed" and "keeps crashing" in body["wait"]["reason"]

    def test_it_waits_for_running_to_hold(self, client, owner, main_env, settings):
        # A crashing container is ready for a moment: that moment is not "running".
        settings.API_WAIT_SETTLE_SECONDS = 30
        service = make_service(main_env, owner)
        Service.objects.filter(pk=service.pk).update(status="running", status_changed_at=timezone.now())
        body = client.get(f"/api/v1/services/{service.public_id}?wait_for_revision=1&timeout=0.6", **auth(make_token(owner))).json()
        assert body["wait"]["outcome"] == "timeout" and body["status"] == "running"

    def test_it_times_out(self, client, owner, main_env):
        service = make_service(main_env, owner)
        body = client.get(f"/api/v1/services/{service.public_id}?wait_for_revision=1&timeout=0.6", **auth(make_token(owner))).json()
        assert body["wait"]["outcome"] == "timeout" and body["status"] == "deploying"

    @pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "99999"])
    def test_it_refuses_a_timeout_it_could_never_reach(self, client, owner, main_env, timeout):
        service = make_service(main_env, owner)
        response = client.get(f"/api/v1/services/{service.public_id}?wait_for_revision=1&timeout={timeout}", **auth(make_token(owner)))
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "timeout"

    def test_it_refuses_an_unknown_revision(self, client, owner, main_env):
        service = make_service(main_env, owner)
        response = client.get(f"/api/v1/services/{service.public_id}?wait_for_revision=7", **auth(make_token(owner)))
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "wait_for_revision"


class TestQueryCounts:
    @pytest.mark.parametrize("count", [1, 6])
    def test_it_lists_services_in_constant_queries(self, client, owner, main_env, count, django_assert_num_queries):
        for index in range(count):
            make_service(main_env, owner, name=f"s{index}")
        raw = make_token(owner)
        # token, last used, environment, services
        with django_assert_num_queries(4):
            response = client.get(f"/api/v1/environments/{main_env.public_id}/services", **auth(raw))
        assert len(response.json()) == count

    @pytest.mark.parametrize("extra", [0, 5])
    def test_it_lists_revisions_spaces_projects_environments_in_constant_queries(
        self, client, owner, main_env, project, space, extra, django_assert_num_queries
    ):
        from tests.factories import make_environment, make_project, make_space

        service = make_service(main_env, owner)
        for index in range(extra):
            make_space(owner=owner, name=f"more-{index}")
            make_project(space, by=owner, name=f"more{index}")
            make_environment(project, by=owner, name=f"env{index}")
            post(client, f"/api/v1/services/{service.public_id}/redeploy", {}, make_token(owner, name=f"t{index}"))
        raw = make_token(owner)
        client.get("/api/v1/spaces", **auth(raw))  # last used written once: counts below are reads
        for path, queries in [
            ("/api/v1/spaces", 3),
            (f"/api/v1/spaces/{space.public_id}/projects", 3),
            (f"/api/v1/projects/{project.public_id}/environments", 3),
            (f"/api/v1/services/{service.public_id}/revisions", 3),
            (f"/api/v1/spaces/{space.public_id}/audit", 4),
        ]:
            with django_assert_num_queries(queries):
                assert client.get(path, **auth(raw)).status_code == 200, path


class TestDocument:
    def test_it_serves_an_openapi_3_1_document(self, client):
        def no_duplicates(pairs):
            keys = [key for key, _ in pairs]
            assert len(keys) == len(set(keys)), f"duplicated keys in {keys}"
            return dict(pairs)

        document = json.loads(client.get("/api/v1/openapi.json").content, object_pairs_hook=no_duplicates)
        assert "text/plain" in document["paths"]["/api/v1/services/{service_id}/logs"]["get"]["responses"]["200"]["content"]
        assert document["openapi"].startswith("3.1")
        assert "/api/v1/services/{service_id}/deploy" in document["paths"]
        assert document["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"

    def test_it_serves_the_docs_page_without_a_cdn(self, client):
        page = client.get("/api/v1/docs").content.decode()
        assert "/static/ninja/swagger-ui-bundle.js" in page
        assert "cdn" not in page.lower()


class TestPages:
    def test_it_pages_the_service_list(self, client, owner, main_env):
        for name in ("a", "b", "c"):
            make_service(main_env, owner, name=name)
        raw = make_token(owner)
        first = client.get(f"/api/v1/environments/{main_env.public_id}/services?limit=2", **auth(raw))
        assert [s["name"] for s in first.json()] == ["a", "b"]
        assert first["Link"] == f'</api/v1/environments/{main_env.public_id}/services?limit=2&offset=2>; rel="next"'
        last = client.get(f"/api/v1/environments/{main_env.public_id}/services?limit=2&offset=2", **auth(raw))
        assert [s["name"] for s in last.json()] == ["c"] and "Link" not in last
        refused = client.get(f"/api/v1/environments/{main_env.public_id}/services?limit=0", **auth(raw))
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "limit"
