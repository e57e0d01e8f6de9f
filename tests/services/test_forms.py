"""The deploy modal's rules, one field at a time."""

from __future__ import annotations

from typing import Any

import pytest

from services.actions import deploy_service
from services.forms import ServiceForm, form_data_from_spec, spec_of

pytestmark = pytest.mark.django_db


def make_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "api",
        "kind": "web",
        "source": "image",
        "image": "ghcr.io/acme/api:v2",
        "port": "8080",
        "command": "",
        "args": "",
        "env_vars": "",
        "capacity": "on_demand",
        "cpu": "0.25",
        "memory": "256",
        "disk": "",
        "replicas": "1",
        "health_check_path": "/",
        "custom_domains": "",
    }
    data.update(overrides)
    return data


def errors_for(env, service=None, **overrides: Any) -> dict[str, list[str]]:
    form = ServiceForm(make_data(**overrides), environment=env, service=service)
    form.is_valid()
    return form.errors


def cleaned(env, **overrides: Any) -> dict[str, Any]:
    form = ServiceForm(make_data(**overrides), environment=env)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def test_it_accepts_a_minimal_web_service(main_env):
    form = ServiceForm(make_data(), environment=main_env)
    assert form.is_valid(), form.errors
    assert form.spec == {
        "kind": "web",
        "source": "image",
        "image": "ghcr.io/acme/api:v2",
        "repository_url": "",
        "branch": "",
        "repository_path": "",
        "dockerfile": "Dockerfile",
        "build_args": [],
        "git_token_secret": "",
        "port": 8080,
        "command": [],
        "args": [],
        "env_vars": [],
        "capacity": "on_demand",
        "cpu_millicores": 250,
        "memory_mib": 256,
        "disk_mib": 0,
        "replicas": 1,
        "health_check_path": "/",
        "custom_domains": [],
    }


@pytest.mark.parametrize("name", ["API", "1api", "api-", "a" * 64, "my_api", "api.v2"])
def test_it_refuses_names_that_are_not_dns_labels(main_env, name):
    assert "lowercase letters" in errors_for(main_env, name=name)["name"][0]


def test_it_refuses_a_name_taken_in_the_environment(main_env, owner):
    deploy_service(owner, main_env, cleaned(main_env))
    assert errors_for(main_env)["name"] == ["This environment already has a service with this name."]


def test_it_allows_the_same_name_in_another_environment(main_env, owner, project):
    from tests.factories import make_environment

    deploy_service(owner, main_env, cleaned(main_env))
    other = make_environment(project, by=owner, name="staging")
    assert errors_for(other) == {}


def test_it_keeps_the_name_fixed_on_edit(main_env, owner):
    service = deploy_service(owner, main_env, cleaned(main_env))
    form = ServiceForm(make_data(name="renamed", replicas="3"), environment=main_env, service=service)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == "api"
    assert form.cleaned_data["replicas"] == 3


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:1.27",
        "library/nginx:1.27-alpine",
        "ghcr.io/acme/api:v2",
        "registry.example.com:5000/team/app",
        "localhost/app:dev",
        "Registry.Example.com/team/app:Latest",
        "alpine@sha256:" + "a" * 64,
        "ghcr.io/acme/api:v2@sha256:" + "0123456789abcdef" * 4,
    ],
)
def test_it_accepts_image_references(main_env, image):
    assert cleaned(main_env, image=image)["image"] == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("ghcr.io/Acme/api", "Repository names are lowercase"),
        ("nginx:1.27 latest", "no spaces"),
        ("nginx:", "not an image reference"),
        ("https://ghcr.io/acme/api", "not an image reference"),
        ("alpine@sha256:abc", "not an image reference"),
        ("-nginx", "not an image reference"),
    ],
)
def test_it_refuses_bad_image_references(main_env, image, message):
    assert message in errors_for(main_env, image=image)["image"][0]


def test_it_requires_an_image_for_an_image_source(main_env):
    assert errors_for(main_env, image="  ")["image"] == ["Give the container image to run."]


