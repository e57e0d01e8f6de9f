"""Inviting: someone with an account joins at once; anyone else gets a single-use link that
expires, lets them sign up and join, and stops working when revoked."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from spaces.models import AuditEntry, Invitation, Membership, Space
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def invite_url(space: Space) -> str:
    return reverse("spaces:invite", args=[space.public_id])


def link_in(message) -> str:
    [path] = re.findall(r"http://testserver(/invitations/[^/\s]+/)", message.body)
    return path


@pytest.fixture
def send_invitation(django_capture_on_commit_callbacks):
    def send(owner_client, space, email: str = "new@example.com", role: str = "member") -> str:
        # The e-mail goes once the invitation is committed.
        with django_capture_on_commit_callbacks(execute=True):
            response = owner_client.post(invite_url(space), {"who": email, "role": role})
        assert response.status_code == 302
        return link_in(mail.outbox[-1])

    return send


class TestExistingUsers:
    def test_it_adds_a_user_by_username_at_once(self, owner_client, space, outsider):
        response = owner_client.post(invite_url(space), {"who": "outsider", "role": "member"})
        assert response.status_code == 302
        assert Membership.objects.get(space=space, user=outsider).role == "member"
        assert mail.outbox == []
        assert AuditEntry.objects.filter(space=space, action="member.add").exists()

    def test_it_adds_a_user_by_email_at_once_with_the_role(self, owner_client, space, outsider):
        owner_client.post(invite_url(space), {"who": "OUTSIDER@example.com", "role": "owner"})
        assert Membership.objects.get(space=space, user=outsider).role == "owner"

    def test_it_says_when_the_user_is_already_in(self, owner_client, space):
        response = owner_client.post(invite_url(space), {"who": "member", "role": "owner"})
        assert response.status_code == 422
        assert "member is already in this space." in response.content.decode()
        assert Membership.objects.get(space=space, user__username="member").role == "member"


class TestBadInput:
    def test_it_refuses_a_username_nobody_has(self, owner_client, space):
        response = owner_client.post(invite_url(space), {"who": "nobody", "role": "member"})
        assert response.status_code == 422
        assert "Nobody has the username nobody" in response.content.decode()
        assert not Invitation.objects.exists()

    @pytest.mark.parametrize("data", [{"who": "", "role": "member"}, {"who": "x@example.com", "role": "admin"}, {}])
    def test_it_refuses_missing_or_bad_fields(self, owner_client, space, data):
        assert owner_client.post(invite_url(space), data).status_code == 422
        assert not Invitation.objects.exists()

    def test_it_forbids_a_member(self, member_client, space):
        assert member_client.post(invite_url(space), {"who": "new@example.com", "role": "member"}).status_code == 403
        assert not Invitation.objects.exists() and mail.outbox == []

    def test_it_hides_the_space_from_an_outsider(self, outsider_client, space):
        assert outsider_client.post(invite_url(space), {"who": "new@example.com", "role": "owner"}).status_code == 404

    def test_it_refuses_get(self, owner_client, space):
        assert owner_client.get(invite_url(space)).status_code == 405


class TestNewUsers:
    def test_it_mails_a_link_and_keeps_only_its_hash(self, send_invitation, owner_client, space):
        path = send_invitation(owner_client, space)
        [message] = mail.outbox
        assert message.to == ["new@example.com"]
        assert "team" in message.subject
        token = path.split("/")[2]
        invitation = Invitation.objects.get()
        assert token not in invitation.token_hash and len(invitation.token_hash) == 64
        assert invitation.expires_at - timezone.now() > timedelta(days=6, hours=23)

    def test_it_lets_a_visitor_sign_up_and_join(self, send_invitation, owner_client, client, space):
        path = send_invitation(owner_client, space, role="owner")
        page = client.get(path)
        assert page.status_code == 200
        assert 'value="new@example.com"' in page.content.decode()
        response = client.post(
            path,
            {"username": "newbie", "email": "new@example.com", "password1": "a long passphrase 42", "password2": "a long passphrase 42"},
        )
        assert response.status_code == 302
        assert response.url == reverse("spaces:detail", args=[space.public_id])
        newbie = get_user_model().objects.get(username="newbie")
        assert Membership.objects.get(space=space, user=newbie).role == "owner"
        # With a default space of their own, like every user.
        assert Space.objects.filter(owner=newbie, is_default=True).exists()
        assert client.get(response.url).status_code == 200

    def test_it_keeps_the_visitor_on_the_form_when_signup_is_invalid(self, send_invitation, owner_client, client, space):
        path = send_invitation(owner_client, space)
        response = client.post(path, {"username": "", "email": "new@example.com", "password1": "x", "password2": "y"})
        assert response.status_code == 422
        assert not get_user_model().objects.filter(email="new@example.com").exists()
        assert Invitation.objects.get().accepted_at is None

    def test_it_lets_a_signed_in_user_accept(self, send_invitation, owner_client, space):
        path = send_invitation(owner_client, space)
        someone = make_user("someone")
        from django.test import Client

        browser = Client()
        browser.force_login(someone)
        page = browser.get(path)
        assert "Accept and join team" in page.content.decode()
        assert browser.post(path).status_code == 302
        assert Membership.objects.filter(space=space, user=someone).exists()

    def test_it_is_single_use(self, send_invitation, owner_client, client, space):
        path = send_invitation(owner_client, space)
        client.post(path, {"username": "first", "email": "new@example.com", "password1": "a long passphrase 42", "password2": "a long passphrase 42"})
        from django.test import Client

        again = Client()
        assert again.get(path).status_code == 404
        response = again.post(path, {"username": "second", "email": "b@example.com", "password1": "a long passphrase 42", "password2": "a long passphrase 42"})
        assert response.status_code == 404
        assert not get_user_model().objects.filter(username="second").exists()

    def test_it_expires(self, send_invitation, owner_client, client, space):
        path = send_invitation(owner_client, space)
        Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        assert client.get(path).status_code == 404
        assert "cannot be used" in client.get(path).content.decode()

    def test_it_stops_working_when_revoked(self, send_invitation, owner_client, client, space):
        path = send_invitation(owner_client, space)
        invitation = Invitation.objects.get()
        revoke = reverse("spaces:invitation-revoke", args=[space.public_id, invitation.token_hash[:16]])
        assert owner_client.post(revoke).status_code == 302
        assert client.get(path).status_code == 404
        assert AuditEntry.objects.filter(space=space, action="invitation.revoke").exists()

    def test_only_owners_revoke(self, send_invitation, owner_client, member_client, outsider_client, space):
        send_invitation(owner_client, space)
        revoke = reverse("spaces:invitation-revoke", args=[space.public_id, Invitation.objects.get().token_hash[:16]])
        assert member_client.post(revoke).status_code == 403
        assert outsider_client.post(revoke).status_code == 404
        assert owner_client.get(revoke).status_code == 405
        assert Invitation.objects.get().revoked_at is None

    def test_it_refuses_a_made_up_token(self, client, db):
        assert client.get(reverse("spaces:invitation", args=["not-a-token"])).status_code == 404

    def test_owners_see_pending_invitations(self, send_invitation, owner_client, member_client, space):
        send_invitation(owner_client, space)
        assert "new@example.com" in owner_client.get(reverse("spaces:team", args=[space.public_id])).content.decode()
        assert "new@example.com" not in member_client.get(reverse("spaces:team", args=[space.public_id])).content.decode()


class TestCopyLink:
    """The Team page shows each pending invitation's link to owners, for an install whose
    e-mail goes only to the server's output."""

    def team(self, client, space):
        return client.get(reverse("spaces:team", args=[space.public_id]))

    def test_it_shows_the_owner_the_link_the_email_holds(self, send_invitation, owner_client, space):
        path = send_invitation(owner_client, space)
        html = self.team(owner_client, space).content.decode()
        assert f'value="http://testserver{path}"' in html
        assert f'data-copy="http://testserver{path}"' in html
        assert "Copy link" in html

    def test_the_copied_link_lets_a_visitor_join(self, send_invitation, owner_client, client, space):
        send_invitation(owner_client, space)
        [link] = re.findall(r'data-copy="http://testserver(/invitations/[^"]+/)"', self.team(owner_client, space).content.decode())
        response = client.post(
            link,
            {"username": "copied", "email": "new@example.com", "password1": "a long passphrase 42", "password2": "a long passphrase 42"},
        )
        assert response.status_code == 302
        assert Membership.objects.filter(space=space, user__username="copied").exists()

    def test_a_member_does_not_see_the_link(self, send_invitation, owner_client, member_client, space):
        path = send_invitation(owner_client, space)
        response = self.team(member_client, space)
        assert response.status_code == 200
        html = response.content.decode()
        assert path not in html and "Copy link" not in html

    def test_an_outsider_gets_404(self, send_invitation, owner_client, outsider_client, space):
        send_invitation(owner_client, space)
        assert self.team(outsider_client, space).status_code == 404

    def test_a_spent_or_revoked_link_is_not_shown(self, send_invitation, owner_client, client, space):
        path = send_invitation(owner_client, space)
        client.post(path, {"username": "first", "email": "new@example.com", "password1": "a long passphrase 42", "password2": "a long passphrase 42"})
        second = send_invitation(owner_client, space, email="other@example.com")
        invitation = Invitation.objects.get(email="other@example.com")
        owner_client.post(reverse("spaces:invitation-revoke", args=[space.public_id, invitation.token_hash[:16]]))
        html = self.team(owner_client, space).content.decode()
        assert path not in html and second not in html and "Copy link" not in html

    def test_it_says_so_when_the_link_cannot_be_rebuilt(self, send_invitation, owner_client, space, settings):
        path = send_invitation(owner_client, space)
        # A rotated key: sessions still open through the fallback, the link cannot be rebuilt.
        settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
        settings.SECRET_KEY = "another key after a rotation"
        html = self.team(owner_client, space).content.decode()
        assert path not in html
        assert "The link is only in the e-mail" in html
