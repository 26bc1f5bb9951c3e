"""Indications fit the order's purpose and the patient: drawn over the shipped catalog with a fixed seed."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict

import pytest

from exams.catalog_io import SHIPPED_CATALOG, CatalogError, load_catalog, read_catalog_file
from exams.models import ExamSpec, Indication
from exams.rules import check_indication
from exams.vocabulary import generate_indication, indication_filter
from generators.patients import generate_patient
from generators.terms import (
    PURPOSE_DRAWS,
    Purpose,
    Sex,
    is_external_cause_code,
    is_injury_code,
    is_pregnancy_code,
    is_screening_code,
)
from tests.exams.documents import small_catalog

DRAWS_PER_EXAM = 40
TODAY = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def draws(django_db_setup, django_db_blocker):
    """(exam, patient, indication) for DRAWS_PER_EXAM patients of every active shipped exam."""
    with django_db_blocker.unblock():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), replace=True)
        rng = random.Random(20261201)
        out = []
        for spec in ExamSpec.objects.filter(active=True).prefetch_related("codes", "series").order_by("id"):
            exam = spec.to_info()
            for _ in range(DRAWS_PER_EXAM):
                patient = generate_patient(rng, today=TODAY, sex=exam.required_sex, min_age=exam.min_age,
                                           max_age=exam.max_age)
                out.append((exam, patient, generate_indication(exam, rng, patient)))
        yield out
        ExamSpec.objects.all().delete()
        Indication.objects.all().delete()


def test_every_active_exam_draws_an_indication_for_every_patient_it_admits(draws) -> None:
    per_exam = Counter(exam.id for exam, _, _ in draws)
    assert len(per_exam) >= 100
    assert set(per_exam.values()) == {DRAWS_PER_EXAM}


def test_no_screening_exam_draws_a_symptomatic_indication(draws) -> None:
    screening = [(exam.id, ind) for exam, _, ind in draws if exam.purpose == Purpose.SCREENING]
    assert {exam_id for exam_id, _ in screening} >= {"MG-SCREEN-BILAT", "CT-CHEST-LDCT-SCREEN", "CT-HEART-CACS"}
    assert [(e, i.icd10, i.text) for e, i in screening if not is_screening_code(i.icd10)] == []


def test_screening_mammography_draws_z12_31_and_ldct_a_smoking_history(draws) -> None:
    codes = defaultdict(set)
    for exam, _, ind in draws:
        codes[exam.id].add((ind.icd10, ind.secondary_icd10))
    assert {c for c, _ in codes["MG-SCREEN-BILAT"]} == {"Z12.31"}
    assert {c for c, _ in codes["CT-CHEST-LDCT-SCREEN"]} == {"Z12.2"}
    assert {s for _, s in codes["CT-CHEST-LDCT-SCREEN"]} <= {"Z87.891", "F17.210"}
    assert all(s for _, s in codes["CT-CHEST-LDCT-SCREEN"]), "every LDCT order carries its smoking history"


def test_aaa_screening_draws_z13_6_with_a_smoking_or_family_history_for_men_65_to_75(draws) -> None:
    aaa = [(patient, ind) for exam, patient, ind in draws if exam.id == "US-AORTA-AAA-SCREEN"]
    assert aaa
    assert {ind.icd10 for _, ind in aaa} == {"Z13.6"}
    assert {ind.secondary_icd10 for _, ind in aaa} <= {"Z87.891", "F17.210", "Z82.49"}
    assert "Z87.891" in {ind.secondary_icd10 for _, ind in aaa}
    assert all(p.sex == Sex.MALE and 65 <= p.age <= 75 for p, _ in aaa)


def test_diagnostic_exams_never_draw_a_screening_reason(draws) -> None:
    wrong = [(exam.id, ind.icd10) for exam, _, ind in draws
             if exam.purpose != Purpose.SCREENING and is_screening_code(ind.icd10)]
    assert wrong == []


def test_trauma_exams_draw_an_injury_with_its_external_cause(draws) -> None:
    trauma = [(exam.id, ind) for exam, _, ind in draws if exam.purpose == Purpose.TRAUMA]
    assert {exam_id for exam_id, _ in trauma} >= {"CT-HEAD-TRAUMA-WO", "CT-ABDPEL-TRAUMA-W", "US-ABD-FAST"}
    assert [(e, i.icd10, i.secondary_icd10) for e, i in trauma
            if not (is_injury_code(i.icd10) and is_external_cause_code(i.secondary_icd10))] == []


def test_staging_exams_draw_a_malignancy(draws) -> None:
    staging = [(exam.id, ind.icd10) for exam, _, ind in draws if exam.purpose == Purpose.STAGING]
    assert staging, "the catalog ships at least one staging exam"
    # ICD-10-CM chapter 2, neoplasms: C00–D49
    assert [(e, c) for e, c in staging if not (c[0] == "C" or (c[0] == "D" and c[1:3] < "50"))] == []


def test_no_male_patient_draws_a_pregnancy_code_and_nobody_draws_outside_their_sex_or_age(draws) -> None:
    assert [(e.id, i.icd10) for e, p, i in draws if p.sex == Sex.MALE and is_pregnancy_code(i.icd10)] == []
    rows = {(r.icd10, r.text): r for r in Indication.objects.all()}
    for exam, patient, ind in draws:
        row = rows[(ind.icd10, ind.text)]
        assert row.sex in {"", patient.sex.value}, (exam.id, ind)
        assert row.min_age is None or row.min_age <= patient.age, (exam.id, ind, patient.age)
        assert row.max_age is None or patient.age <= row.max_age, (exam.id, ind, patient.age)


def test_a_purpose_draws_only_what_the_table_admits(draws) -> None:
    purposes = {(r.icd10, r.text): r.purpose for r in Indication.objects.all()}
    for exam, _, ind in draws:
        assert Purpose(purposes[(ind.icd10, ind.text)]) in PURPOSE_DRAWS[exam.purpose], (exam.id, ind)


def test_the_admin_filter_and_the_draw_agree(draws) -> None:
    """``indication_filter`` is what admin lists for an exam: every draw is in it."""
    listed = defaultdict(set)
    for exam, _, _ in draws:
        if exam.id not in listed:
            listed[exam.id] = {(r.icd10, r.text) for r in Indication.objects.filter(indication_filter(exam))}
    for exam, _, ind in draws:
        assert (ind.icd10, ind.text) in listed[exam.id]


# -- the rules, shared by admin, model clean() and the loader ------------------------------------------


def _ind(**fields) -> dict:
    return {"text": "x", "icd10": "R10.9", "purpose": "diagnostic", "sex": "", "min_age": None, "max_age": None,
            "secondary_icd10": "", "secondary_text": "", **fields}


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"icd10": "O20.0", "min_age": 12, "max_age": 55}, "sex", "pregnancy code: the indication needs sex F"),
    ({"icd10": "Z34.01", "sex": "F"}, "min_age", "age range within 10–60"),
    ({"icd10": "R10.9", "purpose": "screening"}, "icd10", "encounter for screening (Z11–Z13), not R10.9"),
    ({"icd10": "Z12.31", "purpose": "diagnostic", "sex": "F"}, "purpose", "its purpose is screening"),
    ({"icd10": "S09.90XA", "purpose": "trauma"}, "secondary_icd10", "external cause (V00–Y99)"),
    ({"icd10": "R51.9", "purpose": "trauma", "secondary_icd10": "W19.XXXA", "secondary_text": "Fall"}, "icd10",
     "injury code (S00–T88), not R51.9"),
    ({"secondary_icd10": "Z87.891"}, "secondary_text", "needs its text"),
    ({"purpose": "curiosity"}, "purpose", "'curiosity' is not a purpose"),
])
def test_the_indication_rules_refuse(fields: dict, field: str, message: str) -> None:
    problems = check_indication(_ind(**fields))
    assert any(p.field == field and message in p.message for p in problems), problems


def test_the_indication_rules_accept_a_trauma_reason_with_its_cause() -> None:
    assert check_indication(_ind(icd10="S09.90XA", purpose="trauma", secondary_icd10="W19.XXXA",
                                 secondary_text="Unspecified fall, initial encounter")) == []


def test_the_loader_refuses_a_pregnancy_code_for_men_and_loads_nothing(db) -> None:
    doc = small_catalog()
    doc["indications"].append({"text": "Threatened miscarriage", "icd10": "O20.0", "body_part": "", "modality": "US",
                               "laterality": "", "min_age": 12, "max_age": 55, "sex": "M", "weight": 1})
    with pytest.raises(CatalogError, match=r"indication #7 \(O20.0\): field sex: O20.0 is a pregnancy code"):
        load_catalog(doc)
    assert ExamSpec.objects.count() == 0 and Indication.objects.count() == 0


def test_the_loader_refuses_an_unknown_exam_purpose(db) -> None:
    doc = small_catalog()
    doc["exams"][0]["purpose"] = "curiosity"
    with pytest.raises(CatalogError, match="field purpose.*'curiosity' is not a valid choice"):
        load_catalog(doc)
    assert ExamSpec.objects.count() == 0


def test_a_dumped_catalog_keeps_purposes_and_secondary_codes(db) -> None:
    from exams.catalog_io import dump_catalog

    load_catalog(read_catalog_file(SHIPPED_CATALOG), replace=True)
    dumped = dump_catalog()
    ldct = next(e for e in dumped["exams"] if e["id"] == "CT-CHEST-LDCT-SCREEN")
    assert ldct["purpose"] == "screening"
    smoker = next(i for i in dumped["indications"] if i["text"] == "Lung cancer screening, current smoker")
    assert (smoker["purpose"], smoker["secondary_icd10"]) == ("screening", "F17.210")
