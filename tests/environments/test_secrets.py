"""Secret Management: encryption at rest, rotation, masking everywhere, the views, and the
Secret `ale-env` every service reads, applied to the devcluster for real."""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from clusters.client import client_for
from environments import actions
from environments.manifests import ENV_SECRET, render_env_secret
from environments.models import EnvironmentVariable
from environments.secrets import SecretDecryptionError, decrypt
from environments.tasks import reconcile_environment
from services.actions import stop_service
from services.manifests import render_deployment
from spaces.actions import create_project
from tests.environments.travel import enqueued, make_service
from tests.fixtures.clusters import kube_cluster  # noqa: F401
from tests.fixtures.devcluster import kubeconfig_path  # noqa: F401

pytestmark = pytest.mark.django_db

PLAINTEXT = "s3cr3t-Pa55word-that-must-never-show"


def set_secret(environment, user, key: str = "DB_PASSWORD", value: str = PLAINTEXT, *, is_secret: bool = True):
    return actions.set_variables(acting_user=user, environment=environment, values={key: value}, is_secret=is_secret)


def raw_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {EnvironmentVariable._meta.db_table}")
        return cursor.fetchall()


# --- at rest ---------------------------------------------------------------------------------------


def test_it_stores_no_plaintext_in_the_table(main_env, owner):
    set_secret(main_env, owner)
    set_secret(main_env, owner, "MODE", "production-mode-visible", is_secret=False)
    rows = raw_rows()
    assert len(rows) == 2
    dump = repr(rows)
    assert PLAINTEXT not in dump
    assert "production-mode-visible" not in dump
    assert base64.b64encode(PLAINTEXT.encode()).decode() not in dump
    row = EnvironmentVariable.objects.get(key="DB_PASSWORD")
    assert row.value == PLAINTEXT


def test_it_rotates_every_row_to_the_newest_key(main_env, owner, settings):
    old_key = settings.ALE_SECRET_KEYS[0]
    set_secret(main_env, owner)
    before = EnvironmentVariable.objects.get().value_encrypted
    new_key = Fernet.generate_key().decode()
    settings.ALE_SECRET_KEYS = [new_key, old_key]
    call_command("rotate_secrets")
    after = EnvironmentVariable.objects.get().value_encrypted
    assert after != before
    # Only the new key is needed now.
    settings.ALE_SECRET_KEYS = [new_key]
    assert decrypt(after) == PLAINTEXT
    settings.ALE_SECRET_KEYS = [old_key]
    with pytest.raises(SecretDecryptionError):
        decrypt(after)


def test_it_skips_current_rows_and_reports_unreadable_ones_without_values(main_env, owner, settings, capsys):
    set_secret(main_env, owner)
    call_command("rotate_secrets")
    assert "0 re-encrypted, 1 already under the newest key." in capsys.readouterr().out
    settings.ALE_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError) as failed:
        call_command("rotate_secrets")
    assert "1 value(s) open with none of the configured keys" in str(failed.value)
    assert PLAINTEXT not in str(failed.value)


# --- the UI ---------------------------------------------------------------------------------------


def test_it_masks_secrets_and_shows_plain_variables(member_client, main_env, owner):
    set_secret(main_env, owner)
    set_secret(main_env, owner, "MODE", "production", is_secret=False)
    body = member_client.get(reverse("environments:settings", args=[main_env.public_id])).content.decode()
    assert PLAINTEXT not in body
    assert '<tr data-variable="DB_PASSWORD">' in body and "••••••" in body
    assert '<code class="plain-value">production</code>' in body


def test_it_never_shows_a_secret_value_on_any_page(owner_client, main_env, owner, admin_client):
    set_secret(main_env, owner)
    row = EnvironmentVariable.objects.get()
    pages = [
        owner_client.get(reverse("environments:detail", args=[main_env.public_id])),
        owner_client.get(reverse("environments:events", args=[main_env.public_id])),
        owner_client.get(reverse("environments:settings", args=[main_env.public_id])),
        owner_client.get(reverse("environments:download-yaml", args=[main_env.public_id])),
        admin_client.get(reverse("admin:environments_environmentvariable_changelist")),
        admin_client.get(reverse("admin:environments_environmentvariable_change", args=[row.pk])),
    ]
    for response in pages:
        assert response.status_code == 200
        content = response.content.decode()
        assert PLAINTEXT not in content
        assert row.value_encrypted not in content
    assert "DB_PASSWORD" in pages[3].content.decode()


def test_it_adds_and_replaces_a_secret_and_offers_a_restart(owner_client, main_env, owner, htmx_headers, django_capture_on_commit_callbacks):
    make_service(main_env, owner, name="api")
    url = reverse("environments:variable-set", args=[main_env.public_id])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_client.post(url, {"key": "DB_PASSWORD", "value": PLAINTEXT, "is_secret": "on"}, headers=htmx_headers)
    body = response.content.decode()
    assert response.status_code == 200
    assert "DB_PASSWORD added." in body and "Restart services that use them" in body and "all 1 running service" in body
    assert PLAINTEXT not in body
    assert enqueued(callbacks) == [("environments.tasks.reconcile_environment", (main_env.pk,))]
    owner_client.post(url, {"key": "DB_PASSWORD", "value": "another", "is_secret": ""}, headers=htmx_headers)
    row = EnvironmentVariable.objects.get()
    # Replaced, and still a secret: a form without the box ticked does not reveal it.
    assert (row.value, row.is_secret) == ("another", True)


def test_it_restarts_the_running_services(owner_client, main_env, owner, htmx_headers):
    running = make_service(main_env, owner, name="api")
    stopped = make_service(main_env, owner, name="batch")

    stop_service(owner, stopped)
    response = owner_client.post(reverse("environments:variables-restart", args=[main_env.public_id]), headers=htmx_headers)
    assert "Restarting 1 service with the new values." in response.content.decode()
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert running.revisions.first().cause == "redeploy"
    assert stopped.desired_state == "stopped"


