"""The audit log: an entry for every action, never a secret's value; owners read it, filter
it and download it as CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.urls import reverse

from environments import actions as env_actions
from environments import yaml_document
from services import actions
from services.models import TerminalSession
from spaces import actions as space_actions
from spaces.audit import record
from spaces.models import AuditEntry
from tests.factories import local_cluster, make_environment, make_project
from tests.spaces.helpers import deploy

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-value-that-must-never-be-logged"


def actions_of(space) -> list[str]:
    return list(AuditEntry.objects.filter(space=space).order_by("pk").values_list("action", flat=True))


def everything_logged(space) -> str:
    return repr(list(AuditEntry.objects.filter(space=space).values()))


def test_it_records_every_service_verb_with_who_and_where(space, main_env, owner, member):
    AuditEntry.objects.all().delete()
    service = deploy(main_env, member)
    actions.stop_service(member, service)
    actions.start_service(owner, service)
    actions.redeploy_service(owner, service)
    actions.rollback_service(owner, service, service.revisions.get(number=1))
    actions.stop_service(owner, service)
    actions.start_all(owner, main_env)
    actions.delete_service(owner, service)
    assert actions_of(space) == [
        "service.deploy", "service.stop", "service.start", "service.redeploy", "service.rollback",
        "service.stop", "service.start_all", "service.delete",
    ]  # fmt: skip
    first = AuditEntry.objects.filter(space=space).order_by("pk").first()
    assert (first.actor, first.actor_name, first.summary) == (member, "member", "Deployed api (revision 1)")
    assert (first.project_name, first.environment_name, first.service_name) == ("shop", "main", "api")
    assert (first.environment_public_id, first.service_public_id) == (main_env.public_id, service.public_id)


def test_entries_survive_what_they_are_about(space, main_env, owner):
    service = deploy(main_env, owner)
    public_id = service.public_id
    service.delete()
    main_env.delete()
    entry = AuditEntry.objects.get(space=space, action="service.deploy")
    assert (entry.service_name, entry.service_public_id, entry.environment_name) == ("api", public_id, "main")


def test_it_records_secret_changes_by_key_never_by_value(space, main_env, owner):
    env_actions.set_variables(acting_user=owner, environment=main_env, values={"DB_PASSWORD": SECRET}, is_secret=True)
    env_actions.set_variables(acting_user=owner, environment=main_env, values={"DB_PASSWORD": SECRET + "2", "MODE": "x"}, is_secret=False)
    env_actions.delete_variable(acting_user=owner, environment=main_env, key="DB_PASSWORD")
    entries = list(AuditEntry.objects.filter(space=space, action="environment.secrets").order_by("pk"))
    assert [e.details for e in entries] == [
        {"created": ["DB_PASSWORD"], "replaced": [], "secret": True},
        {"created": ["MODE"], "replaced": ["DB_PASSWORD"], "secret": False},
        {"deleted": ["DB_PASSWORD"]},
    ]
    assert SECRET not in everything_logged(space)


def test_it_refuses_details_that_would_hold_a_value(space):
    with pytest.raises(ValueError, match="never hold values"):
        record(None, space, AuditEntry.Action.SECRETS_CHANGE, "x", details={"value": SECRET})
    assert not AuditEntry.objects.filter(summary="x").exists()


def test_it_records_firewall_yaml_clone_and_environment_changes(space, project, main_env, owner):
    deploy(main_env, owner)
    env_actions.set_firewall(acting_user=owner, environment=main_env, allow=True, cidrs=["10.0.0.0/8"], confirmed=True)
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: web, kind: web, image: 'nginx:1.27', port: 80}\n"
    yaml_document.import_file(owner, main_env, text.encode())
    clone = env_actions.clone_environment(acting_user=owner, source=main_env, name="copy", cluster=local_cluster())
    env_actions.delete_environment(acting_user=owner, environment=clone)
    recorded = actions_of(space)
    for action in ("environment.firewall", "environment.yaml_apply", "environment.clone", "environment.delete", "project.create", "environment.create"):
        assert action in recorded
    firewall = AuditEntry.objects.get(space=space, action="environment.firewall")
    assert firewall.details == {"allow_external_tcp": True, "allowed_cidrs": ["10.0.0.0/8"]}
    assert AuditEntry.objects.get(space=space, action="environment.yaml_apply").details["created"] == ["web"]


def test_it_records_membership_changes(space, owner, member, outsider):
    space_actions.add_member(acting_user=owner, space=space, user=outsider, role="member")
    space_actions.change_role(acting_user=owner, space=space, user=outsider, role="owner")
    space_actions.remove_member(acting_user=owner, space=space, user=outsider)
    space_actions.remove_member(acting_user=member, space=space, user=member)
    space_actions.rename_space(acting_user=owner, space=space, name="team2")
    assert actions_of(space)[-5:] == ["member.add", "member.role", "member.remove", "member.remove", "space.rename"]
    assert AuditEntry.objects.filter(space=space, action="member.remove").order_by("pk").last().summary == "member left the space"


def test_it_records_terminal_sessions(space, main_env, owner):
    service = deploy(main_env, owner)
    TerminalSession.objects.create(service=service, user=owner, username="owner", pod="api-1", container="api")
    entry = AuditEntry.objects.get(space=space, action="terminal.open")
    assert (entry.actor, entry.service_name, entry.details["pod"]) == (owner, "api", "api-1")


# --- the page and the CSV ------------------------------------------------------------------------


@pytest.fixture
def history(space, project, main_env, owner, member):
    staging = make_environment(project, by=owner, name="staging")
    deploy(main_env, owner, name="web")
    deploy(staging, member, name="worker")
    env_actions.set_variables(acting_user=member, environment=staging, values={"TOKEN": SECRET}, is_secret=True)
    return staging


def audit_url(space, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("spaces:audit", args=[space.public_id]) + (f"?{query}" if query else "")


def test_it_shows_the_log_to_owners_newest_first(owner_client, space, history):
    html = owner_client.get(audit_url(space)).content.decode()
    assert html.index("Set 1 secret in staging") < html.index("Deployed worker") < html.index("Deployed web")
    assert SECRET not in html


@pytest.mark.parametrize(
    ("params", "present", "absent"),
    [
        ({"user": "member"}, ["Deployed worker"], ["Deployed web"]),
        ({"action": "service.deploy"}, ["Deployed worker", "Deployed web"], ["Set 1 secret"]),
        ({"action": "nonsense"}, ["Deployed worker", "Deployed web"], []),
    ],
)
def test_it_filters_by_user_and_action(owner_client, space, history, params, present, absent):
    html = owner_client.get(audit_url(space, **params)).content.decode()
    for text in present:
        assert text in html
    for text in absent:
        assert text not in html


def test_it_filters_by_environment_and_project(owner_client, space, project, history, owner, outsider):
    html = owner_client.get(audit_url(space, environment=history.public_id)).content.decode()
    assert "Deployed worker" in html and "Deployed web" not in html
    space_actions.add_member(acting_user=owner, space=space, user=outsider, role="member")
    html = owner_client.get(audit_url(space, project=project.public_id)).content.decode()
    assert "Deployed worker" in html and "Deployed web" in html
    # Membership changes belong to no project.
    assert "Added outsider" not in html
    assert "Added outsider" in owner_client.get(audit_url(space)).content.decode()


def test_the_environment_filter_names_each_environment_with_its_project(owner_client, space, project, owner):
    other = make_project(space, by=owner, name="blog")
    deploy(project.environments.get(name="main"), owner, name="web")
    deploy(other.environments.get(name="main"), owner, name="web")
    html = owner_client.get(audit_url(space)).content.decode()
    [environment_filter] = re.findall(r'<select name="environment">.*?</select>', html, re.S)
    options = re.findall(r'<option value="(\w+)">([^<]+)</option>', environment_filter)
    assert options == [
        (other.environments.get().public_id, "blog/main"),
        (project.environments.get().public_id, "shop/main"),
    ]


def test_it_downloads_the_filtered_log_as_csv(owner_client, space, history):
    response = owner_client.get(reverse("spaces:audit-csv", args=[space.public_id]) + "?user=member")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="audit-team.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["time", "user", "action", "project", "environment", "service", "summary", "details"]
    assert {row[1] for row in rows[1:]} == {"member"}
    assert [row[2] for row in rows[1:]] == ["environment.secrets", "service.deploy"]
    assert SECRET not in "".join(",".join(row) for row in rows)


def test_it_keeps_spreadsheet_formulas_out_of_the_csv(owner_client, space, project, owner):
    make_environment(project, by=owner, name="=HYPERLINK(1)")
    response = owner_client.get(reverse("spaces:audit-csv", args=[space.public_id]))
    body = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK(1)" in body
    assert ",=HYPERLINK" not in body


def test_only_owners_read_the_log(member_client, outsider_client, client, space):
    for name in ("spaces:audit", "spaces:audit-csv"):
        target = reverse(name, args=[space.public_id])
        assert member_client.get(target).status_code == 403
        assert outsider_client.get(target).status_code == 404
        assert client.get(target).status_code == 302


def test_the_log_refuses_post(owner_client, space):
    assert owner_client.post(audit_url(space)).status_code == 405
    assert owner_client.post(reverse("spaces:audit-csv", args=[space.public_id])).status_code == 405


def test_the_page_reads_a_fixed_number_of_queries(owner_client, space, history, owner, django_assert_max_num_queries):
    with django_assert_max_num_queries(14) as first:
        owner_client.get(audit_url(space))
    for index in range(10):
        record(owner, space, AuditEntry.Action.SERVICE_START, f"Started {index}")
    with django_assert_max_num_queries(len(first.captured_queries)):
        owner_client.get(audit_url(space))
