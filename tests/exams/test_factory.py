from __future__ import annotations

import random
from collections import Counter

import pytest

from exams.errors import ExamNotFound, NoIndication, NoMatchingExam
from exams.factory import STRATEGY_CPT, STRATEGY_EXAM_ID, STRATEGY_RANDOM, ExamFactory, ExamFilters, InvalidFilter
from exams.models import ExamSpec, Indication
from exams.vocabulary import generate_indication
from generators.terms import Sex
from tests.examples import PATIENT

pytestmark = pytest.mark.django_db


def test_it_finds_an_exam_by_id_with_codes_and_series(catalog):
    exam = ExamFactory().get_exam_by_id("MR-KNEE-RIGHT-WO")
    info = exam.to_info()
    assert info.modality == "MR" and info.laterality.value == "R"
    assert info.primary_code.code == "73721"
    assert [s.weighting.value for s in info.series] == ["PD", "T1", "T2"]


def test_unknown_and_inactive_ids_raise_exam_not_found(catalog):
    with pytest.raises(ExamNotFound, match="No exam with id 'MR-NOPE'"):
        ExamFactory().get_exam_by_id("MR-NOPE")
    ExamSpec.objects.filter(id="NM-BONE-WB").update(active=False)
    with pytest.raises(ExamNotFound, match="inactive"):
        ExamFactory().get_exam_by_id("NM-BONE-WB")


def test_a_cpt_code_shared_by_two_exams_reports_both_candidates_and_respects_weights(catalog):
    factory = ExamFactory(random.Random(42))
    picks = Counter(factory.select(cpt_code="73721").exam.id for _ in range(1200))
    selection = factory.select(cpt_code="73721")
    assert selection.strategy == STRATEGY_CPT
    assert selection.candidates == ["MR-KNEE-LEFT-WO", "MR-KNEE-RIGHT-WO"]
    assert selection.candidate_count == 2
    # weights 30 (right) : 10 (left) -> 75 % right; the bound is 4 standard deviations of 1200 draws
    assert 0.70 < picks["MR-KNEE-RIGHT-WO"] / 1200 < 0.80


def test_an_unknown_cpt_code_raises_exam_not_found(catalog):
    with pytest.raises(ExamNotFound, match="No active exam has CPT code '99999'"):
        ExamFactory().get_exam_by_cpt_code("99999")


def test_weighted_random_honours_every_constraint(catalog):
    factory = ExamFactory(random.Random(1))
    for _ in range(200):
        exam = factory.get_random_exam(modality="MR", setting="outpatient", patient_age=30, patient_sex="M")
        assert exam.modality == "MR" and exam.for_outpatient
    # screening mammography is female >= 40 only
    for _ in range(200):
        exam = factory.get_random_exam(patient_age=30, patient_sex="F")
        assert exam.id != "MG-SCREEN-BILAT"
        exam = factory.get_random_exam(patient_age=60, patient_sex="M")
        assert exam.id != "MG-SCREEN-BILAT"
    assert factory.get_random_exam(modality="MG", patient_age=45, patient_sex="F").id == "MG-SCREEN-BILAT"
    selection = factory.select(filters=ExamFilters(modality="MG", patient_age=45, patient_sex="F"))
    assert (selection.strategy, selection.candidate_count, selection.candidates) == (STRATEGY_RANDOM, 1, [])
    assert factory.get_random_exam(body_part="KNEE", laterality="L").id == "MR-KNEE-LEFT-WO"


def test_weighted_random_follows_the_weights_statistically(catalog):
    ExamSpec.objects.filter(id="DX-CHEST-2V").update(weight=400)
    ExamSpec.objects.exclude(id="DX-CHEST-2V").update(weight=10)
    factory = ExamFactory(random.Random(7))
    picks = Counter(factory.select().exam.id for _ in range(1500))
    expected = 400 / (400 + 10 * ExamSpec.objects.exclude(id="DX-CHEST-2V").count())
    assert abs(picks["DX-CHEST-2V"] / 1500 - expected) < 0.04
    assert set(picks) == set(ExamSpec.objects.values_list("id", flat=True))


def test_the_same_seed_gives_the_same_sequence_of_exams(catalog):
    f1, f2 = ExamFactory(random.Random(99)), ExamFactory(random.Random(99))
    assert [f1.select().exam.id for _ in range(50)] == [f2.select().exam.id for _ in range(50)]


def test_no_matching_exam_names_the_filters(catalog):
    with pytest.raises(NoMatchingExam) as err:
        ExamFactory().get_random_exam(modality="MG", patient_sex="M")
    assert err.value.message == "No active exam in the catalog matches modality=MG, patient_sex=M."


