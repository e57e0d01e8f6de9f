"""Environment migration: export, preview, apply; round trip, atomicity, idempotence, views."""

from __future__ import annotations

import base64
import re

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from clusters.models import Cluster
from environments import yaml_document
from environments.actions import create_environment
from environments.models import EnvironmentVariable
from services import actions as service_actions
from services.actions import delete_service, deploy_service
from services.forms import ServiceForm, spec_of
from services.models import SPEC_FIELDS, Revision, Service
from spaces.models import ResourceAllocation
from tests.environments.travel import enqueued, make_service, make_shop
from tests.fixtures.celery_worker import celery_queue  # noqa: F401
from tests.factories import make_environment

pytestmark = pytest.mark.django_db


def spec_part(text: str) -> str:
    """The document without metadata (which says where and when it was exported)."""
    return text[text.index("spec:") :]


def upload(name: str, text: str | bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text, content_type="application/yaml")


@pytest.fixture
def staging(project, owner):
    return make_environment(project, by=owner, name="staging")


# --- export and round trip ---------------------------------------------------------------------


def test_it_exports_a_readable_versioned_document_without_secret_values(main_env, owner):
    make_shop(main_env, owner)
    EnvironmentVariable.objects.create(environment=main_env, key="API_TOKEN", value_encrypted="x", is_secret=True)
    document = yaml.safe_load(yaml_document.export_yaml(main_env))
    assert (document["apiVersion"], document["kind"]) == ("ale/v1", "Environment")
    assert document["metadata"]["name"] == "main"
    assert document["metadata"]["project"] == "shop"
    assert [s["name"] for s in document["spec"]["services"]] == ["db", "web", "worker"]
    web = document["spec"]["services"][1]
    assert web == {
        "name": "web",
        "kind": "web",
        "image": "ghcr.io/acme/shop:v2",
        "port": 8080,
        "env": [
            {"name": "MODE", "value": "production"},
            {"name": "DATABASE_URL", "secret": "DATABASE_URL"},
            {"name": "GREETING", "value": "  hello  "},
        ],
        "resources": {"capacity": "on_demand", "cpu": 0.5, "memory": "1Gi", "replicas": 2},
        "healthCheckPath": "/healthz",
        "customDomains": ["shop.example.com"],
        "state": "running",
    }
    assert document["spec"]["services"][0]["resources"] == {
        "capacity": "spot", "cpu": 0.25, "memory": "256Mi", "disk": "2Gi", "replicas": 1
    }
    assert document["spec"]["services"][2]["command"] == ["sh", "-c"]
    assert document["spec"]["services"][2]["args"] == ["echo working && sleep 3600"]
    # Keys only: set ones and referenced ones, never a value.
    assert document["spec"]["secrets"] == ["API_TOKEN", "DATABASE_URL", "DB_PASSWORD"]
    assert document["spec"]["firewall"] == {"allowExternalTcp": False, "allowCidrs": []}


def test_it_round_trips_export_import_export_byte_for_byte(main_env, project, owner, django_capture_on_commit_callbacks):
    from tests.factories import make_cluster

    make_shop(main_env, owner)
    first = yaml_document.export_yaml(main_env)
    # An empty environment on another cluster, where the custom domain is free.
    with django_capture_on_commit_callbacks(execute=False):
        staging = create_environment(acting_user=owner, project=project, name="staging", cluster=make_cluster())
        result = yaml_document.import_file(owner, staging, first.encode())
    assert (result.created, result.changed) == (["db", "web", "worker"], [])
    assert spec_part(yaml_document.export_yaml(staging)) == spec_part(first)
    for name in ("db", "web", "worker"):
        assert Service.objects.get(environment=staging, name=name).snapshot() == Service.objects.get(
            environment=main_env, name=name
        ).snapshot()


# --- preview -------------------------------------------------------------------------------------


