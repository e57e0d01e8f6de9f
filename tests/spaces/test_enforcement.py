"""The allocation is checked before anything reaches the cluster: a refused change writes
nothing and says which limit, what it needs and what is left; the namespace's ResourceQuota
draws the same line in the cluster."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from clusters.client import client_for
from clusters.errors import ClusterError
from clusters.models import Cluster
from environments import yaml_document
from environments.actions import clone_environment, create_environment, delete_environment
from environments.manifests import render_resource_quota
from environments.tasks import reconcile_environment
from services import actions
from services.manifests import render_claim, render_deployment
from services.models import Revision, Service
from spaces.models import ResourceAllocation, ResourceProfile
from spaces.resources import AllocationExceeded, limits_for_space, usage_for_space
from tests.factories import local_cluster, make_environment, make_project
from tests.spaces.helpers import allocate, deploy, form_data

from tests.fixtures.celery_worker import celery_queue  # noqa: F401
from tests.fixtures.devcluster import devcluster  # noqa: F401

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def test_it_refuses_a_deploy_over_the_total_and_writes_nothing(space, main_env, owner):
    allocate(space, service_max_memory_mib=1024)
    deploy(main_env, owner, name="one", cpu="0.5", memory="512Mi")
    with pytest.raises(AllocationExceeded) as info:
        deploy(main_env, owner, name="two", cpu="0.5", memory="768Mi")
    assert info.value.messages == ["On-demand memory: this needs 0.75 GiB, 0.5 GiB of 1 GiB is left"]
    assert list(Service.objects.values_list("name", flat=True)) == ["one"]
    assert Revision.objects.count() == 1


def test_it_refuses_spot_when_spot_is_full_and_on_demand_is_not(space, main_env, owner):
    allocate(space, spot_memory_mib=512)
    deploy(main_env, owner, name="one", memory="512Mi", capacity="spot")
    deploy(main_env, owner, name="two", memory="512Mi")  # on-demand: its own total
    with pytest.raises(AllocationExceeded, match=r"^\['Spot memory: this needs 0.5 GiB, 0 GiB of 0.5 GiB is left'\]$"):
        deploy(main_env, owner, name="three", memory="512Mi", capacity="spot")


def test_it_refuses_scaling_past_the_total_and_keeps_the_running_spec(space, main_env, owner):
    allocate(space, max_replicas_per_service=4)
    service = deploy(main_env, owner, cpu="0.5", memory="256Mi")
    with pytest.raises(AllocationExceeded, match="On-demand vCPU: this needs 1.5 vCPU, 1.0 vCPU of 1.0 vCPU is left"):
        deploy(main_env, owner, service=service, cpu="0.5", memory="256Mi", replicas=3, **{"name": "api"})
    service.refresh_from_db()
    assert (service.replicas, service.generation, service.revisions.count()) == (1, 1, 1)


def test_it_counts_a_service_once_when_its_own_spec_changes(space, main_env, owner):
    allocate(space)
    service = deploy(main_env, owner, cpu="0.5", memory="512Mi")
    # 0.5 → 1.0 vCPU fits a 1 vCPU total only because the old 0.5 is replaced, not added.
    deploy(main_env, owner, service=service, cpu="0.5", memory="512Mi", replicas=2)
    service.refresh_from_db()
    assert service.replicas == 2


def test_it_applies_the_per_service_maximums_and_replicas(space, main_env, owner):
    allocate(space)
    with pytest.raises(AllocationExceeded, match=r"vCPU per service \(api\): this needs 0.75 vCPU, at most 0.5 vCPU"):
        deploy(main_env, owner, cpu="0.75")
    with pytest.raises(AllocationExceeded, match="Replicas per service \\(api\\): this needs 3, at most 2 are allowed"):
        deploy(main_env, owner, cpu="0.1", memory="64Mi", replicas=3)
    assert not Service.objects.exists()


def test_it_counts_the_disk_of_tcp_services_only(space, main_env, owner):
    allocate(space, on_demand_disk_mib=1024)
    deploy(main_env, owner, name="web")
    deploy(main_env, owner, name="db", kind="tcp", port=5432, disk="1Gi")
    with pytest.raises(AllocationExceeded, match="On-demand disk: this needs 0.5 GiB, 0 GiB of 1 GiB is left"):
        deploy(main_env, owner, name="db2", kind="tcp", port=5432, disk="512Mi")


def test_it_counts_the_disk_of_a_stopped_service_but_not_its_cpu(space, main_env, owner):
    allocate(space, on_demand_disk_mib=1024, on_demand_cpu_millicores=500)
    db = deploy(main_env, owner, name="db", kind="tcp", port=5432, disk="1Gi", cpu="0.5")
    actions.stop_service(owner, db)
    usage = usage_for_space(space)
    assert (usage.used("on_demand", "disk"), usage.used("on_demand", "cpu"), usage.running_services) == (1024, 0, 0)
    # Its claim still holds the disk: no room for another one...
    with pytest.raises(AllocationExceeded, match="On-demand disk: this needs 0.5 GiB, 0 GiB of 1 GiB is left"):
        deploy(main_env, owner, name="db2", kind="tcp", port=5432, disk="512Mi", cpu="0.5")
    # ...while its CPU is free for another service.
    deploy(main_env, owner, name="web", cpu="0.5")


def test_it_counts_a_disk_once_when_its_service_starts_again(space, main_env, owner):
    allocate(space, on_demand_disk_mib=1024)
    db = deploy(main_env, owner, name="db", kind="tcp", port=5432, disk="1Gi")
    db = actions.stop_service(owner, db)
    actions.start_service(owner, db)
    assert usage_for_space(space).used("on_demand", "disk") == 1024


def test_it_frees_the_disk_of_a_deleted_service(space, main_env, owner):
    allocate(space, on_demand_disk_mib=1024)
    db = deploy(main_env, owner, name="db", kind="tcp", port=5432, disk="1Gi")
    actions.delete_service(owner, actions.stop_service(owner, db))
    deploy(main_env, owner, name="db2", kind="tcp", port=5432, disk="1Gi")


def test_it_counts_the_disks_of_stopped_services_from_a_file(space, main_env, owner):
    allocate(space, on_demand_disk_mib=1024)
    text = (
        "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"
        + "".join(f"    - {{name: db{i}, kind: tcp, image: 'postgres:16', port: 5432, state: stopped, resources: {{disk: 768Mi}}}}\n" for i in range(2))
    )
    with pytest.raises(AllocationExceeded, match="On-demand disk: this needs 1.5 GiB, 1 GiB of 1 GiB is left"):
        yaml_document.import_file(owner, main_env, text.encode())
    assert not Service.objects.exists()


def test_it_limits_running_services_and_frees_a_slot_on_stop(space, main_env, owner):
    allocate(space, max_running_services=2)
    one = deploy(main_env, owner, name="one", cpu="0.1", memory="64Mi")
    deploy(main_env, owner, name="two", cpu="0.1", memory="64Mi")
    with pytest.raises(AllocationExceeded, match="Running services: this needs 1, 0 of 2 is left"):
        deploy(main_env, owner, name="three", cpu="0.1", memory="64Mi")
    actions.stop_service(owner, one)
    deploy(main_env, owner, name="three", cpu="0.1", memory="64Mi")
    with pytest.raises(AllocationExceeded, match="Running services"):
        actions.start_service(owner, Service.objects.get(name="one"))
    assert Service.objects.get(name="one").desired_state == Service.DesiredState.STOPPED


def test_it_counts_every_environment_of_the_space_and_no_other_space(space, project, main_env, owner, member):
    allocate(space, max_running_services=1)
    other_env = make_environment(project, by=owner, name="staging")
    deploy(main_env, owner, name="one", cpu="0.1", memory="64Mi")
    with pytest.raises(AllocationExceeded):
        deploy(other_env, owner, name="two", cpu="0.1", memory="64Mi")
    # The member's own default space has an allocation of its own.
    elsewhere = make_project(member.memberships.get(space__is_default=True).space, by=member, name="mine")
    deploy(elsewhere.environments.get(), member, name="two", cpu="0.1", memory="64Mi")


def test_it_frees_what_a_deleted_environment_held(space, project, main_env, owner):
    allocate(space, max_running_services=1)
    staging = make_environment(project, by=owner, name="staging")
    deploy(staging, owner, name="one", cpu="0.1", memory="64Mi")
    delete_environment(acting_user=owner, environment=staging)
    deploy(main_env, owner, name="two", cpu="0.1", memory="64Mi")


def test_it_starts_all_or_none(space, main_env, owner):
    allocate(space)
    services = [deploy(main_env, owner, name=f"s{i}", cpu="0.4", memory="128Mi") for i in range(2)]
    for service in services:
        actions.stop_service(owner, service)
    deploy(main_env, owner, name="big", cpu="0.4", memory="128Mi")
    with pytest.raises(AllocationExceeded, match="On-demand vCPU: this needs 0.8 vCPU, 0.6 vCPU of 1.0 vCPU is left"):
        actions.start_all(owner, main_env)
    assert set(Service.objects.filter(name__in=["s0", "s1"]).values_list("desired_state", flat=True)) == {"stopped"}


def test_it_checks_a_rollback_to_a_bigger_revision(space, main_env, owner):
    allocate(space)
    service = deploy(main_env, owner, cpu="0.5", memory="512Mi")
    deploy(main_env, owner, service=service, cpu="0.1", memory="64Mi")
    deploy(main_env, owner, name="other", cpu="0.5", memory="128Mi")
    deploy(main_env, owner, name="third", cpu="0.1", memory="64Mi")
    with pytest.raises(AllocationExceeded, match="On-demand vCPU: this needs 0.5 vCPU, 0.4 vCPU of 1.0 vCPU is left"):
        actions.rollback_service(owner, service, service.revisions.get(number=1))
    service.refresh_from_db()
    assert (service.cpu_millicores, service.revisions.count()) == (100, 2)


def test_it_refuses_a_yaml_file_over_the_allocation_and_applies_nothing(space, main_env, owner):
    allocate(space)
    text = (
        "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"
        + "".join(f"    - {{name: s{i}, kind: web, image: 'nginx:1.27', port: 80, resources: {{cpu: 0.4, memory: 256Mi}}}}\n" for i in range(3))
    )
    with pytest.raises(AllocationExceeded, match="On-demand vCPU: this needs 1.2 vCPU, 1.0 vCPU of 1.0 vCPU is left"):
        yaml_document.import_file(owner, main_env, text.encode())
    assert not Service.objects.exists()


def test_it_refuses_a_clone_whose_services_exceed_the_per_service_maximum(space, project, main_env, owner):
    service = deploy(main_env, owner, cpu="1")
    allocate(space)
    with pytest.raises(AllocationExceeded, match=r"vCPU per service \(api\): this needs 1.0 vCPU"):
        clone_environment(acting_user=owner, source=main_env, name="copy", cluster=local_cluster())
    assert not project.environments.filter(name="copy").exists()
    # Clones are stopped: over the totals is fine, they only count once started.
    ResourceAllocation.objects.filter(space=space).update(service_max_cpu_millicores=1000, on_demand_cpu_millicores=1000)
    clone = clone_environment(acting_user=owner, source=main_env, name="copy", cluster=local_cluster())
    assert clone.services.get().desired_state == Service.DesiredState.STOPPED
    assert service.environment_id == main_env.pk


def test_it_refuses_a_clone_whose_disks_exceed_the_total(space, project, main_env, owner):
    allocate(space, on_demand_disk_mib=1536)
    db = deploy(main_env, owner, name="db", kind="tcp", port=5432, disk="1Gi")
    actions.stop_service(owner, db)
    # The clone is stopped, but its claim would hold another 1 GiB.
    with pytest.raises(AllocationExceeded, match="On-demand disk: this needs 1 GiB, 0.5 GiB of 1.5 GiB is left"):
        clone_environment(acting_user=owner, source=main_env, name="copy", cluster=local_cluster())
    assert not project.environments.filter(name="copy").exists()


# --- views: the refusal is a message, and nothing changes ------------------------------------------


def test_it_shows_the_refusal_in_the_deploy_modal(space, main_env, member_client):
    allocate(space, on_demand_memory_mib=256)
    response = member_client.post(
        reverse("services:deploy", args=[main_env.public_id]), form_data(memory="512Mi"), **HX
    )
    assert response.status_code == 200
    assert "On-demand memory: this needs 0.5 GiB, 256 MiB of 256 MiB is left" in response.content.decode()
    assert not Service.objects.exists()


def test_it_shows_the_refusal_of_a_start_on_the_card(space, main_env, owner, member_client):
    allocate(space, max_running_services=1)
    stopped = deploy(main_env, owner, name="one", cpu="0.1", memory="64Mi")
    actions.stop_service(owner, stopped)
    deploy(main_env, owner, name="two", cpu="0.1", memory="64Mi")
    response = member_client.post(reverse("services:start", args=[stopped.public_id]), **HX)
    assert "Running services: this needs 1, 0 of 1 is left" in response.content.decode()
    stopped.refresh_from_db()
    assert stopped.desired_state == Service.DesiredState.STOPPED


def test_it_shows_the_refusal_of_start_all(space, main_env, owner, member_client):
    allocate(space, max_running_services=1)
    for name in ("one", "two"):
        actions.stop_service(owner, deploy(main_env, owner, name=name, cpu="0.1", memory="64Mi"))
    response = member_client.post(reverse("services:start-all", args=[main_env.public_id]), follow=True)
    assert "Running services: this needs 2, 1 of 1 is left" in response.content.decode()
    assert not Service.objects.filter(desired_state=Service.DesiredState.RUNNING).exists()


def test_it_shows_the_refusal_of_a_clone_in_the_create_form(space, project, main_env, owner, member_client):
    deploy(main_env, owner, cpu="1")
    allocate(space)
    response = member_client.post(
        reverse("environments:create", args=[project.public_id]),
        {"mode": "clone", "source": main_env.public_id, "name": "copy", "cluster": local_cluster().pk},
        **HX,
    )
    assert "vCPU per service (api): this needs 1.0 vCPU" in response.content.decode()
    assert not project.environments.filter(name="copy").exists()


# --- concurrency: two deploys that fit alone but not together --------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_lets_only_one_of_two_concurrent_deploys_through(celery_queue):
    from tests.factories import make_space, make_user

    owner = make_user("racer")
    space = make_space(owner=owner, name="race")
    project = make_project(space, by=owner, name="race")
    # Two environments: the deploys lock different environment rows, so only the space's
    # row makes them take turns.
    environments = {"a": project.environments.get(), "b": make_environment(project, by=owner, name="staging")}
    allocate(space, on_demand_cpu_millicores=500)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def deploy_one(name: str) -> None:
        try:
            barrier.wait(5)
            deploy(environments[name], owner, name=name, cpu="0.4", memory="64Mi")
            outcomes.append("deployed")
        except AllocationExceeded as exc:
            outcomes.append(exc.messages[0])
        except BaseException as exc:  # surfaced by the assertion below
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=deploy_one, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["On-demand vCPU: this needs 0.4 vCPU, 0.1 vCPU of 0.5 vCPU is left", "deployed"]
    assert Service.objects.filter(environment__project=project).count() == 1


# --- the ResourceQuota -----------------------------------------------------------------------------


def test_it_renders_the_quota_with_the_spaces_totals(space, main_env):
    allocate(space)
    quota = render_resource_quota(main_env, limits_for_space(space))
    assert quota["metadata"]["name"] == "ale-quota"
    assert quota["metadata"]["namespace"] == main_env.namespace
    assert quota["metadata"]["labels"]["ale.dev/space"] == space.public_id
    assert quota["spec"]["hard"] == {
        "requests.cpu": "2000m",
        "limits.cpu": "2000m",
        "requests.memory": "2048Mi",
        "limits.memory": "2048Mi",
        "requests.storage": "4096Mi",
        "pods": "8",
    }


def test_it_declares_a_tcp_services_disk_as_the_claim_storage_the_quota_counts(space, main_env, owner):
    db = deploy(main_env, owner, name="db", kind="tcp", port=5432, disk="1Gi")
    assert render_claim(db)["spec"]["resources"]["requests"] == {"storage": "1024Mi"}
    container = render_deployment(db)["spec"]["template"]["spec"]["containers"][0]
    assert "ephemeral-storage" not in container["resources"]["limits"]
    assert "ephemeral-storage" not in container["resources"]["requests"]
    web = deploy(main_env, owner, name="web")
    assert render_claim(web) is None


def test_it_uses_the_default_profile_without_an_allocation(space):
    limits = limits_for_space(space)
    assert (limits.on_demand_cpu_millicores, limits.max_running_services, limits.max_replicas_per_service) == (8000, 20, 10)


def test_it_lets_an_allocation_override_its_profile_field_by_field(space):
    allocate(space, spot_memory_mib=4096)
    limits = limits_for_space(space)
    assert (limits.spot_memory_mib, limits.on_demand_memory_mib) == (4096, 1024)


def test_it_sums_usage_in_one_query(space, project, main_env, owner, django_assert_num_queries):
    staging = make_environment(project, by=owner, name="staging")
    for env in (main_env, staging):
        deploy(env, owner, name="web", cpu="0.25", memory="256Mi", replicas=2)
        deploy(env, owner, name="db", kind="tcp", port=5432, disk="1Gi", capacity="spot")
    with django_assert_num_queries(1):
        usage = usage_for_space(space)
    assert usage.used("on_demand", "cpu") == 1000
    assert usage.used("spot", "disk") == 2048
    assert (usage.running_services, usage.replicas) == (4, 6)


def reconciled_environment(space, project, owner, devcluster, name: str):
    """An environment of the allocated space on a devcluster of its own, reconciled (so it
    carries `ale-quota`), and a client for that cluster."""
    from devcluster import kubeconfig_text

    cluster = Cluster.objects.create(
        name=name, display_name=name, connection=Cluster.Connection.KUBECONFIG,
        kubeconfig=kubeconfig_text(devcluster.url, devcluster.token), ingress_domain="localtest.me",
    )
    allocate(space)
    environment = create_environment(acting_user=owner, project=project, name=name, cluster=cluster)
    assert reconcile_environment.apply(args=[environment.pk]).result == "applied"
    return environment, client_for(cluster)


def test_the_devcluster_refuses_a_pod_beyond_the_quota_the_environment_carries(space, project, owner, devcluster):
    """The environment's reconcile applies `ale-quota`; the cluster then holds the same line
    for whatever goes around ale."""
    environment, kube = reconciled_environment(space, project, owner, devcluster, "quota")
    quota = kube.get("v1", "ResourceQuota", "ale-quota", environment.namespace)
    assert quota["spec"]["hard"]["limits.memory"] == "2048Mi"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "around-ale", "namespace": environment.namespace},
        "spec": {"containers": [{
            "name": "app", "image": "nginx:1.27",
            "resources": {"requests": {"cpu": "100m", "memory": "3Gi"}, "limits": {"cpu": "100m", "memory": "3Gi"}},
        }]},
    }
    with pytest.raises(ClusterError) as info:
        kube.apply([pod])
    assert info.value.status == 403
    assert "exceeded quota: ale-quota" in str(info.value)


def test_the_devcluster_refuses_a_claim_beyond_the_storage_the_environment_carries(space, project, owner, devcluster):
    environment, kube = reconciled_environment(space, project, owner, devcluster, "storage")
    assert kube.get("v1", "ResourceQuota", "ale-quota", environment.namespace)["spec"]["hard"]["requests.storage"] == "4096Mi"

    def claim(name: str, size: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": environment.namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        }

    kube.apply([claim("fits", "3Gi")])
    with pytest.raises(ClusterError) as info:
        kube.apply([claim("around-ale", "2Gi")])
    assert info.value.status == 403
    assert "exceeded quota: ale-quota" in str(info.value)


# --- operations set the allocation in the admin ------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("ops", "ops@example.com", "x")
    client.force_login(admin)
    return client


@pytest.mark.parametrize("model", ["resourceprofile", "resourceallocation", "invitation", "auditentry", "space"])
def test_the_admin_lists_and_opens_the_models(admin_client, space, model):
    assert admin_client.get(reverse(f"admin:spaces_{model}_changelist")).status_code == 200
    if model in ("resourceprofile", "resourceallocation"):
        assert admin_client.get(reverse(f"admin:spaces_{model}_add")).status_code == 200
    assert admin_client.get(reverse("admin:spaces_space_change", args=[space.pk])).status_code == 200


def test_saving_an_allocation_in_the_admin_reapplies_the_quotas(admin_client, space, project, main_env, owner, django_capture_on_commit_callbacks):
    staging = make_environment(project, by=owner, name="staging")
    developer = ResourceProfile.objects.get(name="developer")
    data = {"space": space.pk, "profile": developer.pk, "max_running_services": "3"}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(reverse("admin:spaces_resourceallocation_add"), data)
    assert response.status_code == 302
    reconciled = sorted(cb.args[0] for cb in callbacks if hasattr(cb, "func") and cb.func.__self__.name == "environments.tasks.reconcile_environment")
    assert reconciled == sorted([main_env.pk, staging.pk])
    limits = limits_for_space(space)
    assert (limits.max_running_services, limits.on_demand_cpu_millicores) == (3, 2000)
