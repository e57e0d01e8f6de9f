"""Space settings and the team: owners rename, delete and manage members; a space always
keeps an owner; members see the team but change nothing of it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from environments.models import Environment
from spaces import actions
from spaces.models import Membership, Space
from spaces.tasks import delete_space
from tests.factories import make_environment, make_user

pytestmark = pytest.mark.django_db


def url(name: str, space: Space, *args: str) -> str:
    return reverse(f"spaces:{name}", args=[space.public_id, *args])


# --- settings: rename ----------------------------------------------------------------------------


class TestRename:
    def test_it_renames_the_space_for_an_owner(self, owner_client, space):
        response = owner_client.post(url("rename", space), {"name": "team.blue-2"})
        assert response.status_code == 302
        space.refresh_from_db()
        assert space.name == "team.blue-2"

    @pytest.mark.parametrize("name", ["abc", "a" * 21, "Team", "team_x", "team x", ""])
    def test_it_refuses_a_bad_name(self, owner_client, space, name):
        response = owner_client.post(url("rename", space), {"name": name})
        assert response.status_code == 422
        space.refresh_from_db()
        assert space.name == "team"

    def test_it_refuses_a_name_another_space_has(self, owner_client, space, owner):
        response = owner_client.post(url("rename", space), {"name": "owner"})  # owner's default space
        assert response.status_code == 422
        assert "Another space has this name." in response.content.decode()

    def test_it_forbids_a_member(self, member_client, space):
        assert member_client.post(url("rename", space), {"name": "taken"}).status_code == 403
        space.refresh_from_db()
        assert space.name == "team"

    def test_it_hides_the_space_from_an_outsider(self, outsider_client, space):
        assert outsider_client.post(url("rename", space), {"name": "taken"}).status_code == 404

    def test_it_refuses_get(self, owner_client, space):
        assert owner_client.get(url("rename", space)).status_code == 405

    def test_it_shows_the_settings_page_to_owners_only(self, owner_client, member_client, outsider_client, client, space):
        response = owner_client.get(url("settings", space))
        assert response.status_code == 200
        html = response.content.decode()
        assert "Resource allocation" in html and "profile <strong>default</strong>" in html
        assert "at most 4.0 vCPU and 8 GiB memory per replica, 50 GiB disk per service; at most 10 replicas" in html
        assert member_client.get(url("settings", space)).status_code == 403
        assert outsider_client.get(url("settings", space)).status_code == 404
        assert client.get(url("settings", space)).status_code == 302


# --- settings: delete ----------------------------------------------------------------------------


class TestDelete:
    def test_it_deletes_the_space_with_its_environments_through_their_deletion(
        self, owner_client, space, project, main_env, owner, django_capture_on_commit_callbacks
    ):
        make_environment(project, by=owner, name="staging")  # a second namespace to delete
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = owner_client.post(url("delete", space), {"confirm": "team"})
        assert response.status_code == 302
        tasks = sorted(cb.func.__self__.name for cb in callbacks if hasattr(cb, "func"))
        assert tasks == [
            "environments.tasks.delete_environment",
            "environments.tasks.delete_environment",
            "spaces.tasks.delete_space",
        ]
        assert not Environment.objects.filter(project__space=space, deleting_at__isnull=True).exists()
        # Nobody sees it any more.
        assert not space.memberships.exists()
        assert owner_client.get(reverse("spaces:detail", args=[space.public_id])).status_code == 404

    def test_it_removes_the_row_once_the_projects_are_gone(self, space, project, owner):
        actions.delete_space(acting_user=owner, space=space)
        delete_space.apply(args=[space.pk])  # the project is still there: it waits for it
        assert Space.objects.filter(pk=space.pk).exists()
        project.delete()  # what the environment deletion tasks do once the namespaces are gone
        assert delete_space.apply(args=[space.pk]).result == "deleted"
        assert not Space.objects.filter(pk=space.pk).exists()

    def test_its_task_leaves_a_space_with_members_alone(self, space):
        assert delete_space.apply(args=[space.pk]).result == "not deleting"
        assert Space.objects.filter(pk=space.pk).exists()

    def test_it_needs_the_name_typed(self, owner_client, space):
        response = owner_client.post(url("delete", space), {"confirm": "nope"})
        assert response.status_code == 422
        assert "Type team to confirm." in response.content.decode()
        assert space.memberships.exists()

    def test_it_never_deletes_a_default_space(self, owner_client, owner):
        default = Space.objects.get(owner=owner, is_default=True)
        response = owner_client.post(url("delete", default), {"confirm": default.name})
        assert response.status_code == 422
        assert Space.objects.filter(pk=default.pk).exists()
        with pytest.raises(ValidationError):
            actions.delete_space(acting_user=owner, space=default)

    def test_it_forbids_a_member(self, member_client, space):
        assert member_client.post(url("delete", space), {"confirm": "team"}).status_code == 403
        assert space.memberships.count() == 2

    def test_it_hides_the_space_from_an_outsider(self, outsider_client, space):
        assert outsider_client.post(url("delete", space), {"confirm": "team"}).status_code == 404

    def test_it_refuses_get(self, owner_client, space):
        assert owner_client.get(url("delete", space)).status_code == 405


# --- team ----------------------------------------------------------------------------------------


class TestTeamPage:
    def test_it_lists_the_members_with_the_owners_forms(self, owner_client, space):
        html = owner_client.get(url("team", space)).content.decode()
        assert 'data-member="owner"' in html and 'data-member="member"' in html
        assert 'name="who"' in html and "Remove" in html

    def test_it_lists_the_members_to_a_member_without_forms(self, member_client, space):
        response = member_client.get(url("team", space))
        html = response.content.decode()
        assert response.status_code == 200
        assert 'data-member="owner"' in html
        assert 'name="who"' not in html and "Remove" not in html and 'name="role"' not in html

    def test_it_hides_the_team_from_an_outsider(self, outsider_client, space):
        assert outsider_client.get(url("team", space)).status_code == 404

    def test_it_sends_anonymous_to_login(self, client, space):
        assert client.get(url("team", space)).status_code == 302


class TestRoles:
    def test_it_makes_a_member_owner(self, owner_client, space, member):
        response = owner_client.post(url("member-role", space, "member"), {"role": "owner"})
        assert response.status_code == 302
        assert Membership.objects.get(space=space, user=member).role == "owner"

    def test_it_refuses_a_bad_role(self, owner_client, space, member):
        assert owner_client.post(url("member-role", space, "member"), {"role": "admin"}).status_code == 422
        assert Membership.objects.get(space=space, user=member).role == "member"

    def test_it_answers_404_for_someone_not_in_the_space(self, owner_client, space, outsider):
        assert owner_client.post(url("member-role", space, "outsider"), {"role": "owner"}).status_code == 404

    def test_it_never_demotes_the_last_owner(self, owner_client, space, owner):
        response = owner_client.post(url("member-role", space, "owner"), {"role": "member"})
        assert response.status_code == 422
        assert "A space needs an owner" in response.content.decode()
        assert Membership.objects.get(space=space, user=owner).role == "owner"

    def test_it_demotes_an_owner_when_another_remains(self, owner_client, space, owner, member):
        actions.change_role(acting_user=owner, space=space, user=member, role="owner")
        response = owner_client.post(url("member-role", space, "owner"), {"role": "member"})
        assert response.status_code == 302
        # Now a member: the team's management is no longer theirs.
        assert response.url == reverse("spaces:detail", args=[space.public_id])
        assert owner_client.post(url("member-role", space, "member"), {"role": "member"}).status_code == 403

    def test_it_forbids_a_member(self, member_client, space, owner):
        assert member_client.post(url("member-role", space, "member"), {"role": "owner"}).status_code == 403
        assert Membership.objects.get(space=space, user__username="member").role == "member"

    def test_it_hides_the_space_from_an_outsider(self, outsider_client, space):
        assert outsider_client.post(url("member-role", space, "member"), {"role": "owner"}).status_code == 404

    def test_it_refuses_get(self, owner_client, space):
        assert owner_client.get(url("member-role", space, "member")).status_code == 405


class TestRemoveAndLeave:
    def test_it_removes_a_member(self, owner_client, space, member):
        assert owner_client.post(url("member-remove", space, "member")).status_code == 302
        assert not Membership.objects.filter(space=space, user=member).exists()

    def test_a_removed_member_no_longer_sees_the_space(self, owner_client, member_client, space, main_env):
        owner_client.post(url("member-remove", space, "member"))
        assert member_client.get(reverse("spaces:detail", args=[space.public_id])).status_code == 404
        assert member_client.get(reverse("environments:detail", args=[main_env.public_id])).status_code == 404

    def test_the_last_owner_can_neither_be_removed_nor_leave(self, owner_client, space, owner):
        assert owner_client.post(url("member-remove", space, "owner")).status_code == 422
        response = owner_client.post(url("leave", space))
        assert response.status_code == 422
        assert "The last owner cannot leave" in response.content.decode()
        assert Membership.objects.filter(space=space, user=owner).exists()

    def test_a_member_leaves(self, member_client, space, member):
        assert member_client.post(url("leave", space)).status_code == 302
        assert not Membership.objects.filter(space=space, user=member).exists()

    def test_an_owner_leaves_when_another_owner_remains(self, owner_client, space, owner, member):
        actions.change_role(acting_user=owner, space=space, user=member, role="owner")
        assert owner_client.post(url("leave", space)).status_code == 302
        assert list(space.memberships.values_list("user__username", "role")) == [("member", "owner")]

    def test_nobody_leaves_their_own_default_space(self, owner, member):
        default = Space.objects.get(owner=owner, is_default=True)
        actions.add_member(acting_user=owner, space=default, user=member, role="owner")
        with pytest.raises(ValidationError, match="default space"):
            actions.remove_member(acting_user=member, space=default, user=owner)

    def test_a_member_cannot_remove_anyone(self, member_client, space, owner):
        assert member_client.post(url("member-remove", space, "owner")).status_code == 403
        assert space.memberships.count() == 2

    def test_it_hides_the_space_from_an_outsider(self, outsider_client, space):
        assert outsider_client.post(url("member-remove", space, "member")).status_code == 404
        assert outsider_client.post(url("leave", space)).status_code == 404

    def test_it_refuses_get(self, owner_client, space):
        assert owner_client.get(url("member-remove", space, "member")).status_code == 405
        assert owner_client.get(url("leave", space)).status_code == 405


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    """Each sees two owners; the row locks make the second see one, and refuse."""
    import threading

    from django.db import connection

    from tests.factories import make_space

    a, b = make_user("alice"), make_user("bob")
    space = make_space(owner=a, members=(b,), name="pair")
    actions.change_role(acting_user=a, space=space, user=b, role="owner")
    barrier = threading.Barrier(2)
    results: list[str] = []

    def demote(actor, target) -> None:
        try:
            barrier.wait(5)
            actions.change_role(acting_user=actor, space=space, user=target, role="member")
            results.append("demoted")
        except ValidationError as exc:
            results.append(exc.messages[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(a, a)), threading.Thread(target=demote, args=(b, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["A space needs an owner: make someone else owner first.", "demoted"]
    assert space.memberships.filter(role="owner").count() == 1