def test_it_previews_created_changed_unchanged_and_untouched_services(main_env, staging, owner):
    make_service(staging, owner, name="api", image="nginx:1.26", port="80")
    make_service(staging, owner, name="cache", kind="tcp", image="redis:7", port="6379")
    make_service(staging, owner, name="legacy", image="nginx:1.20", port="80")
    text = """
apiVersion: ale/v1
kind: Environment
spec:
  services:
    - name: api
      kind: web
      image: nginx:1.27
      port: 80
      resources: {replicas: 3}
    - name: cache
      kind: tcp
      image: redis:7
      port: 6379
    - name: new-one
      kind: web
      image: busybox:1.36
      port: 8080
      state: stopped
      env: [{name: TOKEN, secret: API_TOKEN}]
"""
    document = yaml_document.parse_document(text.encode(), staging)
    plan = yaml_document.plan(staging, document)
    assert [p.name for p in plan.created] == ["new-one"]
    assert [p.name for p in plan.unchanged] == ["cache"]
    [api] = plan.changed
    assert [(c.field, c.old, c.new) for c in api.changes] == [
        ("image", "nginx:1.26", "nginx:1.27"),
        ("resources.replicas", "1", "3"),
    ]
    assert plan.untouched == ["legacy"]
    assert plan.missing_secrets == ["API_TOKEN"]
    assert plan.firewall_change is None


def test_it_shows_the_preview_and_applies_only_on_confirm(owner_client, staging, htmx_headers, django_capture_on_commit_callbacks):
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n"
    url = reverse("environments:yaml-preview", args=[staging.public_id])
    response = owner_client.post(url, {"file": upload("env.yaml", text)}, headers=htmx_headers)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Apply YAML to staging" in body and "data-yaml-created" in body and "<code>api</code>" in body
    assert not Service.objects.filter(environment=staging).exists()
    token = re.search(r'name="token" value="([^"]+)"', body).group(1)
    carried = re.search(r'name="yaml" value="([^"]+)"', body).group(1)
    assert base64.b64decode(carried).decode() == text

    apply_url = reverse("environments:yaml-apply", args=[staging.public_id])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_client.post(apply_url, {"yaml": carried, "token": token}, headers=htmx_headers)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("environments:detail", args=[staging.public_id])
    service = Service.objects.get(environment=staging, name="api")
    assert service.revisions.get().cause == "yaml"
    # One task for everything, which fans out to the services.
    assert enqueued(callbacks) == [("environments.tasks.reconcile_environment", (staging.pk, [service.pk]))]


def test_it_refuses_to_confirm_a_file_other_than_the_previewed_one(owner_client, staging, htmx_headers):
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n"
    url = reverse("environments:yaml-preview", args=[staging.public_id])
    body = owner_client.post(url, {"file": upload("env.yaml", text)}, headers=htmx_headers).content.decode()
    token = re.search(r'name="token" value="([^"]+)"', body).group(1)
    other = base64.b64encode(text.replace("nginx:1.27", "evil/miner:1").encode()).decode()
    response = owner_client.post(reverse("environments:yaml-apply", args=[staging.public_id]), {"yaml": other, "token": token}, headers=htmx_headers)
    assert "differs from the one previewed" in response.content.decode()
    assert not Service.objects.filter(environment=staging).exists()


def test_it_binds_the_token_to_the_environment_and_the_user(owner_client, member_client, staging, main_env, htmx_headers):
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services: []\n"
    body = owner_client.post(
        reverse("environments:yaml-preview", args=[staging.public_id]), {"file": upload("e.yaml", text)}, headers=htmx_headers
    ).content.decode()
    token = re.search(r'name="token" value="([^"]+)"', body).group(1)
    carried = base64.b64encode(text.encode()).decode()
    for client, env in ((owner_client, main_env), (member_client, staging)):
        response = client.post(reverse("environments:yaml-apply", args=[env.public_id]), {"yaml": carried, "token": token}, headers=htmx_headers)
        assert "differs from the one previewed" in response.content.decode()


# --- apply: atomic, idempotent, bulk ------------------------------------------------------------


def _shop_file(main_env, owner) -> bytes:
    make_shop(main_env, owner)
    main_env.services.filter(name="web").update(custom_domains=[])
    return yaml_document.export_yaml(main_env).encode()


def test_it_applies_all_or_nothing(main_env, staging, owner, monkeypatch):
    data = _shop_file(main_env, owner)
    make_service(staging, owner, name="db", kind="tcp", image="postgres:15", port="5432")
    before = Service.objects.get(environment=staging, name="db").snapshot()

    def fail(*args, **kwargs):
        raise RuntimeError("the database went away")

    # A failure after the services are written, while their revisions are being written.
    monkeypatch.setattr(Revision.objects, "bulk_create", fail)
    with pytest.raises(RuntimeError):
        yaml_document.import_file(owner, staging, data)
    assert list(Service.objects.filter(environment=staging).values_list("name", flat=True)) == ["db"]
    db = Service.objects.get(environment=staging, name="db")
    assert db.snapshot() == before
    assert db.generation == 1


