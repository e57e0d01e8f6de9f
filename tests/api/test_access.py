"""The access matrix through tokens: every endpoint answers the same way as the pages do."""

from __future__ import annotations

import pytest

from api.models import ApiToken
from spaces.actions import remove_member
from spaces.models import AuditEntry
from tests.api.helpers import auth, make_deploy_key, make_service, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(main_env, owner):
    return make_service(main_env, owner)


def writes(service, env) -> list[tuple[str, str, dict]]:
    return [
        ("post", f"/api/v1/environments/{env.public_id}/services", {"name": "api", "image": "nginx:1.27", "port": 80}),
        ("post", f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}),
        ("post", f"/api/v1/services/{service.public_id}/start", {}),
        ("post", f"/api/v1/services/{service.public_id}/stop", {}),
        ("post", f"/api/v1/services/{service.public_id}/redeploy", {}),
        ("post", f"/api/v1/services/{service.public_id}/rollback", {"revision": 1}),
        ("delete", f"/api/v1/services/{service.public_id}", {}),
    ]


def reads(service, env, space) -> list[str]:
    return [
        "/api/v1/spaces",
        f"/api/v1/spaces/{space.public_id}",
        f"/api/v1/spaces/{space.public_id}/projects",
        f"/api/v1/projects/{env.project.public_id}",
        f"/api/v1/projects/{env.project.public_id}/environments",
        f"/api/v1/environments/{env.public_id}",
        f"/api/v1/environments/{env.public_id}/services",
        f"/api/v1/services/{service.public_id}",
        f"/api/v1/services/{service.public_id}/revisions",
    ]


def call(client, method: str, path: str, body: dict, headers: dict):
    return getattr(client, method)(path, body, content_type="application/json", **headers)


