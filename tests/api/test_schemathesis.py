"""The API fuzzed from its own OpenAPI document against a live server: no 5xx, and every answer
matches the document. Bounded (a few examples per operation) to fit the suite's time."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.api.helpers import make_service, make_token

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

EXAMPLES_PER_OPERATION = 12


def test_it_holds_to_its_openapi_document(live_server, client, owner, main_env, settings):
    settings.API_MAX_WAIT_SECONDS = 1
    settings.API_RATE_LIMIT = 100_000
    make_service(main_env, owner)
    headers = {"Authorization": f"Bearer {make_token(owner)}"}
    schema = schemathesis.openapi.from_dict(client.get("/api/v1/openapi.json").json())
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(base_url=live_server.url, headers=headers, checks=checks, timeout=10)

        run()
