"""The hostile-file corpus: every file is refused with a message naming its line and field,
nothing is applied, no server error, and parsing stays within a few MiB of memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from django.urls import reverse

from environments.yaml_document import MAX_BYTES, DocumentError, parse_document
from services.models import Service

pytestmark = pytest.mark.django_db

CORPUS = Path(__file__).parent / "hostile"

# file → fragments the messages must contain (all of them).
EXPECTED: dict[str, list[str]] = {
    "billion_laughs.yaml": ["line 3, column 4", "anchors (&a) are not allowed"],
    "python_object.yaml": ["line 7", "tag:yaml.org,2002:python/object/apply:os.system is not allowed"],
    "python_name.yaml": ["line 3", "python/name:os.system is not allowed"],
    "custom_tag.yaml": ["line 4", "the tag !include is not allowed"],
    "deep_nesting.yaml": ["line 22, column 39: the file is nested more than 20 levels deep."],
    "binary.yaml": ["binary data"],
    "latin1.yaml": ["line 4: this is not UTF-8 text"],
    "wrong_types.yaml": [
        "spec.services[0].port (line 10): expected a whole number, got text.",
        "spec.services[0].resources.replicas (line 12): expected a whole number, got text.",
        "spec.services[0].env[0].value (line 16): expected text (quote numbers and true/false), got true/false.",
        "spec.services[1].command (line 21): expected a list of text, got text.",
    ],
    "not_dns_labels.yaml": [
        "spec.services[0].name (line 5): Use at most 63 lowercase letters",
        "spec.services[1].name (line 9): Use at most 63 lowercase letters",
    ],
    "duplicate_names.yaml": ["spec.services[2].name (line 13): “api” is also the name of spec.services[0] (line 5)."],
    "unknown_fields.yaml": [
        "spec.services[0].privileged (line 9): unknown field “privileged”",
        "spec.services[0].resources.gpu (line 11): unknown field “gpu”",
    ],
    "duplicate_keys.yaml": ["line 8, column 7: spec.services[0].image is given twice."],
    "malformed.yaml": ["line 7", "this is not valid YAML"],
    "two_documents.yaml": ["line 5", "this is not valid YAML (expected a single document"],
    "not_a_mapping.yaml": ["line 1: an ale file is a mapping"],
    "invalid_values.yaml": [
        "spec.services[0].image (line 7): An image reference has no spaces.",
        "spec.services[0].resources.cpu (line 10): Give at least 0.1 vCPU.",
        "spec.services[0].resources.memory (line 11): Give the memory in MiB or GiB",
        "spec.services[1].port (line 15): A port is a whole number from 1 to 65535.",
        "spec.services[1].customDomains (line 16): Custom domains are for web services",
    ],
}


def _generated() -> dict[str, tuple[bytes, list[str]]]:
    service = "  - name: s{i}\n    kind: web\n    image: nginx:1.27\n    port: 80\n"
    many = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n" + "".join(service.format(i=i) for i in range(501))
    wide = "apiVersion: ale/v1\nkind: Environment\nspec:\n  secrets: [" + ",".join("A" for _ in range(60_000)) + "]\n"
    return {
        "ten_megabytes": (b"a: " + b"x" * (10 * 1024 * 1024) + b"\n", ["larger than 1 MiB"]),
        "one_byte_too_many": (b"#" * (MAX_BYTES + 1), ["larger than 1 MiB"]),
        "501_services": (many.encode(), ["spec.services (line 5): 501 services; an environment holds at most 500."]),
        "too_many_nodes": (wide.encode(), ["more than 50000 values"]),
        "empty": (b"", ["The file is empty."]),
        "5000_flow_levels": (b"apiVersion: ale/v1\nspec: " + b"[" * 5000 + b"]" * 5000 + b"\n", ["line 2, column", "nesting depth"]),
    }


def corpus() -> list[tuple[str, bytes, list[str]]]:
    cases = [(name, (CORPUS / name).read_bytes(), expected) for name, expected in EXPECTED.items()]
    cases += [(name, data, expected) for name, (data, expected) in _generated().items()]
    return cases


def test_it_covers_every_file_of_the_corpus():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize(("name", "data", "expected"), corpus(), ids=[case[0] for case in corpus()])
def test_it_refuses_each_hostile_file_with_a_clear_message(main_env, name, data, expected):
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError) as refused:
            parse_document(data, main_env)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = "\n".join(refused.value.messages)
    for fragment in expected:
        assert fragment in text
    # Bounded: the 10 MB file is refused on its size, a billion laughs at its first anchor.
    assert peak < 40 * 1024 * 1024, f"{name} peaked at {peak / 1024 / 1024:.1f} MiB"


@pytest.mark.parametrize(("name", "data", "expected"), corpus(), ids=[case[0] for case in corpus()])
def test_it_answers_the_upload_of_each_hostile_file_with_its_errors(owner_client, main_env, htmx_headers, name, data, expected):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("environments:yaml-preview", args=[main_env.public_id])
    response = owner_client.post(url, {"file": SimpleUploadedFile(f"{name}.yaml", data)}, headers=htmx_headers)
    assert response.status_code == 200
    body = response.content.decode()
    assert "This file cannot be applied" in body
    assert "data-yaml-apply" not in body
    from django.utils.html import escape

    assert escape(expected[0]) in body
    assert not Service.objects.filter(environment=main_env).exists()


def test_it_refuses_a_hostile_file_with_422_without_htmx(owner_client, main_env):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("environments:yaml-preview", args=[main_env.public_id])
    data = (CORPUS / "billion_laughs.yaml").read_bytes()
    response = owner_client.post(url, {"file": SimpleUploadedFile("laughs.yaml", data)})
    assert response.status_code == 422
    assert "anchors (&amp;a) are not allowed" in response.content.decode()