class TestAuthentication:
    @pytest.mark.parametrize("header", ["", "Bearer", "Token abc", "Bearer ale_short", "Bearer ale_" + "A" * 36])
    def test_it_refuses_no_or_malformed_tokens(self, client, service, header):
        response = client.get(f"/api/v1/services/{service.public_id}", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["title"] == "Not authenticated"

    def test_it_refuses_a_well_formed_unknown_token(self, client, service):
        from api.tokens import new_token

        response = client.get(f"/api/v1/services/{service.public_id}", **auth(new_token()))
        assert response.status_code == 401 and response.json()["detail"] == "This token does not exist."


class TestMatrix:
    def test_it_lets_a_member_deploy_token_do_everything_a_member_may(self, client, member, service, main_env):
        raw = make_token(member)
        response = call(client, "post", f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, auth(raw))
        assert response.status_code == 201, response.content
        assert response.json()["revision"] == 2
        service.refresh_from_db()
        assert service.image == "nginx:1.28"
        entry = AuditEntry.objects.filter(action="service.deploy").first()
        assert entry.actor_name == "member" and entry.details["token"] == "ci"

    def test_it_answers_404_to_an_outsiders_token_for_everything(self, client, outsider, service, main_env, space):
        raw = make_token(outsider)
        for path in reads(service, main_env, space)[1:]:
            response = client.get(path, **auth(raw))
            assert response.status_code == 404, path
            assert "web" not in response.content.decode()
        for method, path, body in writes(service, main_env):
            assert call(client, method, path, body, auth(raw)).status_code == 404, path
        assert client.get("/api/v1/spaces", **auth(raw)).json()[0]["name"] != space.name

    def test_it_answers_403_to_a_read_token_on_every_write(self, client, owner, service, main_env, space):
        raw = make_token(owner, permission="read")
        for path in reads(service, main_env, space):
            assert client.get(path, **auth(raw)).status_code == 200, path
        for method, path, body in writes(service, main_env):
            response = call(client, method, path, body, auth(raw))
            assert response.status_code == 403, path
            assert "may only read" in response.json()["detail"]
        service.refresh_from_db()
        assert service.image == "nginx:1.27" and service.revisions.count() == 1

    def test_it_keeps_a_deploy_key_to_its_service_deploy_and_status(self, client, owner, service, main_env, space):
        other = make_service(main_env, owner, name="other")
        raw = make_deploy_key(owner, service)
        assert client.get(f"/api/v1/services/{service.public_id}", **auth(raw)).status_code == 200
        response = call(client, "post", f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.28"}, auth(raw))
        assert response.status_code == 201
        for path in reads(service, main_env, space):
            if path != f"/api/v1/services/{service.public_id}":
                assert client.get(path, **auth(raw)).status_code == 403, path
        for method, path, body in writes(service, main_env):
            if not path.endswith("/deploy"):
                assert call(client, method, path, body, auth(raw)).status_code == 403, path
        assert call(client, "post", f"/api/v1/services/{other.public_id}/deploy", {"image": "x:1"}, auth(raw)).status_code == 403
        # Only the image (or a Git service's branch): not the rest of the spec.
        widened = call(client, "post", f"/api/v1/services/{service.public_id}/deploy", {"image": "nginx:1.29", "replicas": 9}, auth(raw))
        assert widened.status_code == 403 and "not replicas" in widened.json()["detail"]
        assert client.get(f"/api/v1/services/{other.public_id}", **auth(raw)).status_code == 403

    def test_it_keeps_a_token_to_its_spaces(self, client, owner, service, main_env, space):
        from spaces.models import Space

        default = Space.objects.get(owner=owner, is_default=True)
        raw = make_token(owner, spaces=[default])
        assert client.get(f"/api/v1/services/{service.public_id}", **auth(raw)).status_code == 404
        assert [s["name"] for s in client.get("/api/v1/spaces", **auth(raw)).json()] == [default.name]

    def test_it_refuses_a_token_whose_user_left_the_space(self, client, owner, member, service, space):
        raw = make_token(member)
        assert client.get(f"/api/v1/services/{service.public_id}", **auth(raw)).status_code == 200
        remove_member(acting_user=owner, space=space, user=member)
        assert client.get(f"/api/v1/services/{service.public_id}", **auth(raw)).status_code == 404
        key = make_deploy_key(owner, service)
        remove_member_owner = ApiToken.objects.get(service=service)
        assert remove_member_owner.user == owner and client.get(f"/api/v1/services/{service.public_id}", **auth(key)).status_code == 200

    def test_it_shows_the_audit_log_to_owners_only(self, client, owner, member, service, space):
        assert client.get(f"/api/v1/spaces/{space.public_id}/audit", **auth(make_token(member))).status_code == 403
        response = client.get(f"/api/v1/spaces/{space.public_id}/audit", **auth(make_token(owner)))
        assert response.status_code == 200
        assert response.json()[0]["summary"] == "Deployed web (revision 1)"


class TestErrors:
    def test_it_names_the_field_and_the_rule_as_the_form_does(self, client, owner, main_env):
        raw = make_token(owner)
        response = call(client, "post", f"/api/v1/environments/{main_env.public_id}/services",
                        {"name": "api", "image": "Nginx Latest", "port": 80}, auth(raw))
        assert response.status_code == 422
        assert response["Content-Type"] == "application/problem+json"
        errors = response.json()["errors"]
        assert {"field": "image", "code": "invalid", "message": "An image reference has no spaces."} in errors

    def test_it_refuses_an_unknown_field(self, client, owner, service):
        response = call(client, "post", f"/api/v1/services/{service.public_id}/deploy", {"imgae": "x:1"}, auth(make_token(owner)))
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "imgae"

    def test_it_rate_limits_each_token(self, client, owner, settings):
        settings.API_RATE_LIMIT = 2
        raw = make_token(owner)
        codes = [client.get("/api/v1/spaces", **auth(raw)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        response = client.get("/api/v1/spaces", **auth(raw))
        assert 1 <= int(response["Retry-After"]) <= 60
        assert client.get("/api/v1/spaces", **auth(make_token(owner, name="other"))).status_code == 200

    def test_it_refuses_a_body_larger_than_the_pages_accept(self, client, owner, service, settings):
        response = call(client, "post", f"/api/v1/services/{service.public_id}/deploy",
                        {"env_vars": "A=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}, auth(make_token(owner)))
        assert response.status_code == 413

    def test_it_answers_a_wrong_method_as_a_problem(self, client, owner, service):
        response = client.put(f"/api/v1/services/{service.public_id}/start", **auth(make_token(owner)))
        assert response.status_code == 405
        assert response["Content-Type"] == "application/problem+json" and response["Allow"] == "POST"

    def test_it_answers_404_to_a_nul_in_a_path(self, client, owner, django_assert_num_queries):
        raw = make_token(owner)
        # Before any query: PostgreSQL would refuse the NUL with an error.
        with django_assert_num_queries(0):
            response = client.get("/api/v1/services/ab%00cd", **auth(raw))
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"

    def test_it_serves_when_redis_is_down_without_counting(self, client, owner, settings):
        from api import limits

        limits.forget_client()
        settings.REDIS_URL = "redis://127.0.0.1:1/0"
        try:
            assert client.get("/api/v1/spaces", **auth(make_token(owner))).status_code == 200
        finally:
            limits.forget_client()


def test_it_names_the_token_on_the_audit_page(client, owner, owner_client, service, space):
    raw = make_token(owner, name="GitHub Actions")
    call(client, "post", f"/api/v1/services/{service.public_id}/stop", {}, auth(raw))
    page = owner_client.get(f"/spaces/{space.public_id}/audit/").content.decode()
    assert "via token GitHub Actions" in page
    # A request of the pages afterwards records no token it did not use.
    owner_client.post(f"/services/{service.public_id}/start/")
    assert "token" not in AuditEntry.objects.filter(action="service.start").get().details
