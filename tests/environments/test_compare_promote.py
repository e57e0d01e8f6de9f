"""Compare with… and Promote A → B: the side-by-side differences, the preview, the atomic
apply through the YAML importer's functions, and the access rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from environments.actions import set_variables
from environments.compare import compare, service_fields
from environments.yaml_document import export_document
from environments.models import Environment
from services import actions
from services.forms import ServiceForm
from services.models import Service
from spaces.models import AuditEntry
from tests.factories import make_environment
from tests.spaces.helpers import allocate


def deploy(env, user, **overrides: Any) -> Service:
    data = {
        "name": "api", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
        "memory": "64Mi", "replicas": "1", "capacity": "on_demand", "health_check_path": "/", **overrides,
    }  # fmt: skip
    existing = Service.objects.filter(environment=env, name=data["name"]).first()
    form = ServiceForm(data, environment=env, service=existing)
    assert form.is_valid(), form.errors
    return actions.deploy_service(user, env, form.cleaned_data, service=existing)


@pytest.fixture
def staging(project, owner, main_env) -> Environment:
    staging = make_environment(project, by=owner, name="staging")
    deploy(main_env, owner, env_vars="MODE=prod\nTOKEN=${{ secrets.API_TOKEN }}")
    deploy(main_env, owner, name="old", image="busybox:1")
    deploy(staging, owner, image="nginx:1.28", replicas="2", memory="128Mi", env_vars="MODE=staging\nTOKEN=${{ secrets.API_TOKEN }}")
    deploy(staging, owner, name="worker", image="python:3.12")
    set_variables(acting_user=owner, environment=staging, values={"API_TOKEN": "s"}, is_secret=True)
    set_variables(acting_user=owner, environment=staging, values={"LOG": "debug"}, is_secret=False)
    set_variables(acting_user=owner, environment=main_env, values={"LOG": "info"}, is_secret=False)
    return staging


@pytest.mark.django_db
def test_it_shows_services_in_one_the_differing_fields_and_secrets_by_name(staging, main_env):
    result = compare(export_document(staging), export_document(main_env),
                     {"API_TOKEN": None, "LOG": "debug"}, {"LOG": "info"})  # fmt: skip
    assert result.only_in_a == ["worker"] and result.only_in_b == ["old"]
    (api,) = result.differing
    assert {(d.field, d.a, d.b) for d in api.differences} == {
        ("Image", "nginx:1.28", "nginx:1.27"), ("Replicas", "2", "1"), ("Memory", "128Mi", "64Mi"),
        ("Variable MODE", "staging", "prod"),
    }  # fmt: skip
    assert [(r.key, r.in_a, r.in_b) for r in result.secrets] == [("API_TOKEN", True, False)]
    assert [(d.field, d.a, d.b) for d in result.variables] == [("LOG", "debug", "info")]
    # A secret reference shows its key, and never a value.
    assert service_fields({"name": "x", "env": [{"name": "T", "secret": "K"}]})["Variable T"] == "${{ secrets.K }}"


@pytest.mark.django_db
def test_the_page_compares_and_previews_the_promote(staging, main_env, owner_client):
    url = reverse("compare:page", args=[staging.public_id])
    tab = owner_client.get(reverse("environments:settings", args=[staging.public_id])).content.decode()
    assert f'action="{url}"' in tab and "Compare with…" in tab
    page = owner_client.get(url, {"with": main_env.public_id}).content.decode()
    assert "Only in staging: <code>worker</code>" in page and "Only in main: <code>old</code>" in page
    assert "<td>Image</td><td class=\"new\">nginx:1.28</td><td class=\"old\">nginx:1.27</td>" in page
    assert "<td><code>API_TOKEN</code></td><td>set</td><td>missing</td>" in page
    assert "Promote staging → main" in page
    assert "<strong>1</strong> to create · <strong>1</strong> to change" in page
    assert '"s"' not in page  # the secret's value never reaches the page


@pytest.mark.django_db
def test_promote_applies_the_source_to_the_target_in_one_audited_step(staging, main_env, owner, owner_client):
    page = owner_client.get(reverse("compare:page", args=[staging.public_id]), {"with": main_env.public_id}).content.decode()
    digest = page.split('name="digest" value="')[1].split('"')[0]
    response = owner_client.post(reverse("compare:promote", args=[staging.public_id, main_env.public_id]), {"digest": digest}, follow=True)
    assert "Promoted staging to main: 1 created, 1 changed, 0 unchanged." in response.content.decode()
    api = main_env.services.get(name="api")
    assert (api.image, api.replicas, api.memory_mib) == ("nginx:1.28", 2, 128)
    assert api.revisions.order_by("-number").first().cause == "promote"
    assert main_env.services.filter(name="worker").exists() and main_env.services.filter(name="old").exists()
    entries = AuditEntry.objects.filter(action="environment.promote")
    assert [e.summary for e in entries] == ["Promoted staging to main: 1 created, 1 changed"]
    assert not AuditEntry.objects.filter(action="environment.yaml_apply").exists()


@pytest.mark.django_db
def test_a_promote_breaking_the_allocation_changes_nothing(staging, main_env, owner_client, space):
    # main runs two services; the promote would run a third.
    allocate(space, max_running_services=4)
    page = owner_client.get(reverse("compare:page", args=[staging.public_id]), {"with": main_env.public_id}).content.decode()
    digest = page.split('name="digest" value="')[1].split('"')[0]
    allocate(space, max_running_services=2)
    before = list(main_env.services.order_by("name").values_list("name", "image", "replicas", "generation"))
    audit_before = AuditEntry.objects.count()
    response = owner_client.post(reverse("compare:promote", args=[staging.public_id, main_env.public_id]), {"digest": digest}, follow=True)
    body = response.content.decode()
    assert "Nothing was promoted:" in body and "Running services" in body
    assert list(main_env.services.order_by("name").values_list("name", "image", "replicas", "generation")) == before
    assert AuditEntry.objects.count() == audit_before


@pytest.mark.django_db
def test_a_source_changed_since_the_preview_is_not_promoted(staging, main_env, owner, owner_client):
    page = owner_client.get(reverse("compare:page", args=[staging.public_id]), {"with": main_env.public_id}).content.decode()
    digest = page.split('name="digest" value="')[1].split('"')[0]
    deploy(staging, owner, image="nginx:1.29")
    response = owner_client.post(reverse("compare:promote", args=[staging.public_id, main_env.public_id]), {"digest": digest}, follow=True)
    assert "staging changed since this preview" in response.content.decode()
    assert main_env.services.get(name="api").image == "nginx:1.27"


@pytest.mark.django_db
def test_outsiders_get_404_other_projects_too_and_wrong_methods_405(staging, main_env, owner, outsider_client, member_client, owner_client, space):
    from tests.factories import make_project

    page = reverse("compare:page", args=[staging.public_id])
    promote = reverse("compare:promote", args=[staging.public_id, main_env.public_id])
    assert outsider_client.get(page, {"with": main_env.public_id}).status_code == 404
    assert outsider_client.post(promote, {"digest": "x"}).status_code == 404
    assert member_client.get(page, {"with": main_env.public_id}).status_code == 200
    other = make_project(space, by=owner, name="other").environments.get()
    assert owner_client.get(page, {"with": other.public_id}).status_code == 404
    assert owner_client.get(page, {"with": staging.public_id}).status_code == 404
    assert owner_client.get(promote).status_code == 405
    assert owner_client.post(reverse("compare:page", args=[staging.public_id])).status_code == 405