def test_it_accepts_a_git_source_and_drops_a_typed_image(main_env):
    data = cleaned(
        main_env, source="git", image="nginx:1.27", repository_url="https://github.com/acme/shop.git",
        branch="main", build_args="PYTHON=3.12\nMODE=prod", git_token_secret="GIT_TOKEN",
    )
    assert data["source"] == "git"
    # The image of a Git service is what its builds push, never what was typed.
    assert data["image"] == ""
    assert data["build_args"] == [{"name": "PYTHON", "value": "3.12"}, {"name": "MODE", "value": "prod"}]
    assert data["git_token_secret"] == "GIT_TOKEN"


def test_it_requires_a_repository_and_branch_for_a_git_source(main_env):
    errors = errors_for(main_env, source="git", repository_url="", branch="")
    assert "repository_url" in errors and "branch" in errors


def test_it_refuses_secrets_as_build_arguments(main_env):
    errors = errors_for(
        main_env, source="git", repository_url="https://github.com/acme/shop.git", branch="main",
        build_args="TOKEN=${{ secrets.TOKEN }}",
    )
    assert "do not pass secrets" in errors["build_args"][0]


def test_it_refuses_a_git_source_on_a_cluster_without_registry(main_env):
    main_env.cluster.registry = ""
    main_env.cluster.save(update_fields=["registry"])
    errors = errors_for(main_env, source="git", repository_url="https://github.com/acme/shop.git", branch="main")
    assert "no image registry" in errors["source"][0]


def test_it_keeps_valid_git_fields_given_with_an_image(main_env):
    data = cleaned(
        main_env, repository_url="https://github.com/acme/shop.git", branch="feature/x", repository_path="api"
    )
    assert (data["repository_url"], data["branch"], data["repository_path"]) == (
        "https://github.com/acme/shop.git",
        "feature/x",
        "api",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repository_url", "not a url"),
        ("repository_url", "ftp://example.com/repo"),
        ("branch", "feature..x"),
        ("branch", "has space"),
        ("branch", "ends.lock"),
        ("repository_path", "../secrets"),
        ("repository_path", "/etc"),
        ("dockerfile", "../Dockerfile"),
    ],
)
def test_it_refuses_bad_git_fields(main_env, field, value):
    assert field in errors_for(main_env, **{field: value})


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http"])
def test_it_refuses_ports_outside_the_range(main_env, port):
    assert errors_for(main_env, port=port)["port"] == ["A port is a whole number from 1 to 65535."]


def test_it_splits_command_and_args_like_a_shell(main_env):
    data = cleaned(main_env, command="sh -c 'echo \"hello world\"; sleep 1'", args="--port 80 --name 'a b'")
    assert data["command"] == ["sh", "-c", 'echo "hello world"; sleep 1']
    assert data["args"] == ["--port", "80", "--name", "a b"]


@pytest.mark.parametrize("field", ["command", "args"])
def test_it_refuses_unbalanced_quotes(main_env, field):
    assert "quote is not closed" in errors_for(main_env, **{field: "echo 'hello"})[field][0]


def test_it_parses_environment_variables(main_env):
    text = "\n".join(
        [
            "# database",
            "DATABASE_URL=postgres://db:5432/app?sslmode=disable",
            "",
            "  GREETING = \"  hello = world  \"  ",
            "EMPTY=",
            "_PRIVATE='x'",
            "TOKEN=${{ secrets.API_TOKEN }}",
            "OTHER=${{secrets.OTHER}}",
        ]
    )
    assert cleaned(main_env, env_vars=text)["env_vars"] == [
        {"name": "DATABASE_URL", "value": "postgres://db:5432/app?sslmode=disable"},
        {"name": "GREETING", "value": "  hello = world  "},
        {"name": "EMPTY", "value": ""},
        {"name": "_PRIVATE", "value": "x"},
        {"name": "TOKEN", "secret": "API_TOKEN"},
        {"name": "OTHER", "secret": "OTHER"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JUST_A_KEY", "Line 1: write KEY=value."),
        ("# c\n1ABC=x", "Line 2: “1ABC” is not a valid variable name"),
        ("MY-VAR=x", "Line 1: “MY-VAR” is not a valid variable name"),
        ("A=1\nB=2\n\nA=3", "Line 4: A is already set on line 1."),
        ("URL=http://${{ secrets.HOST }}/x", "Line 1: a secret reference is the whole value"),
    ],
)
def test_it_refuses_bad_environment_lines_naming_the_line(main_env, text, message):
    assert errors_for(main_env, env_vars=text)["env_vars"][0].startswith(message)