def test_it_changes_nothing_when_the_same_file_is_applied_twice(main_env, staging, owner, django_capture_on_commit_callbacks):
    data = _shop_file(main_env, owner)
    with django_capture_on_commit_callbacks(execute=False):
        first = yaml_document.import_file(owner, staging, data)
    assert first.change_count == 3
    generations = dict(Service.objects.filter(environment=staging).values_list("name", "generation"))
    revisions = Revision.objects.filter(service__environment=staging).count()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        second = yaml_document.import_file(owner, staging, data)
    assert (second.change_count, second.unchanged) == (0, ["db", "web", "worker"])
    assert dict(Service.objects.filter(environment=staging).values_list("name", "generation")) == generations
    assert Revision.objects.filter(service__environment=staging).count() == revisions
    assert callbacks == []


def test_it_changes_a_service_with_a_new_revision(staging, owner, django_capture_on_commit_callbacks):
    service = make_service(staging, owner, name="api", image="nginx:1.26", port="80")
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80, state: stopped}\n"
    with django_capture_on_commit_callbacks(execute=False):
        result = yaml_document.import_file(owner, staging, text.encode())
    assert result.changed == ["api"]
    service.refresh_from_db()
    assert (service.image, service.desired_state, service.status, service.generation) == ("nginx:1.27", "stopped", "stopping", 2)
    assert list(service.revisions.values_list("number", "cause")) == [(2, "yaml"), (1, "deploy")]


def test_it_applies_200_services_in_a_bounded_number_of_queries(staging, owner, django_assert_max_num_queries, django_capture_on_commit_callbacks):
    services = "".join(f"    - {{name: s{i:03}, kind: web, image: 'nginx:1.27', port: 80}}\n" for i in range(200))
    data = f"apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n{services}".encode()
    # 200 running services are far beyond the default profile: operations would allocate more.
    ResourceAllocation.objects.create(
        space=staging.project.space, on_demand_cpu_millicores=100_000, on_demand_memory_mib=100_000, max_running_services=200
    )
    with django_capture_on_commit_callbacks(execute=False), django_assert_max_num_queries(30):
        result = yaml_document.import_file(owner, staging, data)
    assert len(result.created) == 200


def test_it_refuses_a_name_held_by_a_service_being_deleted(staging, owner):
    delete_service(owner, make_service(staging, owner, name="api"))
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n"
    with pytest.raises(ValidationError, match="api is being deleted"):
        yaml_document.import_file(owner, staging, text.encode())


def database_file(disk: str, replicas: int = 1) -> bytes:
    resources = f"{{disk: {disk}, replicas: {replicas}}}" if disk else f"{{replicas: {replicas}}}"
    return (
        "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"
        f"    - {{name: db, kind: tcp, image: 'postgres:16', port: 5432, resources: {resources}}}\n"
    ).encode()


def test_it_refuses_replicas_with_a_disk_from_a_file(staging, owner):
    with pytest.raises(yaml_document.DocumentError, match=r"spec.services\[0\].resources.replicas.*runs one replica"):
        yaml_document.import_file(owner, staging, database_file("1Gi", replicas=2))
    assert not Service.objects.filter(environment=staging).exists()


