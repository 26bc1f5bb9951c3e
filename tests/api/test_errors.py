"""The one error shape: every kind of failure the API can meet, rendered by yeeter.api.exception_handler."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.test import APIClient

from exams.errors import NoIndication, NoMatchingExam
from exams.factory import InvalidFilter
from simulations.steps import ScenarioError
from yeeter.api import exception_handler


@pytest.mark.parametrize(("exc", "status", "code", "message", "details"), [
    (InvalidFilter("modality", "unknown modality 'XX'."), 400, "invalid_filter", "unknown modality 'XX'.",
     {"modality": ["unknown modality 'XX'."]}),
    (NoMatchingExam({"modality": "MG", "patient_sex": "M"}), 404, "no_matching_exam",
     "No active exam in the catalog matches modality=MG, patient_sex=M.",
     {"filters": {"modality": "MG", "patient_sex": "M"}}),
    (NoIndication("No indication fits."), 404, "not_found", "No indication fits.", None),
    (ScenarioError(["step 2 (SEND_HL7): field endpoint: no endpoint named 'x'."]), 400, "invalid_scenario",
     "The scenario is not valid: step 2 (SEND_HL7): field endpoint: no endpoint named 'x'.",
     {"problems": ["step 2 (SEND_HL7): field endpoint: no endpoint named 'x'."]}),
    (DjangoValidationError({"port": ["This endpoint needs a port."]}), 400, "invalid",
     "The request is not valid: port: This endpoint needs a port.", {"port": ["This endpoint needs a port."]}),
    (DjangoValidationError("Broken."), 400, "invalid", "The request is not valid: Broken.",
     {"non_field_errors": ["Broken."]}),
    (exceptions.ValidationError(["Give either a scenario or steps."]), 400, "invalid",
     "The request is not valid: Give either a scenario or steps.",
     {"non_field_errors": ["Give either a scenario or steps."]}),
    (exceptions.ValidationError({"endpoints": {0: ["A valid integer is required."]}}), 400, "invalid",
     "The request is not valid: endpoints.0: A valid integer is required.",
     {"endpoints": {0: ["A valid integer is required."]}}),
    (Http404("No such thing."), 404, "not_found", "No such thing.", None),
    (DjangoPermissionDenied(), 403, "permission_denied", "You do not have permission to perform this action.",
     None),
    (exceptions.Throttled(wait=7), 429, "throttled", "Request was throttled. Expected available in 7 seconds.",
     {"wait_seconds": 7}),
])
def test_every_error_has_the_one_body_shape(exc: Exception, status: int, code: str, message: str,
                                            details) -> None:
    response = exception_handler(exc, {})
    assert response is not None
    assert response.status_code == status
    assert response.data == {"error": {"code": code, "message": message, "details": details}}


def test_an_unexpected_exception_is_left_to_the_500_handler() -> None:
    assert exception_handler(RuntimeError("bug"), {}) is None


def test_a_throttled_answer_keeps_its_retry_after_header() -> None:
    response = exception_handler(exceptions.Throttled(wait=7), {})
    assert response["Retry-After"] == "7"


def test_an_oversized_body_is_a_413_in_the_error_shape(catalog, client_with_key: APIClient, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client_with_key.post("/api/simulator/exams/select", data='{"modality": "' + "M" * 5000 + '"}',
                                    content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("client_fixture", ["staff_client", "client_with_key"])
def test_the_browsable_api_renders_for_staff_and_key_holders(catalog, request, client_fixture: str) -> None:
    client: APIClient = request.getfixturevalue(client_fixture)
    for url in ("/api/simulator/exams", "/api/simulator/exams/select", "/api/simulator/runs",
                "/api/simulator/scenarios", "/api/simulator/endpoints"):
        response = client.get(url, HTTP_ACCEPT="text/html")
        assert response["Content-Type"].startswith("text/html"), url
        assert response.status_code in {200, 405}, url


@pytest.mark.parametrize(("url", "body", "typo", "takes"), [
    ("/api/simulator/exams/select", {"modalty": "MR"}, "modalty", "modality"),
    ("/api/simulator/runs", {"scenario": "x", "patiens": 2}, "patiens", "patients"),
    ("/api/simulator/scenarios", {"name": "knee", "steps": [{"step_type": "SEND_HL7"}], "concurency": 2},
     "concurency", "concurrency"),
    ("/api/simulator/endpoints", {"name": "pacs", "kind": "storage", "host": "10.0.0.5", "port": 104, "aetitle": "X"},
     "aetitle", "ae_title"),
])
def test_a_body_field_no_operation_takes_is_a_400_naming_it_before_anything_runs(
        catalog, staff_client: APIClient, url: str, body: dict, typo: str, takes: str) -> None:
    from simulations.models import Endpoint, Run, Scenario

    before = (Run.objects.count(), Scenario.objects.count(), Endpoint.objects.count())
    response = staff_client.post(url, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    assert list(error["details"]) == [typo]
    assert error["details"][typo][0].startswith("Unknown field; this operation takes ")
    assert takes in error["details"][typo][0]
    assert (Run.objects.count(), Scenario.objects.count(), Endpoint.objects.count()) == before
