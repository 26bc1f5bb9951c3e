"""The OpenAPI schema, Swagger UI without a CDN, and a schemathesis run over every operation.

The schemathesis run is in-process (Django's WSGI handler inside the test transaction), so runs it
creates are never dispatched (their on-commit hook never fires) and nothing it writes outlives the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import json

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import ignored_auth

from simulations.models import Endpoint, Scenario

CATALOG_OPERATIONS = {("GET", "/api/simulator/exams"), ("GET", "/api/simulator/exams/{exam_id}"),
                      ("GET", "/api/simulator/exams/modalities"), ("POST", "/api/simulator/exams/select")}


def test_the_schema_documents_every_operation_with_examples_for_the_catalog(db) -> None:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    operations = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert CATALOG_OPERATIONS | {("POST", "/api/simulator/runs"), ("GET", "/api/simulator/runs/{run_id}/events"),
                                 ("POST", "/api/simulator/runs/{run_id}/cancel"),
                                 ("POST", "/api/simulator/endpoints/{endpoint_id}/check")} <= operations
    for method, path in CATALOG_OPERATIONS:
        operation = schema["paths"][path][method.lower()]
        examples = [name for status in operation["responses"].values()
                    for name in status.get("content", {}).get("application/json", {}).get("examples", {})]
        assert examples, f"{method} {path} has no response examples"
        assert {"401", "403"} <= set(operation["responses"])
    select = schema["paths"]["/api/simulator/exams/select"]["post"]
    assert select["requestBody"]["content"]["application/json"]["examples"]
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKeyAuth"]["description"]}
    assert schema["components"]["schemas"]["Error"]["properties"]["error"]
    assert '{"error": {"code"' in schema["info"]["description"]


def test_swagger_ui_is_served_from_the_sidecar_without_a_cdn(db) -> None:
    page = APIClient().get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()


# -- schemathesis --------------------------------------------------------------------------------

def generated_schema() -> dict:
    """The schema /api/schema/ serves, generated in-process (no request, no database needed)."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


# Every check schemathesis has (call_and_validate without ``checks``). One allowance, for one operation:
# a body of POST runs can be well-formed and still name a scenario that does not exist, give both a
# scenario and steps, or hold steps the catalog cannot satisfy; that is a 400 no schema can foresee.
CONFIG = SchemathesisConfig.from_dict({"operations": [{
    "include-operation-id": "runs_create",
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409",
                                                                   "429"]}},
}]})

# Django's WSGI handler; the transaction-friendly signal handling is set up per test by ``in_process``.
schema = schemathesis.openapi.from_dict(generated_schema(), config=CONFIG)
schema.app = WSGIHandler()


@pytest.fixture
def in_process(db, settings, catalog) -> Iterator[None]:
    """Serve the WSGI handler inside the test's transaction, with a catalog, a scenario and an endpoint.

    Like Django's own test client it leaves the connection alone between requests (the handler would
    otherwise close it at each request's start and end, ending the test transaction). Runs it starts
    are never dispatched (no commit), so the in-flight quotas are lifted for it.
    """
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    settings.LIMITS = {**settings.LIMITS, "RUNS_IN_FLIGHT": 100_000, "RUNS_IN_FLIGHT_PER_OWNER": 100_000}
    Scenario.objects.create(name="Outpatient MR knee", steps=[
        {"step_type": "GENERATE_HL7", "modality": "MR", "body_part": "KNEE"}, {"step_type": "SEND_HL7"}])
    # Nobody listens on port 1: a check of it fails fast, as a result, not as an error.
    Endpoint.objects.create(name="ris", kind="hl7", host="127.0.0.1", port=1, connect_timeout=0.5, timeout=0.5)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


CSRF_TOKEN = "S" * 32


@pytest.fixture
def staff_cookies(db, django_user_model) -> dict[str, str]:
    """The cookies of a logged-in staff browser (session and CSRF): the writes of scenarios and
    endpoints are staff-only, so only this credential reaches their validation."""
    from django.test import Client

    client = Client()
    client.force_login(django_user_model.objects.create_user("schemathesis", password="pw", is_staff=True))
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF_TOKEN}


EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@EXAMPLES
def test_no_operation_answers_5xx_or_contradicts_the_schema(case, in_process: None, api_key: str) -> None:
    case.call_and_validate(headers={"X-API-Key": api_key})  # every check schemathesis has


@schema.exclude(operation_id_regex="^(?!scenarios_create$|endpoints_create$)").parametrize()
@EXAMPLES
def test_the_staff_writes_answer_no_5xx_and_match_the_schema(case, in_process: None,
                                                              staff_cookies: dict[str, str]) -> None:
    # The schema's cookieAuth makes schemathesis generate a session cookie: the real one replaces it.
    # ignored_auth would take this session for a generated one; the key test covers these operations' auth.
    case.cookies = {**(case.cookies or {}), **staff_cookies}
    case.call_and_validate(headers={"X-CSRFToken": CSRF_TOKEN}, excluded_checks=[ignored_auth])


def test_the_staff_credential_of_that_run_reaches_the_writes(in_process: None, staff_cookies: dict[str, str]) -> None:
    """Guards the test above: had the session failed, every answer would be a 401/403 and prove nothing."""
    operation = schema["/api/simulator/endpoints"]["POST"]
    case = operation.Case(body={"name": "pacs", "kind": "storage", "host": "127.0.0.1", "port": 104,
                                "ae_title": "PACS"}, cookies=staff_cookies, media_type="application/json")
    assert case.call(headers={"X-CSRFToken": CSRF_TOKEN}).status_code == 201
    case.body = {**case.body, "name": "pacs2", "host": 123}  # the numeric host schemathesis found
    response = case.call(headers={"X-CSRFToken": CSRF_TOKEN})
    assert response.status_code == 400 and "host" in response.json()["error"]["details"]