def test_it_deletes_a_variable(owner_client, main_env, owner, htmx_headers):
    set_secret(main_env, owner)
    url = reverse("environments:variable-delete", args=[main_env.public_id])
    assert "DB_PASSWORD deleted." in owner_client.post(url, {"key": "DB_PASSWORD"}, headers=htmx_headers).content.decode()
    assert not EnvironmentVariable.objects.exists()
    assert "There is no such variable." in owner_client.post(url, {"key": "NOPE"}, headers=htmx_headers).content.decode()


@pytest.mark.parametrize("key", ["1ABC", "WITH SPACE", "DASH-ED", ""])
def test_it_refuses_an_invalid_key(owner_client, main_env, htmx_headers, key):
    response = owner_client.post(
        reverse("environments:variable-set", args=[main_env.public_id]), {"key": key, "value": PLAINTEXT}, headers=htmx_headers
    )
    body = response.content.decode()
    assert "has-error" in body
    assert PLAINTEXT not in body
    assert not EnvironmentVariable.objects.exists()


@pytest.mark.parametrize("name", ["variable-set", "variable-delete", "variables-restart", "dotenv-preview", "dotenv-apply", "firewall"])
def test_it_guards_every_write_view(client, owner_client, outsider_client, main_env, name):
    url = reverse(f"environments:{name}", args=[main_env.public_id])
    assert owner_client.get(url).status_code == 405
    assert outsider_client.post(url, {"key": "A", "value": "b"}).status_code == 404
    response = client.post(url, {"key": "A", "value": "b"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not EnvironmentVariable.objects.exists()


def test_it_keeps_values_out_of_the_logs(main_env, owner, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=False):
        set_secret(main_env, owner)
    assert PLAINTEXT not in caplog.text
    assert PLAINTEXT not in str(EnvironmentVariable.objects.get())


# --- Kubernetes -----------------------------------------------------------------------------------


def test_it_renders_every_variable_into_the_env_secret(main_env, owner):
    secret = render_env_secret(main_env, {"B": "2", "A": PLAINTEXT})
    assert secret["metadata"]["name"] == ENV_SECRET == "ale-env"
    assert list(secret["data"]) == ["A", "B"]
    assert base64.b64decode(secret["data"]["A"]).decode() == PLAINTEXT


def test_it_gives_every_service_the_env_secret_through_env_from(main_env, owner):
    service = make_service(main_env, owner, name="api", env_vars="PASSWORD=${{ secrets.DB_PASSWORD }}")
    container = render_deployment(service)["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "ale-env", "optional": True}}]
    assert container["env"] == [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "ale-env", "key": "DB_PASSWORD", "optional": False}}}
    ]


def test_it_applies_the_env_secret_to_the_cluster_and_drops_deleted_keys(kube_cluster, space, owner):
    environment = create_project(acting_user=owner, space=space, name="vault", display_name="", cluster=kube_cluster).environments.get()
    set_secret(environment, owner)
    set_secret(environment, owner, "MODE", "prod", is_secret=False)
    assert reconcile_environment.apply(args=[environment.pk]).get() == "applied"
    kube = client_for(kube_cluster)
    stored = kube.get("v1", "Secret", "ale-env", environment.namespace)
    assert {k: base64.b64decode(v).decode() for k, v in stored["data"].items()} == {"DB_PASSWORD": PLAINTEXT, "MODE": "prod"}
    actions.delete_variable(acting_user=owner, environment=environment, key="MODE")
    reconcile_environment.apply(args=[environment.pk]).get()
    assert set(kube.get("v1", "Secret", "ale-env", environment.namespace)["data"]) == {"DB_PASSWORD"}


def test_it_refuses_to_start_in_production_without_secret_keys(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALE_SECRET_KEYS")}
    env.update(DEBUG="false", SECRET_KEY="production-like", DJANGO_SETTINGS_MODULE="ale_site.settings")
    code = "import django; django.setup()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ALE_SECRET_KEYS (or ALE_SECRET_KEYS_FILE) must be set when DEBUG is off." in result.stderr
    keys = tmp_path / "keys"
    keys.write_text(Fernet.generate_key().decode())
    env["ALE_SECRET_KEYS_FILE"] = str(keys)
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60).returncode == 0


def test_it_renders_the_settings_tab_in_the_same_queries_for_3_or_30_variables(member_client, main_env, owner, django_assert_num_queries):
    url = reverse("environments:settings", args=[main_env.public_id])
    actions.set_variables(acting_user=owner, environment=main_env, values={f"K{i}": "v" for i in range(3)}, is_secret=False)
    make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432")
    member_client.get(url)
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(conn) as few:
        member_client.get(url)
    actions.set_variables(acting_user=owner, environment=main_env, values={f"K{i}": "v" for i in range(30)}, is_secret=True)
    for i in range(5):
        make_service(main_env, owner, name=f"db{i}", kind="tcp", image="postgres:16", port="5432")
    with django_assert_num_queries(len(few)):
        member_client.get(url)


def test_it_offers_to_replace_a_secret_without_showing_it_and_to_edit_a_variable(member_client, main_env, owner):
    set_secret(main_env, owner)
    set_secret(main_env, owner, "MODE", "production", is_secret=False)
    body = member_client.get(reverse("environments:settings", args=[main_env.public_id])).content.decode()
    assert '<summary class="button button-small">Replace</summary>' in body
    assert 'id="value-DB_PASSWORD" type="password" name="value" autocomplete="new-password"' in body
    assert 'id="value-MODE" type="text" name="value" value="production"' in body
    assert PLAINTEXT not in body