def test_it_reports_every_bad_environment_line(main_env):
    assert len(errors_for(main_env, env_vars="A\nB\nC=1")["env_vars"]) == 2


@pytest.mark.parametrize(("cpu", "millicores"), [("0.1", 100), ("0.25", 250), ("1", 1000), ("2.125", 2125), ("16", 16000)])
def test_it_stores_cpu_as_millicores(main_env, cpu, millicores):
    assert cleaned(main_env, cpu=cpu)["cpu_millicores"] == millicores


@pytest.mark.parametrize(
    ("cpu", "message"),
    [
        ("0.05", "Give at least 0.1 vCPU."),
        ("0", "Give at least 0.1 vCPU."),
        ("17", "At most 16 vCPU per replica."),
        ("0.1234", "at most three decimals"),
        ("lots", "Give the CPU as a number of vCPU"),
        ("", "Give the CPU in vCPU, at least 0.1."),
    ],
)
def test_it_refuses_cpu_out_of_bounds(main_env, cpu, message):
    assert message in errors_for(main_env, cpu=cpu)["cpu"][0]


@pytest.mark.parametrize(
    ("memory", "mib"),
    [("512", 512), ("512Mi", 512), ("512 MiB", 512), ("1Gi", 1024), ("1.5 GiB", 1536), ("2G", 2048), ("16", 16)],
)
def test_it_accepts_memory_in_mib_or_gib(main_env, memory, mib):
    assert cleaned(main_env, memory=memory)["memory_mib"] == mib


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ("15", "Give at least 16 MiB of memory."),
        ("1.5", "whole number of MiB"),
        ("1 TB", "Give the memory in MiB or GiB"),
        ("lots", "Give the memory in MiB or GiB"),
        ("65Gi", "At most 64Gi of memory per replica."),
    ],
)
def test_it_refuses_bad_memory(main_env, memory, message):
    assert message in errors_for(main_env, memory=memory)["memory"][0]


def test_it_gives_tcp_services_a_disk(main_env):
    assert cleaned(main_env, kind="tcp", disk="10Gi")["disk_mib"] == 10240


def test_it_refuses_a_disk_for_a_web_service(main_env):
    assert "Only TCP services" in errors_for(main_env, disk="1Gi")["disk"][0]


def test_it_refuses_an_oversized_disk(main_env):
    assert "At most 100Gi of disk." in errors_for(main_env, kind="tcp", disk="101Gi")["disk"][0]


ONE_REPLICA = "A service with a disk runs one replica: its disk attaches to one pod at a time."


def make_database(env, owner, disk: str = "2Gi"):
    return deploy_service(owner, env, cleaned(env, name="db", kind="tcp", port="5432", disk=disk))


def test_it_refuses_replicas_with_a_disk(main_env):
    assert errors_for(main_env, kind="tcp", disk="1Gi", replicas="2")["replicas"] == [ONE_REPLICA]


def test_it_allows_replicas_without_a_disk(main_env):
    assert cleaned(main_env, kind="tcp", replicas="3")["replicas"] == 3
    assert cleaned(main_env, kind="tcp", disk="1Gi", replicas="1")["disk_mib"] == 1024


def test_it_refuses_more_replicas_for_a_service_that_has_a_disk(main_env, owner):
    service = make_database(main_env, owner)
    errors = errors_for(main_env, service, name="db", kind="tcp", port="5432", disk="2Gi", replicas="2")
    assert errors["replicas"] == [ONE_REPLICA]


def test_it_refuses_to_shrink_a_disk(main_env, owner):
    service = make_database(main_env, owner)
    [message] = errors_for(main_env, service, name="db", kind="tcp", port="5432", disk="1Gi")["disk"]
    assert "2 GiB" in message and "never shrink" in message
    assert "Deleting the service deletes its disk" in message


def test_it_refuses_to_remove_a_disk(main_env, owner):
    service = make_database(main_env, owner)
    [message] = errors_for(main_env, service, name="db", kind="tcp", port="5432", disk="")["disk"]
    assert "2 GiB" in message and "cannot be removed" in message
    assert "Deleting the service deletes its disk" in message


