from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from api import tokens
from api.actions import create_token
from api.models import ApiToken
from tests.api.helpers import auth, make_token

pytestmark = pytest.mark.django_db


class TestFormat:
    def test_it_makes_prefixed_tokens_with_a_valid_checksum(self):
        raw = tokens.new_token()
        assert raw.startswith("ale_") and len(raw) == tokens.TOKEN_LENGTH
        assert tokens.is_well_formed(raw)

    def test_it_refuses_a_typo_by_its_checksum(self):
        raw = tokens.new_token()
        typo = raw[:10] + ("a" if raw[10] != "a" else "b") + raw[11:]
        assert not tokens.is_well_formed(typo)
        assert not tokens.is_well_formed(raw[:-1])
        assert not tokens.is_well_formed("ghp_" + raw[4:])


class TestStorage:
    def test_it_stores_only_a_hash(self, owner):
        token, raw = create_token(owner, name="ci", permission="read", spaces=None)
        token.refresh_from_db()
        assert raw not in str(token.__dict__)
        assert token.token_hash == tokens.hash_token(raw)
        assert token.expires_at - timezone.now() > timedelta(days=89)

    def test_it_refuses_a_malformed_token_without_a_query(self, client, owner, django_assert_num_queries):
        with django_assert_num_queries(0):
            response = client.get("/api/v1/spaces", **auth("ale_" + "x" * 36))
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
        assert "copied whole" in response.json()["detail"]

    def test_it_updates_last_used_at_most_once_a_minute(self, client, owner):
        raw = make_token(owner)
        client.get("/api/v1/spaces", **auth(raw))
        first = ApiToken.objects.get().last_used_at
        assert first is not None
        client.get("/api/v1/spaces", **auth(raw))
        assert ApiToken.objects.get().last_used_at == first
        ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
        client.get("/api/v1/spaces", **auth(raw))
        assert ApiToken.objects.get().last_used_at > first


class TestTokensPage:
    def test_it_creates_a_token_shown_once(self, owner_client, owner):
        response = owner_client.post(
            "/account/api-tokens/", {"name": "GitHub Actions", "permission": "deploy", "all_spaces": "on", "expires_in_days": "30"}
        )
        assert response.status_code == 302
        shown = owner_client.get("/account/api-tokens/")
        raw = shown.context["new_token"]
        assert raw.startswith("ale_") and raw in shown.content.decode()
        assert ApiToken.objects.get().token_hash == tokens.hash_token(raw)
        # Shown once: a reload shows the list without it.
        page = owner_client.get("/account/api-tokens/").content.decode()
        assert "GitHub Actions" in page and raw not in page and "all spaces" in page

    def test_it_scopes_a_token_to_chosen_spaces(self, owner_client, owner, space, client):
        response = owner_client.post("/account/api-tokens/", {"name": "team only", "permission": "read",
                                                               "spaces": [space.public_id], "expires_in_days": "7"})
        assert response.status_code == 302
        raw = owner_client.get("/account/api-tokens/").context["new_token"]
        assert [s["name"] for s in client.get("/api/v1/spaces", **auth(raw)).json()] == ["team"]
        token = ApiToken.objects.get()
        assert not token.all_spaces and token.permission == "read"
        assert 6 <= (token.expires_at - timezone.now()).days <= 7

    def test_it_names_a_missing_scope(self, owner_client):
        response = owner_client.post("/account/api-tokens/", {"name": "x", "permission": "read", "expires_in_days": "30"})
        assert response.status_code == 422
        assert "Choose at least one space, or all of them." in response.content.decode()

    def test_it_revokes_in_one_click(self, owner_client, owner, client):
        raw = make_token(owner)
        token = ApiToken.objects.get()
        response = owner_client.post(f"/account/api-tokens/{token.public_id}/revoke/")
        assert response.status_code == 302
        answer = client.get("/api/v1/spaces", **auth(raw))
        assert answer.status_code == 401 and answer.json()["detail"] == "This token was revoked."

    def test_it_refuses_another_users_revoke(self, outsider_client, owner):
        make_token(owner)
        token = ApiToken.objects.get()
        assert outsider_client.post(f"/account/api-tokens/{token.public_id}/revoke/").status_code == 404
        assert outsider_client.get(f"/account/api-tokens/{token.public_id}/revoke/").status_code == 405
        token.refresh_from_db()
        assert token.revoked_at is None

    def test_it_links_tokens_from_the_user_menu(self, owner_client, space):
        assert 'href="/account/api-tokens/"' in owner_client.get(f"/spaces/{space.public_id}/").content.decode()

    def test_it_makes_a_deploy_key_from_the_service_page(self, member_client, outsider_client, main_env, owner):
        from tests.api.helpers import make_service

        service = make_service(main_env, owner)
        assert f"/services/{service.public_id}/deploy-keys/" in member_client.get(f"/services/{service.public_id}/").content.decode()
        response = member_client.post(f"/services/{service.public_id}/deploy-keys/", {"name": "ci", "expires_in_days": "90"})
        assert response.status_code == 302
        shown = member_client.get(response["Location"])
        key = ApiToken.objects.get()
        assert key.service == service and tokens.hash_token(shown.context["new_token"]) == key.token_hash
        # The page sits inside the space: its sidebar lists the space's projects.
        assert "No projects yet" not in shown.content.decode()
        assert f">{main_env.project.name}</a>" in shown.content.decode()
        assert outsider_client.post(f"/services/{service.public_id}/deploy-keys/", {"name": "x", "expires_in_days": "9"}).status_code == 404

    def test_it_expires(self, client, owner):
        raw = make_token(owner)
        ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        response = client.get("/api/v1/spaces", **auth(raw))
        assert response.status_code == 401 and response.json()["detail"] == "This token has expired."