def test_zero_weight_exams_are_never_drawn_but_stay_selectable_by_id(catalog):
    ExamSpec.objects.exclude(id="US-ABD-COMPLETE").update(weight=0)
    factory = ExamFactory(random.Random(3))
    assert {factory.select().exam.id for _ in range(50)} == {"US-ABD-COMPLETE"}
    assert factory.select(exam_id="CT-ABDPEL-W").strategy == STRATEGY_EXAM_ID


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"modality": "XR"}, "modality"), ({"patient_age": -1}, "patient_age"), ({"setting": "home"}, "setting"),
     ({"body_part": "TOE"}, "body_part"), ({"laterality": "X"}, "laterality"), ({"patient_sex": "Q"}, "patient_sex")],
)
def test_invalid_filters_are_rejected_with_the_field_named(kwargs, field):
    with pytest.raises(InvalidFilter) as err:
        ExamFilters(**kwargs)
    assert err.value.field == field


def test_list_exams_reports_counts_version_and_filters(catalog):
    slice_ = ExamFactory().list_exams(ExamFilters(setting="emergency"))
    assert {e.id for e in slice_.exams} == {"CT-ABDPEL-W", "DX-CHEST-2V"}
    assert slice_.counts_by_modality == {"CT": 1, "DX": 1}
    assert slice_.filters == {"setting": "emergency"}
    assert slice_.catalog_total == ExamSpec.objects.count()
    version = slice_.catalog_version
    exam = ExamSpec.objects.get(id="CT-ABDPEL-W")
    exam.name = "CT A/P with IV contrast"
    exam.save()
    assert ExamFactory().list_exams().catalog_version != version


def test_modalities_summary_counts_active_exams_per_modality(catalog):
    ExamSpec.objects.filter(id="NM-BONE-WB").update(active=False)
    rows = {r["modality"]: r["exam_count"] for r in ExamFactory().modalities_summary()}
    assert rows == {"CT": 1, "MR": 2, "CR": 1, "DX": 1, "US": 1, "MG": 1, "NM": 0, "PT": 1, "XA": 1, "RF": 1}


def _grow_catalog(n: int) -> None:
    from tests.exams.documents import small_catalog
    from exams.catalog_io import load_catalog
    doc = small_catalog()
    base = doc["exams"][0]
    for i in range(n):
        doc["exams"].append({**base, "id": f"MR-KNEE-RIGHT-X{i}", "weight": 1})
    load_catalog(doc)


@pytest.mark.parametrize("extra", [0, 60])
def test_queries_stay_fixed_whatever_the_catalog_size(catalog, extra, django_assert_max_num_queries):
    _grow_catalog(extra)
    factory = ExamFactory(random.Random(1))
    with django_assert_max_num_queries(3):
        factory.get_exam_by_id("CT-ABDPEL-W").to_info()
    with django_assert_max_num_queries(4):
        factory.select(cpt_code="73721").exam.to_info()
    with django_assert_max_num_queries(4):
        factory.get_random_exam(modality="MR").to_info()
    with django_assert_max_num_queries(4):
        result = factory.list_exams()
        [e.to_info() for e in result.exams]
    with django_assert_max_num_queries(1):
        factory.modalities_summary()


def test_generate_indication_fits_the_exam_side_and_patient(catalog):
    knee = ExamFactory().get_exam_by_id("MR-KNEE-RIGHT-WO").to_info()
    rng = random.Random(0)
    assert {generate_indication(knee, rng, PATIENT).icd10 for _ in range(30)} == {"M25.561"}
    mammo = ExamFactory().get_exam_by_id("MG-SCREEN-BILAT").to_info()
    assert generate_indication(mammo, rng, PATIENT).icd10 == "Z12.31"


def test_generate_indication_falls_back_to_unscoped_then_raises(catalog):
    us = ExamFactory().get_exam_by_id("US-ABD-COMPLETE").to_info()
    assert generate_indication(us, random.Random(0), PATIENT).icd10 == "R10.9"
    Indication.objects.filter(body_part="").delete()
    with pytest.raises(NoIndication, match="US-ABD-COMPLETE"):
        generate_indication(us, random.Random(0), PATIENT)


def test_generate_indication_respects_the_patients_sex(catalog):
    from dataclasses import replace
    mammo = ExamFactory().get_exam_by_id("MG-SCREEN-BILAT").to_info()
    male = replace(PATIENT, sex=Sex.MALE)
    # the screening code is female-only, and a screening exam never falls back to a symptom
    with pytest.raises(NoIndication, match="No screening indication .* MG-SCREEN-BILAT .* M patient"):
        generate_indication(mammo, random.Random(0), male)
