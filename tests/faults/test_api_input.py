"""Hostile bodies and URLs on every JSON endpoint: deep nesting, NUL characters, oversized bodies.

Each answers 400/413 in the one error shape, never a 500 (RecursionError, PostgreSQL's "string literal
cannot contain NUL"). The module runs on the configured database; ``test_api_postgresql`` runs it again
on PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from simulations.models import Run, Scenario
from tests.api.conftest import api_key, client_with_key, staff_client  # noqa: F401 - fixtures
from tests.api.test_runs_api import HL7_STEPS, RUNS, error_of

SELECT = "/api/simulator/exams/select"
# (path, who may write there): every operation that takes a JSON body.
JSON_ENDPOINTS = [(RUNS, "key"), (SELECT, "key"), ("/api/simulator/scenarios", "staff"),
                  ("/api/simulator/endpoints", "staff")]


@pytest.fixture
def clients(catalog, client_with_key: APIClient, staff_client: APIClient) -> dict[str, APIClient]:
    Scenario.objects.create(name="HL7 only", steps=HL7_STEPS)
    return {"key": client_with_key, "staff": staff_client}


def post_raw(client: APIClient, path: str, body: bytes):
    return client.generic("POST", path, body, content_type="application/json")


@pytest.mark.parametrize(("path", "who"), JSON_ENDPOINTS)
def test_a_100000_deep_body_is_a_parse_error(clients, path: str, who: str) -> None:
    response = post_raw(clients[who], path, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400, response.content[:300]
    error = error_of(response)
    assert error["code"] == "parse_error" and "nested deeper than 32 levels" in error["message"]


@pytest.mark.parametrize(("path", "who"), JSON_ENDPOINTS)
def test_a_body_nested_past_the_limit_is_a_parse_error_naming_where(clients, path: str, who: str) -> None:
    deep: object = "x"
    for _ in range(40):
        deep = {"a": deep}
    response = post_raw(clients[who], path, json.dumps({"steps": deep}).encode())
    assert response.status_code == 400
    assert error_of(response)["message"] == "JSON parse error - steps.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a." \
                                            "a.a.a.a.a.a.a.a.a: nested deeper than 32 levels."


def test_ordinary_nesting_still_starts_a_run(clients) -> None:
    steps = [{"step_type": "REGISTER_PATIENT"},
             {"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO",
              "indication": {"text": "Knee pain", "icd10": "M25.561"}},
             {"step_type": "SEND_HL7"}]
    response = clients["key"].post(RUNS, {"steps": steps}, format="json")
    assert response.status_code == 202, response.content


NUL_BODIES = [
    (RUNS, "key", {"steps": [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7",
                                                                  "exam_id": "MR-KNEE\x00"}]}),
    (RUNS, "key", {"steps": [{"step_type": "GENERATE_HL7\x00"}]}),
    (RUNS, "key", {"steps": [{"step_type": "GENERATE_HL7", "modality": "MR", "indication": "pain\x00"}]}),
    (RUNS, "key", {"scenario": "HL7 only\x00"}),
    (RUNS, "key", {"scenario": "HL7 only", "\x00": 1}),
    (SELECT, "key", {"exam_id": "MR-KNEE-RIGHT-WO\x00"}),
    (SELECT, "key", {"cpt_code": "\x0073721"}),
    (SELECT, "key", {"modality": "M\x00R"}),
    ("/api/simulator/scenarios", "staff", {"name": "knee\x00", "steps": HL7_STEPS}),
    ("/api/simulator/scenarios", "staff", {"name": "knee", "steps": [{"step_type": "REGISTER_PATIENT\x00"}]}),
    ("/api/simulator/endpoints", "staff", {"name": "pacs", "kind": "storage", "host": "127.0.0.1\x00", "port": 104,
                                           "ae_title": "PACS"}),
]


@pytest.mark.parametrize(("path", "who", "body"), NUL_BODIES)
def test_a_nul_character_in_any_string_of_a_body_is_a_400(clients, path: str, who: str, body: dict) -> None:
    response = clients[who].post(path, body, format="json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "parse_error" and "NUL character" in error["message"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("url", ["/api/simulator/exams/%00", "/api/simulator/exams/MR-KNEE%00",
                                 "/api/simulator/exams?modality=%00", "/api/simulator/runs/%00",
                                 "/api/simulator/runs/%00/events", "/api/simulator/exams?%00=1",
                                 "/api/simulator/endpoints/1%00/check"])
def test_a_nul_character_in_the_url_is_a_400(clients, url: str) -> None:
    client = clients["key"]
    response = client.post(url) if url.endswith("/check") else client.get(url)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "bad_request" and "NUL" in error["message"]


def test_a_nul_character_in_the_key_header_is_a_401(db) -> None:
    response = APIClient().get("/api/simulator/exams", HTTP_X_API_KEY="yk_abc\x00def")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_a_nul_character_outside_the_api_is_a_plain_400(db) -> None:
    response = APIClient().get("/admin/login/%00")
    assert response.status_code == 400 and b"NUL" in response.content


@pytest.mark.parametrize(("path", "who"), JSON_ENDPOINTS)
def test_a_body_over_the_limit_is_a_413_saying_the_limit(clients, settings, path: str, who: str) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = json.dumps({"scenario": "HL7 only", "padding": "x" * 5000}).encode()
    response = post_raw(clients[who], path, body)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "request_too_large"
    assert error["message"] == ("The request body is larger than this server takes: at most 4096 bytes "
                                "(YEETER_MAX_BODY_BYTES, Django's DATA_UPLOAD_MAX_MEMORY_SIZE).")


def test_a_body_without_a_content_length_is_still_bounded(clients, settings) -> None:
    """The parser counts what it reads: a body whose length header understates it cannot slip past."""
    from io import BytesIO

    from rest_framework.exceptions import APIException

    from yeeter.parsers import JSONParser

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    with pytest.raises(APIException) as caught:
        JSONParser().parse(BytesIO(b'{"a": "' + b"x" * 2000 + b'"}'))
    assert caught.value.status_code == 413


def test_the_default_body_limit_is_one_megabyte(clients) -> None:
    response = post_raw(clients["key"], SELECT, b'{"exam_id": "' + b"x" * 1_100_000 + b'"}')
    assert response.status_code == 413
    assert "at most 1048576 bytes" in error_of(response)["message"]
