"""The catalog endpoints of the spec: list/filter, detail, modalities, select, errors and query counts."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from exams.catalog_io import load_catalog
from tests.api.conftest import bigger_catalog
from tests.examples import EXAMS  # one per modality; the small catalog adds the left knee

URL = "/api/simulator/exams"


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# -- list ------------------------------------------------------------------------------------------

def test_it_lists_the_catalog_with_its_metadata(catalog, client_with_key: APIClient) -> None:
    body = client_with_key.get(URL).json()
    assert body["count"] == len(catalog["exams"]) == len(body["exams"])
    assert body["filters"] == {}
    assert body["catalog"]["active_exams"] == len(catalog["exams"])
    assert len(body["catalog"]["version"]) == 12 and body["catalog"]["last_changed"]
    assert body["counts_by_modality"]["MR"] == 2
    knee = next(e for e in body["exams"] if e["id"] == "MR-KNEE-RIGHT-WO")
    assert knee["cpt_code"] == "73721" and knee["loinc_code"] == "36489-5"
    assert [s["description"] for s in knee["series"]] == ["SAG PD FS", "COR T1", "AX T2 FS"]
    assert knee["contrast"] == "none" and knee["care_settings"] == ["outpatient", "inpatient"]
    assert {s["scene"] for s in knee["series"]} == {""}
    bone = next(e for e in body["exams"] if e["id"] == "NM-BONE-WB")
    assert [s["scene"] for s in bone["series"]] == ["bone"]  # what an NM or US series shows


def test_it_returns_a_filtered_slice_and_the_filters_applied(catalog, client_with_key: APIClient) -> None:
    body = client_with_key.get(URL, {"modality": "MR", "laterality": "L", "patient_age": "42"}).json()
    assert [e["id"] for e in body["exams"]] == ["MR-KNEE-LEFT-WO"]
    assert body["filters"] == {"modality": "MR", "laterality": "L", "patient_age": 42}
    assert body["counts_by_modality"] == {"MR": 1}
    assert body["catalog"]["active_exams"] == len(catalog["exams"])


def test_it_filters_by_setting_as_the_spec_curl_example_does(catalog, client_with_key: APIClient) -> None:
    body = client_with_key.get(URL + "?setting=outpatient").json()
    assert body["filters"] == {"setting": "outpatient"}
    assert body["count"] >= 1 and all("outpatient" in e["care_settings"] for e in body["exams"])


@pytest.mark.parametrize(("query", "parameter", "text"), [
    ({"modality": "XX"}, "modality", '"XX" is not a known modality; use one of CT, MR'),
    ({"patient_age": "-1"}, "patient_age", "greater than or equal to 0"),
    ({"patient_age": "forty"}, "patient_age", "valid integer"),
    ({"patient_age": "99999999999999999999999"}, "patient_age", "less than or equal to 130"),
    ({"patient_sex": "X"}, "patient_sex", "not a known sex"),
    ({"setting": "home"}, "setting", "not a known care setting"),
    ({"body_part": "ELBOWS"}, "body_part", "Body Part Examined"),
    ({"laterality": "X"}, "laterality", "not a known laterality"),
])
def test_it_rejects_an_invalid_filter_naming_the_parameter(catalog, client_with_key: APIClient, query: dict,
                                                           parameter: str, text: str) -> None:
    response = client_with_key.get(URL, query)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert list(error["details"]) == [parameter]
    assert text in error["details"][parameter][0]
    assert error["message"].startswith(f"The request is not valid: {parameter}: ")


def test_it_reports_unknown_query_parameters_instead_of_ignoring_them(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.get(URL, {"modalty": "MR", "modality": "MR"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_parameter"
    assert list(error["details"]) == ["modalty"]
    assert "patient_age" in error["details"]["modalty"][0]


def test_it_rejects_a_parameter_given_twice(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.get(URL + "?modality=MR&modality=CT")
    assert response.status_code == 400
    assert "more than once" in error_of(response)["details"]["modality"][0]


# -- detail and modalities ---------------------------------------------------------------------------

def test_it_returns_one_exam_by_id(catalog, client_with_key: APIClient) -> None:
    body = client_with_key.get(URL + "/CT-ABDPEL-W").json()
    assert body["id"] == "CT-ABDPEL-W" and body["modality"] == "CT" and body["contrast"] == "with"
    assert body["codes"][0] == {"code": "74177", "scheme": "C4", "display": "CT abdomen and pelvis with contrast"}


@pytest.mark.parametrize("exam_id", ["MR-NOPE", "a%2Fb", "x" * 500])  # %00: a 400 (tests/faults/test_api_input.py)
def test_it_answers_404_with_a_clear_message_for_an_unknown_exam(catalog, client_with_key: APIClient,
                                                                 exam_id: str) -> None:
    response = client_with_key.get(f"{URL}/{exam_id}")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "exam_not_found"
    assert "No exam with id" in error["message"]


def test_the_modalities_route_is_not_swallowed_by_the_detail_route(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.get(URL + "/modalities")
    assert response.status_code == 200
    rows = {r["modality"]: r for r in response.json()["modalities"]}
    assert set(rows) == {"CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "XA", "RF"}
    assert rows["MR"]["exam_count"] == 2 and rows["CT"]["exam_count"] == 1
    assert rows["MR"]["label"]
    assert response.json()["catalog"]["active_exams"] == len(catalog["exams"])


def test_get_on_the_select_route_is_405_not_an_exam_lookup(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.get(URL + "/select")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# -- select --------------------------------------------------------------------------------------------

def select(client: APIClient, body) -> object:
    return client.post(URL + "/select", body, format="json")


def test_select_by_exam_id_reports_the_exam_id_strategy(catalog, client_with_key: APIClient) -> None:
    body = select(client_with_key, {"exam_id": "US-ABD-COMPLETE", "modality": "MR"}).json()
    assert body["id"] == "US-ABD-COMPLETE"
    assert body["_selection"]["strategy"] == "exam_id"
    assert body["_selection"]["candidate_count"] == 1
    assert body["_selection"]["candidates"] == ["US-ABD-COMPLETE"]


def test_select_by_an_ambiguous_cpt_code_lists_the_candidates(catalog, client_with_key: APIClient) -> None:
    body = select(client_with_key, {"cpt_code": "73721", "seed": 5}).json()
    assert body["id"] in {"MR-KNEE-LEFT-WO", "MR-KNEE-RIGHT-WO"}
    assert body["_selection"] == {"strategy": "cpt_code", "filters": {"cpt_code": "73721"}, "candidate_count": 2,
                                  "candidates": ["MR-KNEE-LEFT-WO", "MR-KNEE-RIGHT-WO"], "seed": 5}


def test_select_by_cpt_code_narrowed_by_filters(catalog, client_with_key: APIClient) -> None:
    body = select(client_with_key, {"cpt_code": "73721", "laterality": "L"}).json()
    assert body["id"] == "MR-KNEE-LEFT-WO"
    assert body["_selection"]["candidates"] == ["MR-KNEE-LEFT-WO"]
    assert body["_selection"]["filters"] == {"cpt_code": "73721", "laterality": "L"}


def test_weighted_random_selection_is_reproducible_with_the_reported_seed(catalog,
                                                                          client_with_key: APIClient) -> None:
    first = select(client_with_key, {"modality": "MR", "patient_age": 42}).json()
    selection = first["_selection"]
    assert selection["strategy"] == "weighted_random"
    assert selection["filters"] == {"modality": "MR", "patient_age": 42}
    assert selection["candidate_count"] == 2 and selection["candidates"] == []
    assert isinstance(selection["seed"], int)
    picks = {select(client_with_key, {"modality": "MR", "seed": selection["seed"]}).json()["id"] for _ in range(3)}
    assert picks == {first["id"]}


def test_select_with_no_match_is_a_404_naming_the_filters(catalog, client_with_key: APIClient) -> None:
    response = select(client_with_key, {"modality": "MG", "patient_sex": "M"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "no_matching_exam"
    assert "modality=MG" in error["message"] and "patient_sex=M" in error["message"]
    assert error["details"] == {"filters": {"modality": "MG", "patient_sex": "M"}}


@pytest.mark.parametrize(("body", "code"), [
    ({"exam_id": "MR-NOPE"}, "exam_not_found"),
    ({"cpt_code": "00000"}, "exam_not_found"),
])
def test_select_answers_404_for_an_unknown_id_or_code(catalog, client_with_key: APIClient, body: dict,
                                                      code: str) -> None:
    response = select(client_with_key, body)
    assert response.status_code == 404
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(("body", "field"), [
    ({"modality": "XX"}, "modality"),
    ({"patient_age": -3}, "patient_age"),
    ({"patient_age": "old"}, "patient_age"),
    ({"patient_age": 10**40}, "patient_age"),
    ({"seed": 2**64}, "seed"),
    ({"seed": -1}, "seed"),
    ({"exam_id": "X" * 41}, "exam_id"),
    ({"exam_id": ["MR-KNEE-RIGHT-WO"]}, "exam_id"),
    ({"modality": "MR", "colour": "blue"}, "colour"),
    (["MR"], "non_field_errors"),
    ("MR", "non_field_errors"),
])
def test_select_rejects_bad_input_naming_the_field(catalog, client_with_key: APIClient, body, field: str) -> None:
    response = select(client_with_key, body)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["details"]


def test_select_rejects_malformed_json_in_the_error_shape(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.post(URL + "/select", data='{"modality": "MR"', content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_select_rejects_a_non_json_body(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.post(URL + "/select", data="modality=MR",
                                    content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_an_unrouted_api_url_answers_in_the_error_shape(db, client_with_key: APIClient) -> None:
    response = client_with_key.get("/api/simulator/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# -- query counts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("copies", [0, 12])
def test_list_endpoints_run_a_fixed_number_of_queries_whatever_the_catalog_size(
        db, client_with_key: APIClient, django_assert_max_num_queries, copies: int) -> None:
    load_catalog(bigger_catalog(copies))
    client_with_key.get(URL)  # the first request records the key's last use (one extra write)
    # key lookup + exams + codes + series + catalog stamp
    with django_assert_max_num_queries(5):
        body = client_with_key.get(URL).json()
    assert body["count"] == len(EXAMS) + 1 + len(EXAMS) * copies
    with django_assert_max_num_queries(3):
        assert client_with_key.get(URL + "/modalities").status_code == 200
    # key lookup + candidates + the chosen exam with its codes and series
    with django_assert_max_num_queries(5):
        assert select(client_with_key, {"modality": "CT"}).status_code == 200