@pytest.mark.parametrize("disk, says", [("1Gi", "never shrink"), ("", "cannot be removed")])
def test_it_refuses_a_file_that_shrinks_or_drops_a_disk(staging, owner, disk, says):
    service = make_service(staging, owner, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi")
    with pytest.raises(yaml_document.DocumentError, match=rf"spec.services\[0\].resources.disk.*2 GiB.*{says}") as raised:
        yaml_document.import_file(owner, staging, database_file(disk))
    assert "Deleting the service deletes its disk" in str(raised.value)
    service.refresh_from_db()
    assert (service.disk_mib, service.generation) == (2048, 1)


def test_it_grows_a_disk_from_a_file(staging, owner, django_capture_on_commit_callbacks):
    service = make_service(staging, owner, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi")
    with django_capture_on_commit_callbacks(execute=False):
        result = yaml_document.import_file(owner, staging, database_file("4Gi"))
    assert result.changed == ["db"]
    service.refresh_from_db()
    assert service.disk_mib == 4096


def test_it_refuses_at_apply_a_shrink_the_preview_did_not_see(staging, owner, django_capture_on_commit_callbacks):
    service = make_service(staging, owner, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi")
    document = yaml_document.parse_document(database_file("3Gi"), staging)
    form = ServiceForm({**spec_of(service), "disk": "5Gi"}, environment=staging, service=service)
    assert form.is_valid(), form.errors
    deploy_service(owner, staging, form.cleaned_data, service)
    with pytest.raises(ValidationError, match="db: .*5 GiB"):
        yaml_document.apply_document(owner, staging, document)
    service.refresh_from_db()
    assert service.disk_mib == 5120


def test_it_refuses_a_domain_another_environment_uses(main_env, staging, owner):
    make_shop(main_env, owner)
    with pytest.raises(yaml_document.DocumentError, match=r"spec.services\[1\].customDomains \(line \d+\): shop.example.com is already used"):
        yaml_document.parse_document(yaml_document.export_yaml(main_env).encode(), staging)


def test_it_needs_a_confirmation_to_open_the_firewall_from_a_file(staging, owner):
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services: []\n  firewall: {allowExternalTcp: true, allowCidrs: ['10.1.2.3/8']}\n"
    with pytest.raises(ValidationError, match="opens the environment to all IP addresses"):
        yaml_document.import_file(owner, staging, text.encode())
    staging.refresh_from_db()
    assert staging.allow_external_tcp is False
    yaml_document.import_file(owner, staging, text.encode(), confirm_firewall=True)
    staging.refresh_from_db()
    assert (staging.allow_external_tcp, staging.external_allow_cidrs) == (True, ["10.0.0.0/8"])


# --- views: method, anonymous, outsider ---------------------------------------------------------


def test_it_downloads_the_yaml_as_an_attachment(member_client, main_env, owner):
    make_service(main_env, owner, name="api")
    response = member_client.get(reverse("environments:download-yaml", args=[main_env.public_id]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="shop-main.ale.yaml"'
    assert yaml.safe_load(response.content)["spec"]["services"][0]["name"] == "api"


@pytest.mark.parametrize("name", ["download-yaml", "yaml-preview", "yaml-apply"])
def test_it_hides_the_yaml_views_from_outsiders_and_anonymous_users(client, outsider_client, main_env, name):
    url = reverse(f"environments:{name}", args=[main_env.public_id])
    method = "get" if name == "download-yaml" else "post"
    assert getattr(outsider_client, method)(url).status_code == 404
    response = getattr(client, method)(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(("name", "wrong"), [("download-yaml", "post"), ("yaml-preview", "get"), ("yaml-apply", "get")])
def test_it_refuses_the_wrong_method(owner_client, main_env, name, wrong):
    assert getattr(owner_client, wrong)(reverse(f"environments:{name}", args=[main_env.public_id])).status_code == 405


def test_it_asks_for_a_file_when_none_is_sent(owner_client, main_env, htmx_headers):
    response = owner_client.post(reverse("environments:yaml-preview", args=[main_env.public_id]), headers=htmx_headers)
    assert "Choose a YAML file to upload." in response.content.decode()


def test_it_shows_the_preview_as_a_page_without_javascript(owner_client, main_env):
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n"
    response = owner_client.post(reverse("environments:yaml-preview", args=[main_env.public_id]), {"file": upload("e.yaml", text)})
    assert response.status_code == 200
    body = response.content.decode()
    assert '<section class="card yaml-preview"' in body and "data-yaml-apply" in body


def test_it_applies_without_javascript_and_redirects_to_the_cards(owner_client, staging):
    text = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80}\n"
    body = owner_client.post(reverse("environments:yaml-preview", args=[staging.public_id]), {"file": upload("e.yaml", text)}).content.decode()
    fields = {name: re.search(rf'name="{name}" value="([^"]+)"', body).group(1) for name in ("yaml", "token")}
    response = owner_client.post(reverse("environments:yaml-apply", args=[staging.public_id]), fields, follow=True)
    assert response.redirect_chain == [(reverse("environments:detail", args=[staging.public_id]), 302)]
    assert "YAML applied: 1 created, 0 changed, 0 unchanged." in response.content.decode()
    assert Service.objects.filter(environment=staging, name="api").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_serialises_applies_with_the_service_verbs(main_env, owner, celery_queue):
    import threading

    from django.db import connection

    service = make_service(main_env, owner, name="api", image="nginx:1.26", port="80")
    images = [f"nginx:1.{minor}" for minor in range(27, 32)]
    errors: list[BaseException] = []

    def apply_files() -> None:
        try:
            for image in images:
                text = f"apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {{name: api, kind: web, image: '{image}', port: 80}}\n"
                yaml_document.import_file(owner, main_env, text.encode())
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    def redeploy() -> None:
        try:
            for _ in range(5):
                service_actions.redeploy_service(owner, Service.objects.get(pk=service.pk))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # The threads commit for real: their tasks go to the test's own queue, dropped after it.
    threads = [threading.Thread(target=apply_files), threading.Thread(target=redeploy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    service.refresh_from_db()
    # 1 deploy + 5 files + 5 redeploys, none lost, revision numbers without duplicates.
    assert service.generation == 11
    assert sorted(service.revisions.values_list("number", flat=True)) == list(range(1, 12))
    assert service.image == "nginx:1.31"


def test_it_carries_a_git_service_with_its_build_settings_and_keeps_its_built_image(main_env, staging, owner, django_capture_on_commit_callbacks):
    Cluster.objects.filter(pk=main_env.cluster_id).update(registry="registry.local:5000/ale")
    main_env.cluster.refresh_from_db()
    staging.cluster.refresh_from_db()
    service = make_service(
        main_env, owner, name="app", source="git", image="", repository_url="https://github.com/acme/shop.git",
        branch="main", repository_path="services/app", dockerfile="Dockerfile.prod",
        build_args="NODE_ENV=production", git_token_secret="GIT_TOKEN",
    )
    # What a finished build leaves on the service.
    Service.objects.filter(pk=service.pk).update(image="registry.local:5000/ale/app:b1")
    text = yaml_document.export_yaml(main_env)
    document = yaml.safe_load(text)
    assert document["spec"]["services"][0]["repository"] == {
        "url": "https://github.com/acme/shop.git", "branch": "main", "path": "services/app",
        "dockerfile": "Dockerfile.prod", "buildArgs": [{"name": "NODE_ENV", "value": "production"}], "tokenSecret": "GIT_TOKEN",
    }
    assert "image" not in document["spec"]["services"][0]
    assert document["spec"]["secrets"] == ["GIT_TOKEN"]

    with django_capture_on_commit_callbacks(execute=False):
        assert yaml_document.import_file(owner, staging, text.encode()).created == ["app"]
        assert spec_part(yaml_document.export_yaml(staging)) == spec_part(text)
        # Applied again where it came from: nothing changes, and the built image stays.
        again = yaml_document.import_file(owner, main_env, text.encode())
    assert again.unchanged == ["app"]
    service.refresh_from_db()
    assert service.image == "registry.local:5000/ale/app:b1"
    assert yaml_document.plan(staging, yaml_document.parse_document(text.encode(), staging)).missing_secrets == ["GIT_TOKEN"]


def test_it_knows_every_spec_field():
    # A field added to the spec must be written by `service_document` and read back by
    # `_service_form_data`, or a YAML round trip silently drops it: extend both, then this list.
    carried = {
        "kind", "source", "image", "repository_url", "branch", "repository_path", "dockerfile", "build_args",
        "git_token_secret", "port", "command", "args", "env_vars", "capacity", "cpu_millicores", "memory_mib",
        "disk_mib", "replicas", "health_check_path", "custom_domains",
    }
    assert set(SPEC_FIELDS) == carried


def test_it_says_which_header_a_file_lacks_or_gets_wrong(staging):
    bare = b"services:\n  - name: web\n"
    with pytest.raises(yaml_document.DocumentError) as raised:
        yaml_document.parse_document(bare, staging)
    said = "\n".join(raised.value.messages)
    assert "the document needs apiVersion ale/v1." in said and "the document needs kind Environment." in said
    assert "None" not in said

    wrong = b"apiVersion: ale/v2\nkind: Service\nspec: {}\n"
    with pytest.raises(yaml_document.DocumentError) as raised:
        yaml_document.parse_document(wrong, staging)
    said = "\n".join(raised.value.messages)
    assert "apiVersion (line 1): this reads apiVersion ale/v1, not 'ale/v2'." in said
    assert "kind (line 2): expected kind Environment, not 'Service'." in said
