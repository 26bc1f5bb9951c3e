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
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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


# Django's WSGI handler; the transaction-friendly signal handling is set up per test by ``in_process``.
schema = schemathesis.openapi.from_dict(generated_schema())
schema.app = WSGIHandler()


@pytest.fixture
def in_process(db, settings, catalog) -> Iterator[None]:
    """Serve the WSGI handler inside the test's transaction, with a catalog, a scenario and an endpoint.

    Like Django's own test client it leaves the connection alone between requests (the handler would
    otherwise close it at each request's start and end, ending the test transaction).
    """
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
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


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_5xx_or_contradicts_the_schema(case, in_process: None, api_key: str) -> None:
    case.call_and_validate(
        headers={"X-API-Key": api_key},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_headers_conformance, response_schema_conformance, negative_data_rejection],
    )
