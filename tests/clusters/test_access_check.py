"""The cluster access check: ale asks a cluster for every permission its code uses and names
what is missing, at registration (command and admin) and on demand in the admin.

Against a devcluster with a restricted identity: its admin identity holds everything, the
restricted one only what its rules grant, so the missing permissions are known exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from clusters.models import Cluster
from clusters.permissions import Permission, check_access, required_permissions
from devcluster import RESTRICTED_CONTEXT, DevCluster
from tests.deploy.test_rbac import derive

# What the restricted identity may do: read and watch, and create namespaces; nothing in apps.
RESTRICTED = ["get,list,watch:namespaces,pods,events,jobs.batch,deployments.apps", "create,patch:namespaces"]


@pytest.fixture(scope="module")
def restricted_devcluster() -> Iterator[DevCluster]:
    with DevCluster(pod_ready_seconds=0.2, restricted_identity=RESTRICTED) as dc:
        yield dc


@pytest.fixture(scope="module")
def kubeconfig_text(restricted_devcluster, tmp_path_factory) -> str:
    path = restricted_devcluster.write_kubeconfig(tmp_path_factory.mktemp("access") / "kubeconfig")
    return Path(path).read_text()


def make_kubeconfig_cluster(name: str, kubeconfig: str, context: str = "") -> Cluster:
    return Cluster.objects.create(name=name, connection=Cluster.Connection.KUBECONFIG, kubeconfig=kubeconfig,
                                  context=context)


def expected_missing() -> list[str]:
    """What the restricted rules leave out of the derived needs, spelled as the check spells it."""
    granted = {
        (group, resource, verb)
        for rule in RESTRICTED
        for verb in rule.split(":")[0].split(",")
        for item in rule.split(":")[1].split(",")
        for resource, group in [(item.partition(".")[0], item.partition(".")[2])]
    }
    # Every authenticated user may review its own access (system:basic-user), restricted or not.
    granted.add(("authorization.k8s.io", "selfsubjectaccessreviews", "create"))
    return sorted(str(Permission(g, r, v)) for g, r, v in derive()["cluster"] - granted)


def test_it_checks_exactly_what_the_rbac_derivation_finds_in_the_code(db):
    # One source of truth: the rules the derivation holds rbac.yaml to, the lease's only where it lives.
    kubeconfig_cluster = Cluster(name="prod", connection=Cluster.Connection.KUBECONFIG)
    assert {(p.group, p.resource, p.verb) for p in required_permissions(kubeconfig_cluster)} == derive()["cluster"]
    assert all(not p.namespace for p in required_permissions(kubeconfig_cluster))
    this = Cluster(name="this", connection=Cluster.Connection.IN_CLUSTER)
    leases = {(p.group, p.resource, p.verb) for p in required_permissions(this) if p.namespace}
    assert leases == derive()["leader"]


@pytest.mark.django_db
def test_it_finds_nothing_missing_for_the_admin_identity(kubeconfig_text):
    result = check_access(make_kubeconfig_cluster("full", kubeconfig_text))
    assert result.complete, result.summary()
    assert len(result.checked) == len(derive()["cluster"])
    assert result.summary() == f"All {len(derive()['cluster'])} permissions ale uses in 'full' are granted."


@pytest.mark.django_db
def test_it_names_each_permission_the_restricted_identity_lacks(kubeconfig_text):
    result = check_access(make_kubeconfig_cluster("limited", kubeconfig_text, RESTRICTED_CONTEXT))
    assert not result.error
    assert sorted(str(p) for p in result.missing) == expected_missing()
    names = [str(p) for p in result.missing]
    assert "create deployments.apps" in names and "get pods/log" in names and "create pods/exec" in names
    assert "list pods" not in names and "create namespaces" not in names


@pytest.mark.django_db
def test_it_lists_the_missing_permissions_when_registering(kubeconfig_text, tmp_path, capsys):
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text)
    call_command("register_cluster", "--name", "limited", "--kubeconfig", str(path), "--context", RESTRICTED_CONTEXT)
    out, err = capsys.readouterr()
    assert "Registered cluster 'limited'" in out
    missing = expected_missing()
    assert f"{len(missing)} of the {len(derive()['cluster'])} permissions ale uses in 'limited' are missing" in err
    assert sorted(line.strip() for line in err.splitlines()[1:]) == missing
    # Registered all the same: the missing rules can be granted afterwards.
    assert Cluster.objects.filter(name="limited").exists()


@pytest.mark.django_db
def test_it_says_when_registering_that_all_is_granted(kubeconfig_text, tmp_path, capsys):
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text)
    call_command("register_cluster", "--name", "full", "--kubeconfig", str(path))
    out, err = capsys.readouterr()
    assert f"All {len(derive()['cluster'])} permissions ale uses in 'full' are granted." in out
    assert err == ""


@pytest.mark.django_db
def test_it_registers_an_unreachable_cluster_and_says_it_could_not_check(tmp_path, capsys):
    path = tmp_path / "kubeconfig"
    # A port nothing listens on: refused at once.
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }))
    call_command("register_cluster", "--name", "away", "--kubeconfig", str(path))
    _, err = capsys.readouterr()
    assert "Could not check ale's access to 'away': The cluster 'away' cannot be reached." in err
    assert Cluster.objects.filter(name="away").exists()


@pytest.fixture
def admin_client_(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_the_admin_page_lists_the_missing_permissions(admin_client_, kubeconfig_text, restricted_devcluster):
    cluster = make_kubeconfig_cluster("limited", kubeconfig_text, RESTRICTED_CONTEXT)
    change = admin_client_.get(reverse("admin:clusters_cluster_change", args=[cluster.pk])).content.decode()
    access_url = reverse("admin:clusters_cluster_access", args=[cluster.pk])
    assert f'href="{access_url}"' in change  # the "Check access" button

    page = admin_client_.get(access_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"{len(expected_missing())} of the" in html and 'id="missing-permissions"' in html
    table = html.split('id="missing-permissions"', 1)[1].split("</table>", 1)[0]
    rows = table.count("<tr>") - 1  # the header row
    assert rows == len(expected_missing())
    assert "<td>deployments</td>" in table and "<td>pods/log</td>" in table
    assert restricted_devcluster.restricted_token not in html


@pytest.mark.django_db
def test_the_admin_page_says_all_is_granted_for_the_admin_identity(admin_client_, kubeconfig_text):
    cluster = make_kubeconfig_cluster("full", kubeconfig_text)
    html = admin_client_.get(reverse("admin:clusters_cluster_access", args=[cluster.pk])).content.decode()
    assert "are granted" in html and 'id="missing-permissions"' not in html


@pytest.mark.django_db
def test_the_admin_action_reports_each_selected_cluster(admin_client_, kubeconfig_text):
    limited = make_kubeconfig_cluster("limited", kubeconfig_text, RESTRICTED_CONTEXT)
    full = make_kubeconfig_cluster("full", kubeconfig_text)
    response = admin_client_.post(
        reverse("admin:clusters_cluster_changelist"),
        {"action": "check_access_action", "_selected_action": [limited.pk, full.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert f"{len(expected_missing())} of the {len(derive()['cluster'])} permissions ale uses in &#x27;limited&#x27; are " \
           "missing" in html and "create deployments.apps" in html
    assert "permissions ale uses in &#x27;full&#x27; are granted" in html


@pytest.mark.django_db
def test_registering_in_the_admin_reports_the_missing_permissions(admin_client_, kubeconfig_text):
    data = {
        "name": "limited", "display_name": "", "connection": "kubeconfig", "kubeconfig": kubeconfig_text,
        "context": RESTRICTED_CONTEXT, "ingress_domain": "", "ingress_controller_namespace": "",
        "external_host": "", "external_service_type": "NodePort", "spot_node_selector": "{}",
        "spot_tolerations": "[]", "builder_image": "gcr.io/kaniko-project/executor:v1.23.2", "registry": "",
        "registry_secret": "", "build_cpu_millicores": "1000", "build_memory_mib": "2048",
        "build_deadline_seconds": "1800", "tls": "none", "storage_class": "", "tls_issuer": "",
    }
    response = admin_client_.post(reverse("admin:clusters_cluster_add"), data, follow=True)
    html = response.content.decode()
    assert Cluster.objects.filter(name="limited").exists(), html[:3000]
    assert f"{len(expected_missing())} of the {len(derive()['cluster'])} permissions ale uses in &#x27;limited&#x27; are " \
           "missing" in html and "get pods/log" in html


@pytest.mark.django_db
def test_the_access_page_of_a_missing_cluster_is_404_and_needs_staff(admin_client_, django_user_model):
    assert admin_client_.get(reverse("admin:clusters_cluster_access", args=[999999])).status_code == 404
    client = admin_client_
    client.force_login(django_user_model.objects.create_user("plain", "plain@example.com", "pw"))
    cluster = Cluster.objects.get(name="local")
    response = client.get(reverse("admin:clusters_cluster_access", args=[cluster.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