def test_it_refuses_to_turn_a_service_with_a_disk_into_a_web_service(main_env, owner):
    service = make_database(main_env, owner)
    [message] = errors_for(main_env, service, name="db", kind="web", port="5432", disk="")["kind"]
    assert "2 GiB disk" in message and "Deleting the service deletes its disk" in message


def test_it_lets_a_disk_grow(main_env, owner):
    service = make_database(main_env, owner)
    form = ServiceForm(make_data(name="db", kind="tcp", port="5432", disk="5Gi"), environment=main_env, service=service)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["disk_mib"] == 5120
    # Unchanged is fine too.
    assert not errors_for(main_env, service, name="db", kind="tcp", port="5432", disk="2048Mi")


def test_it_lets_a_service_without_a_disk_get_one(main_env, owner):
    service = deploy_service(owner, main_env, cleaned(main_env, name="db", kind="tcp", port="5432"))
    assert not errors_for(main_env, service, name="db", kind="tcp", port="5432", disk="1Gi")


@pytest.mark.parametrize("replicas", ["0", "51"])
def test_it_refuses_replicas_outside_1_to_50(main_env, replicas):
    assert errors_for(main_env, replicas=replicas)["replicas"] == ["Replicas is a whole number from 1 to 50."]


def test_it_defaults_the_health_check_path_to_root(main_env):
    assert cleaned(main_env, health_check_path="")["health_check_path"] == "/"


@pytest.mark.parametrize("path", ["healthz", "/health z"])
def test_it_refuses_bad_health_check_paths(main_env, path):
    assert "health_check_path" in errors_for(main_env, health_check_path=path)


def test_it_normalises_custom_domains(main_env):
    data = cleaned(main_env, custom_domains="Shop.Example.com, www.example.com.\napi.example.org  ")
    assert data["custom_domains"] == ["shop.example.com", "www.example.com", "api.example.org"]


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        ("shop.example.com, SHOP.example.com", "shop.example.com is listed twice."),
        ("localhost", "not a full domain name"),
        ("-bad.example.com", "not a valid domain name"),
        ("*.example.com", "not a valid domain name"),
        ("https://shop.example.com/", "without http://"),
        ("10.0.0.1", "is an IP address"),
        ("api-abc.localtest.me", "which ale uses for Access URLs"),
    ],
)
def test_it_refuses_bad_custom_domains(main_env, domains, message):
    assert message in errors_for(main_env, custom_domains=domains)["custom_domains"][0]


def test_it_refuses_custom_domains_for_tcp_services(main_env):
    assert "for web services" in errors_for(main_env, kind="tcp", custom_domains="db.example.com")["custom_domains"][0]


def test_it_refuses_a_custom_domain_another_service_uses(main_env, owner):
    deploy_service(owner, main_env, cleaned(main_env, custom_domains="shop.example.com"))
    errors = errors_for(main_env, name="web", custom_domains="shop.example.com")
    assert errors["custom_domains"] == ["shop.example.com is already used by another service."]


def test_it_lets_a_service_keep_its_own_custom_domain(main_env, owner):
    service = deploy_service(owner, main_env, cleaned(main_env, custom_domains="shop.example.com"))
    assert errors_for(main_env, service=service, custom_domains="shop.example.com") == {}


def test_it_prefills_the_modal_from_a_service_and_round_trips(main_env, owner):
    env_text = 'A=1\nSPACED=" x "\nQUOTED="\'q\'"\nS=${{ secrets.DB }}'
    first = cleaned(
        main_env,
        kind="tcp",
        command="sh -c 'run \"it\"'",
        env_vars=env_text,
        memory="1.5Gi",
        disk="2Gi",
        cpu="0.5",
        replicas="1",
    )
    service = deploy_service(owner, main_env, first)
    initial = spec_of(service)
    assert initial["name"] == "api"
    assert initial["cpu"] == "0.5"
    assert initial["memory"] == "1536Mi"
    assert initial["disk"] == "2Gi"
    again = ServiceForm(form_data_from_spec(service.snapshot(), name="api"), environment=main_env, service=service)
    assert again.is_valid(), again.errors
    assert again.spec == service.snapshot()
    assert ServiceForm(environment=main_env, service=service).initial["env_vars"].splitlines()[-1] == (
        "S=${{ secrets.DB }}"
    )
