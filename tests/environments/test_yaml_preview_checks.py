"""The YAML preview runs Apply's checks: what Apply would refuse, the preview shows first."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from environments import actions as environment_actions
from services import actions
from services.models import Service
from tests.environments.travel import make_service
from tests.factories import make_environment
from tests.spaces.helpers import allocate

pytestmark = pytest.mark.django_db

HEAD = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"


@pytest.fixture
def staging(project, owner):
    return make_environment(project, by=owner, name="staging")


def preview(client, environment, text: str, headers):
    url = reverse("environments:yaml-preview", args=[environment.public_id])
    upload = SimpleUploadedFile("env.yaml", text.encode(), content_type="application/yaml")
    return client.post(url, {"file": upload}, headers=headers)


def test_it_shows_an_allocation_refusal_in_the_preview(member_client, space, staging, htmx_headers):
    allocate(space)
    text = HEAD + "".join(
        f"    - {{name: s{i}, kind: web, image: 'nginx:1.27', port: 80, resources: {{cpu: 0.4, memory: 256Mi}}}}\n"
        for i in range(3)
    )
    response = preview(member_client, staging, text, htmx_headers)
    body = response.content.decode()
    assert "This file cannot be applied" in body
    assert "On-demand vCPU: this needs 1.2 vCPU, 1.0 vCPU of 1.0 vCPU is left" in body
    assert "data-yaml-apply" not in body and "to create" not in body
    assert not Service.objects.filter(environment=staging).exists()


def test_it_previews_a_file_within_the_allocation_with_its_headings(member_client, space, staging, htmx_headers):
    allocate(space)
    make_service(staging, None, name="api", cpu="0.25")
    text = HEAD + (
        "    - {name: api, kind: web, image: 'nginx:1.28', port: 80, resources: {cpu: 0.25, memory: 256Mi}}\n"
        "    - {name: web, kind: web, image: 'nginx:1.27', port: 80, resources: {cpu: 0.25, memory: 256Mi}}\n"
    )
    body = preview(member_client, staging, text, htmx_headers).content.decode()
    assert "<h3>To create</h3>" in body and "<h3>To change</h3>" in body
    assert "<h3>Created</h3>" not in body and "<h3>Changed</h3>" not in body
    assert "data-yaml-apply" in body


def test_it_shows_a_name_held_by_a_service_being_deleted_in_the_preview(owner_client, staging, owner, htmx_headers):
    actions.delete_service(owner, make_service(staging, owner, name="api"))
    body = preview(owner_client, staging, HEAD + "    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n", htmx_headers).content.decode()
    assert "api is being deleted; apply the file again once it is gone." in body
    assert "data-yaml-apply" not in body


def test_it_shows_missing_secrets_of_a_service_the_file_starts_in_the_preview(owner_client, staging, owner, htmx_headers):
    service = make_service(staging, owner, name="db", kind="tcp", image="postgres:16", port="5432")
    actions.stop_service(owner, service)
    text = HEAD + (
        "    - name: db\n      kind: tcp\n      image: postgres:16\n      port: 5432\n"
        "      env: [{name: POSTGRES_PASSWORD, secret: DB_PASSWORD}]\n      state: running\n"
    )
    body = preview(owner_client, staging, text, htmx_headers).content.decode()
    assert "Cannot start db: this environment has no secret DB_PASSWORD." in body
    assert "data-yaml-apply" not in body
    environment_actions.set_variables(acting_user=owner, environment=staging, values={"DB_PASSWORD": "x"}, is_secret=True)
    body = preview(owner_client, staging, text, htmx_headers).content.decode()
    assert "Cannot start" not in body and "data-yaml-apply" in body


def test_it_keeps_the_preview_from_outsiders(outsider_client, staging, htmx_headers):
    assert preview(outsider_client, staging, HEAD + "    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n", htmx_headers).status_code == 404
