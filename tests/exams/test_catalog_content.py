"""Content rules of the shipped exam catalog (``exams/fixtures/catalog.json``).

Pure checks on the JSON file against the shared vocabulary of :mod:`generators.terms`: no database,
no Django. They guard what the loader cannot know on its own: that the catalog is the one a real
radiology department performs (every modality, real code shapes, realistic protocols and volumes),
that laterality agrees with the id and the body part, and that every active exam can be given a
clinically matching reason for study (HL7 OBR-31 / DICOM ReasonForRequestedProcedure).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from generators.terms import (
    BODY_PARTS,
    IMAGED_BY_SIDE,
    MODALITY_SCENES,
    PAIRED_BODY_PARTS,
    PURPOSE_DRAWS,
    CareSetting,
    CodingScheme,
    Contrast,
    ContrastPhase,
    Laterality,
    Modality,
    Plane,
    Projection,
    Purpose,
    SeriesRole,
    Weighting,
    WindowPreset,
)

CATALOG_PATH = Path(__file__).resolve().parents[2] / "exams" / "fixtures" / "catalog.json"

ICD10CM_RE = re.compile(r"^[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?$")
CPT_RE = re.compile(r"^(\d{5}|\d{4}[A-Z])$")
LOINC_RE = re.compile(r"^\d{1,7}-\d$")
EXAM_ID_RE = re.compile(r"^(CT|MR|CR|DX|US|MG|NM|PT|XA|RF)(-[A-Z0-9]+)+$")

# DICOM (0018,5101) View Position defined terms (PS3.3 C.8.11.5.1.1) and mammography views (C.8.11.7.1.1).
PROJECTION_VIEWS = {"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"}
MAMMO_VIEWS = {"CC", "MLO", "ML", "LM", "XCCL"}
MR_SEQUENCES = {"TSE", "SE", "GRE", "EPI", "IR", "SPGR", "TOF3D"}
POST_CONTRAST_PHASES = {"ARTERIAL", "PORTAL_VENOUS", "DELAYED", "POST"}
PROJECTION_MODALITIES = {"DX", "CR", "MG", "US", "NM", "XA", "RF"}
KVP_MODALITIES = {"CT", "DX", "CR", "MG", "XA", "RF"}
# modalities whose series may be multi-frame (the optional "frames" field; XA and RF always are)
MULTIFRAME_MODALITIES = {"US", "XA", "RF"}
SIDE_TOKENS = {"RIGHT": "R", "LEFT": "L", "BILAT": "B"}

EXAM_FIELDS = {"id", "name", "description", "modality", "body_part", "laterality", "care_settings", "weight",
               "min_age", "max_age", "required_sex", "contrast", "contrast_agent", "contrast_volume_ml",
               "estimated_duration_min", "purpose", "active", "codes", "series"}
SERIES_FIELDS = {"number", "description", "protocol_name", "instances", "role", "plane", "sequence_name",
                 "weighting", "fat_sat", "slice_thickness_mm", "kvp", "contrast_phase", "kernel", "view_position",
                 "image_laterality"}
# curated where they matter, absent elsewhere: the CT window a series is read in, a radiograph's projection,
# what an NM or US series shows
OPTIONAL_SERIES_FIELDS = {"window", "projection", "frames", "scene"}
INDICATION_FIELDS = {"text", "icd10", "body_part", "modality", "laterality", "min_age", "max_age", "sex", "weight",
                     "purpose", "secondary_icd10", "secondary_text"}


def _load() -> dict[str, Any]:
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


CATALOG = _load()
EXAMS: list[dict[str, Any]] = CATALOG["exams"]
ACTIVE = [e for e in EXAMS if e["active"]]
INDICATIONS: list[dict[str, Any]] = CATALOG["indications"]
BY_ID = {e["id"]: e for e in EXAMS}


def _exam_ids(exams: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in exams]


def _ranges_overlap(a_min: int | None, a_max: int | None, b_min: int | None, b_max: int | None) -> bool:
    lo = max(a_min if a_min is not None else 0, b_min if b_min is not None else 0)
    hi = min(a_max if a_max is not None else 200, b_max if b_max is not None else 200)
    return lo <= hi


def indication_matches(ind: dict[str, Any], exam: dict[str, Any]) -> bool:
    """The catalog's matching rule: scope fields empty or equal, age ranges overlap, sexes compatible.

    Laterality is strict: a sided indication ("Pain in right knee") only reaches an exam of that side.
    """
    if ind["body_part"] and ind["body_part"] != exam["body_part"]:
        return False
    if ind["modality"] and ind["modality"] != exam["modality"]:
        return False
    if ind.get("laterality") and ind["laterality"] != exam["laterality"]:
        return False
    if ind["sex"] and exam["required_sex"] and ind["sex"] != exam["required_sex"]:
        return False
    if Purpose(ind["purpose"]) not in PURPOSE_DRAWS[Purpose(exam["purpose"])]:
        return False
    return _ranges_overlap(ind["min_age"], ind["max_age"], exam["min_age"], exam["max_age"])


def test_it_is_a_version_1_yeeter_catalog() -> None:
    assert CATALOG["format"] == "yeeter-catalog"
    assert CATALOG["version"] == 1
    assert set(CATALOG) == {"format", "version", "exams", "indications"}


def test_it_ships_at_least_160_active_exams() -> None:
    assert len(ACTIVE) >= 160
    per_modality = Counter(e["modality"] for e in ACTIVE)
    assert all(per_modality[m] >= 3 for m in ("CT", "MR", "DX", "CR", "US", "MG", "NM")), per_modality


def test_it_covers_every_modality_of_the_vocabulary() -> None:
    assert {e["modality"] for e in ACTIVE} == {m.value for m in Modality}


def test_exam_ids_are_unique_and_shaped_like_modality_part_variant() -> None:
    ids = _exam_ids(EXAMS)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    bad = [i for i in ids if not EXAM_ID_RE.match(i) or len(i) > 40]
    assert bad == []
    assert [e["id"] for e in EXAMS if not e["id"].startswith(e["modality"] + "-")] == []


@pytest.mark.parametrize("exam", EXAMS, ids=_exam_ids(EXAMS))
def test_exam_fields_use_the_shared_vocabulary(exam: dict[str, Any]) -> None:
    assert set(exam) == EXAM_FIELDS
    assert exam["modality"] in {m.value for m in Modality}
    assert exam["body_part"] in BODY_PARTS
    assert exam["laterality"] in {lat.value for lat in Laterality}
    assert exam["care_settings"], "an exam needs at least one care setting"
    assert set(exam["care_settings"]) <= {c.value for c in CareSetting}
    assert len(set(exam["care_settings"])) == len(exam["care_settings"])
    assert exam["required_sex"] in {"", "F", "M"}
    assert exam["contrast"] in {c.value for c in Contrast}
    assert isinstance(exam["weight"], int) and exam["weight"] >= (1 if exam["active"] else 0)
    assert isinstance(exam["estimated_duration_min"], int) and 1 <= exam["estimated_duration_min"] <= 300
    assert exam["description"] == exam["description"].upper()
    assert 0 < len(exam["description"]) <= 64  # DICOM LO: StudyDescription, RequestedProcedureDescription
    assert exam["name"].strip() == exam["name"] and exam["name"]
    if exam["min_age"] is not None and exam["max_age"] is not None:
        assert exam["min_age"] <= exam["max_age"]


@pytest.mark.parametrize("exam", EXAMS, ids=_exam_ids(EXAMS))
def test_laterality_agrees_with_the_id_and_the_body_part(exam: dict[str, Any]) -> None:
    named = {SIDE_TOKENS[t] for t in exam["id"].split("-") if t in SIDE_TOKENS}
    if named:
        assert named == {exam["laterality"]}
    if exam["body_part"] in PAIRED_BODY_PARTS:
        assert exam["laterality"] in {"R", "L", "B"}
        assert named, "an exam of a paired body part names its side in the id"
    else:
        assert exam["laterality"] == ""


def test_paired_body_parts_come_as_right_and_left_exams_with_the_same_cpt_code() -> None:
    sided = [e for e in ACTIVE if e["laterality"] in {"R", "L"}]
    assert len(sided) >= 30
    for exam in sided:
        twin_id = exam["id"].replace("-RIGHT", "-LEFT") if exam["laterality"] == "R" else \
            exam["id"].replace("-LEFT", "-RIGHT")
        if exam["id"] == "CR-HAND-LEFT-BONEAGE":
            continue  # bone age is read on the left hand by convention (Greulich-Pyle): there is no right twin
        twin = BY_ID.get(twin_id)
        assert twin is not None, f"{exam['id']} has no {twin_id}"
        assert twin["codes"][0]["code"] == exam["codes"][0]["code"]
        assert twin["series"] and len(twin["series"]) == len(exam["series"])
    for part in ("KNEE", "SHOULDER", "HIP", "ANKLE", "WRIST", "HAND", "FOOT", "ELBOW"):
        assert {e["laterality"] for e in sided if e["body_part"] == part} == {"R", "L"}, part


@pytest.mark.parametrize("exam", EXAMS, ids=_exam_ids(EXAMS))
def test_contrast_agent_and_volume_are_given_exactly_when_contrast_is(exam: dict[str, Any]) -> None:
    phases = {s["contrast_phase"] for s in exam["series"]}
    if exam["contrast"] == Contrast.NONE.value:
        assert exam["contrast_agent"] == ""
        assert exam["contrast_volume_ml"] is None
        assert not phases & POST_CONTRAST_PHASES
        return
    agent, volume = exam["contrast_agent"], exam["contrast_volume_ml"]
    assert agent and volume
    assert phases & POST_CONTRAST_PHASES, "a contrast exam has at least one post-contrast series"
    if exam["contrast"] == Contrast.WITHOUT_THEN_WITH.value:
        assert "NONCONTRAST" in phases
    if exam["modality"] == "MR":
        assert agent.startswith("Gado") and 5 <= volume <= 20
    elif exam["modality"] == "CT":
        assert "mgI/mL" in agent and 50 <= volume <= 150
    elif exam["modality"] == "XA":  # iodinated, intra-arterial: a few tens of mL over the runs
        assert "mgI/mL" in agent and 20 <= volume <= 150
    elif exam["modality"] == "RF":  # barium by mouth, or iodinated contrast instilled into the bladder
        assert agent.startswith(("Barium", "Iothalamate", "Iohexol")) and 50 <= volume <= 500
    else:
        pytest.fail(f"{exam['modality']} exams are not contrast exams (NM radiopharmaceuticals are not contrast)")


@pytest.mark.parametrize("exam", EXAMS, ids=_exam_ids(EXAMS))
def test_codes_have_a_primary_cpt_code_and_well_formed_loinc(exam: dict[str, Any]) -> None:
    codes = exam["codes"]
    assert codes and codes[0]["scheme"] == CodingScheme.CPT.value
    assert len({(c["scheme"], c["code"]) for c in codes}) == len(codes)
    for code in codes:
        assert set(code) == {"code", "scheme", "display"}
        assert code["scheme"] in {CodingScheme.CPT.value, CodingScheme.LOINC.value, CodingScheme.RADLEX.value}
        assert 0 < len(code["display"]) <= 64  # DICOM LO CodeMeaning
        if code["scheme"] == CodingScheme.CPT.value:
            assert CPT_RE.match(code["code"]), code
        if code["scheme"] == CodingScheme.LOINC.value:
            assert LOINC_RE.match(code["code"]), code
            assert _loinc_check_digit_ok(code["code"]), code


def _loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the Luhn variant LOINC publishes)."""
    body, check = code.split("-")
    digits = [int(d) for d in body][::-1]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return (10 - total % 10) % 10 == int(check)


def test_the_loinc_check_digit_rule_rejects_a_mistyped_code() -> None:
    assert _loinc_check_digit_ok("36643-5")
    assert not _loinc_check_digit_ok("36643-4")


@pytest.mark.parametrize("exam", EXAMS, ids=_exam_ids(EXAMS))
def test_series_protocols_are_complete_and_realistic(exam: dict[str, Any]) -> None:
    series = exam["series"]
    modality = exam["modality"]
    numbers = [s["number"] for s in series]
    assert numbers == list(range(1, len(series) + 1)), "series are numbered 1..n without gaps or repeats"
    primaries = [s for s in series if s["role"] == SeriesRole.PRIMARY.value]
    assert primaries, "an exam acquires at least one primary series"
    for s in series:
        assert SERIES_FIELDS <= set(s) <= SERIES_FIELDS | OPTIONAL_SERIES_FIELDS
        assert s.get("window", "") in {w.value for w in WindowPreset}
        assert s.get("projection", "") in {p.value for p in Projection}
        if s.get("window"):
            assert modality == "CT", "a window preset is a CT series' choice"
        if s.get("projection"):
            assert modality in {"DX", "CR"}, "a projection is a radiograph's choice"
        if modality in {"NM", "US"}:
            assert s.get("scene") in MODALITY_SCENES[Modality(modality)], "an NM or US series names its scene"
        else:
            assert "scene" not in s, "only NM and US series have a scene"
        frames = s.get("frames", 1)
        assert isinstance(frames, int) and 1 <= frames <= 60
        if frames > 1:
            assert modality in MULTIFRAME_MODALITIES, "only XA, RF and US cine series are multi-frame"
        if modality in {"XA", "RF"}:
            # a run of a few seconds (PS3.3 C.7.6.5), taken in a named projection; 1-2 runs per series
            assert frames >= 8 and s["view_position"] in PROJECTION_VIEWS and 1 <= s["instances"] <= 2
        assert s["role"] in {r.value for r in SeriesRole}
        assert s["plane"] in {p.value for p in Plane}
        assert s["contrast_phase"] in {p.value for p in ContrastPhase}
        assert s["image_laterality"] in {lat.value for lat in Laterality}
        assert 0 < len(s["description"]) <= 64 and 0 < len(s["protocol_name"]) <= 64
        assert isinstance(s["instances"], int) and s["instances"] >= 1
        if modality == "MR":
            assert s["weighting"] in {w.value for w in Weighting}
            assert s["sequence_name"] in MR_SEQUENCES
            assert s["slice_thickness_mm"] and s["kvp"] is None
            assert (s["weighting"] == "LOCALIZER") == (s["role"] == "LOCALIZER")
            assert 1 <= s["instances"] <= 60
        else:
            assert s["weighting"] == "" and s["sequence_name"] == "" and not s["fat_sat"]
        if modality in KVP_MODALITIES:
            assert s["kvp"] is not None and 20 <= s["kvp"] <= 150
        elif modality == "PT":  # the CT attenuation series (a tube voltage) or the PET emission series
            assert s["kvp"] is None or 80 <= s["kvp"] <= 140
            assert s["plane"] == "AX" and s["slice_thickness_mm"]
            assert (s["kernel"] != "") == (s["kvp"] is not None)
        else:
            assert s["kvp"] is None
        if modality == "CT":
            if s["role"] == "LOCALIZER":
                assert s["plane"] == "" and 1 <= s["instances"] <= 2
            else:
                assert s["plane"] and s["slice_thickness_mm"] and s["kernel"]
                assert 20 <= s["instances"] <= 130
        if modality in {"MR", "CT"} and s["role"] != "LOCALIZER":
            assert s["plane"], f"series {s['number']} of a cross-sectional exam names its plane"
        if modality in PROJECTION_MODALITIES:
            assert s["plane"] == "" and s["slice_thickness_mm"] is None and s["kernel"] == ""
        if modality in {"DX", "CR"}:
            assert s["view_position"] in PROJECTION_VIEWS and s["instances"] == 1
            expected = exam["laterality"] if exam["body_part"] in PAIRED_BODY_PARTS else ""
            assert s["image_laterality"] == expected
        elif modality == "MG":
            assert s["view_position"] in MAMMO_VIEWS and s["instances"] == 1
            assert s["image_laterality"] in {"R", "L"}
            if exam["laterality"] in {"R", "L"}:
                assert s["image_laterality"] == exam["laterality"]
        elif modality not in {"XA", "RF"}:
            assert s["view_position"] == ""
            if s["image_laterality"]:  # one side of a study covering both (one series per side)
                assert s["image_laterality"] in {"R", "L"} and exam["laterality"] in {"B", ""}
                assert exam["body_part"] in IMAGED_BY_SIDE
        if modality == "US" and frames > 1:  # a cine loop or two beside the stills
            assert 1 <= s["instances"] <= 3 and 20 <= frames <= 60
        elif modality == "US":
            assert 4 <= s["instances"] <= 20
        if modality == "NM":
            assert 1 <= s["instances"] <= 4
    if modality == "US":
        assert len(series) <= 3
    if modality == "PT":  # PET/CT: the CT attenuation series first, then the PET, over the same range
        assert series[0]["kvp"] is not None and any(s["kvp"] is None for s in series)
        ranges = {round(s["instances"] * s["slice_thickness_mm"] / 10) for s in series}
        assert len(ranges) == 1, f"CT and PET cover the same axial range (cm): {ranges}"
    if modality == "MG" and exam["laterality"] == "B":
        assert {s["image_laterality"] for s in series} == {"R", "L"}


def test_mr_brain_follows_the_standard_protocol_with_derived_adc() -> None:
    series = BY_ID["MR-BRAIN-WO"]["series"]
    by_desc = {s["description"]: s for s in series}
    for desc, weighting in (("SAG T1", "T1"), ("AX T2", "T2"), ("AX FLAIR", "FLAIR"), ("AX DWI", "DWI")):
        assert by_desc[desc]["weighting"] == weighting
    assert by_desc["AX ADC"]["role"] == "DERIVED" and by_desc["AX ADC"]["weighting"] == "ADC"


def test_mr_knee_has_the_five_classic_sequences() -> None:
    for exam_id in ("MR-KNEE-RIGHT-WO", "MR-KNEE-LEFT-WO"):
        series = {(s["plane"], s["weighting"], s["fat_sat"]) for s in BY_ID[exam_id]["series"]}
        assert {("SAG", "PD", True), ("COR", "T1", False), ("COR", "PD", True), ("AX", "PD", True),
                ("SAG", "T2", False)} <= series


def test_ct_abdomen_pelvis_with_contrast_is_scout_portal_venous_and_reformats() -> None:
    series = BY_ID["CT-ABDPEL-W"]["series"]
    assert series[0]["role"] == "LOCALIZER" and series[0]["instances"] <= 2
    axial = [s for s in series if s["role"] == "PRIMARY"]
    assert [(s["plane"], s["contrast_phase"]) for s in axial] == [("AX", "PORTAL_VENOUS")]
    assert 80 <= axial[0]["instances"] <= 100
    assert {s["plane"] for s in series if s["role"] == "REFORMAT"} == {"COR", "SAG"}


def test_weights_reflect_real_volumes() -> None:
    weight = {e["id"]: e["weight"] for e in ACTIVE}
    assert weight["DX-CHEST-2V"] == max(weight.values())
    assert weight["DX-CHEST-2V"] >= 100 * weight["MR-HEART-WWO"]
    assert weight["CT-HEAD-WO"] > weight["MR-BRAIN-WO"] > weight["MR-HEART-WWO"]
    assert weight["MG-SCREEN-BILAT"] > weight["MG-DIAG-BILAT"]


def test_emergency_exams_exist_where_emergency_departments_order_them() -> None:
    for exam_id in ("CT-HEAD-WO", "CT-CSPINE-WO", "CT-ABDPEL-W", "CT-CHEST-CTA-PE", "DX-CHEST-2V",
                    "DX-CHEST-1V-PORTABLE", "US-ABD-FAST", "CT-HEAD-CTA-STROKE"):
        assert "emergency" in BY_ID[exam_id]["care_settings"], exam_id
    assert BY_ID["US-ABD-FAST"]["care_settings"] == ["emergency"]
    assert "emergency" not in BY_ID["MG-SCREEN-BILAT"]["care_settings"]


@pytest.mark.parametrize(
    ("exam_id", "sex", "min_age", "max_age"),
    [
        ("MG-SCREEN-BILAT", "F", 40, None),
        ("US-SCROTUM", "M", None, None),
        ("US-PELVIS-TV", "F", None, None),
        ("US-OB-FIRST-TRIMESTER", "F", 12, 55),
        ("US-OB-COMPLETE", "F", 12, 55),
        ("MR-PROSTATE-WWO", "M", 40, None),
        ("CT-CHEST-LDCT-SCREEN", "", 50, 80),
        ("US-AORTA-AAA-SCREEN", "M", 65, 75),  # USPSTF: men 65–75 who ever smoked
        ("MG-SCREEN-BILAT-TOMO", "F", 40, None),
        ("US-SCROTUM-DOPPLER", "M", None, None),
    ],
)
def test_special_exams_carry_their_sex_and_age_constraints(exam_id: str, sex: str, min_age: int | None,
                                                           max_age: int | None) -> None:
    exam = BY_ID[exam_id]
    assert exam["required_sex"] == sex
    if min_age is not None:
        assert exam["min_age"] is not None and exam["min_age"] >= min_age
    if max_age is not None:
        assert exam["max_age"] is not None and exam["max_age"] <= max_age


def test_pediatric_exams_stop_at_17() -> None:
    pediatric = [e for e in ACTIVE if "PEDS" in e["id"] or "INFANT" in e["id"] or "NEONATAL" in e["id"]
                 or "BONEAGE" in e["id"]]
    assert len(pediatric) >= 4
    assert [e["id"] for e in pediatric if e["max_age"] is None or e["max_age"] > 17] == []


def test_female_and_male_only_exams_match_their_anatomy() -> None:
    for exam in ACTIVE:
        if exam["body_part"] in {"UTERUS", "PELVISFEMALE"}:
            assert exam["required_sex"] == "F", exam["id"]
        if exam["body_part"] in {"SCROTUM", "PROSTATE"}:
            assert exam["required_sex"] == "M", exam["id"]


def test_it_ships_at_least_150_indications_with_icd10cm_codes() -> None:
    assert len(INDICATIONS) >= 150
    bad = [i["icd10"] for i in INDICATIONS if not ICD10CM_RE.match(i["icd10"])]
    assert bad == []
    keys = Counter((i["icd10"], i["text"]) for i in INDICATIONS)
    assert [k for k, n in keys.items() if n > 1] == []


@pytest.mark.parametrize("ind", INDICATIONS, ids=[f"{i['icd10']}-{i['text'][:30]}" for i in INDICATIONS])
def test_indication_scopes_use_the_shared_vocabulary(ind: dict[str, Any]) -> None:
    assert set(ind) == INDICATION_FIELDS
    assert 0 < len(ind["text"]) <= 200
    assert ind["body_part"] == "" or ind["body_part"] in BODY_PARTS
    assert ind["modality"] == "" or ind["modality"] in {m.value for m in Modality}
    assert ind["laterality"] in {lat.value for lat in Laterality}
    assert ind["sex"] in {"", "F", "M"}
    assert isinstance(ind["weight"], int) and ind["weight"] >= 1
    if ind["min_age"] is not None and ind["max_age"] is not None:
        assert ind["min_age"] <= ind["max_age"]
    if ind["laterality"]:
        assert ind["body_part"] in PAIRED_BODY_PARTS
        side = {"R": "right", "L": "left", "B": "both"}[ind["laterality"]]
        assert side in ind["text"].lower()
    assert any(indication_matches(ind, e) for e in ACTIVE), "an indication no active exam can use is dead weight"


@pytest.mark.parametrize("exam", ACTIVE, ids=_exam_ids(ACTIVE))
def test_every_active_exam_has_at_least_three_matching_indications(exam: dict[str, Any]) -> None:
    matching = [i for i in INDICATIONS if indication_matches(i, exam)]
    assert len(matching) >= 3, [i["text"] for i in matching]


def _fits_patient(ind: dict[str, Any], age: int, sex: str) -> bool:
    if ind["min_age"] is not None and age < ind["min_age"]:
        return False
    if ind["max_age"] is not None and age > ind["max_age"]:
        return False
    return ind["sex"] in {"", sex}


@pytest.mark.parametrize("exam", ACTIVE, ids=_exam_ids(ACTIVE))
def test_every_patient_an_exam_admits_gets_a_choice_of_indications(exam: dict[str, Any]) -> None:
    # exams.vocabulary filters indications by the patient too: a 6-year-old booked for an exam without an
    # age limit must still find reasons for study, or the order cannot be written.
    matching = [i for i in INDICATIONS if indication_matches(i, exam)]
    lo = exam["min_age"] if exam["min_age"] is not None else 0
    hi = exam["max_age"] if exam["max_age"] is not None else 100
    sexes = [exam["required_sex"]] if exam["required_sex"] else ["F", "M"]
    thin = [(sex, age) for sex in sexes for age in range(lo, hi + 1)
            if sum(_fits_patient(i, age, sex) for i in matching) < 2]
    assert thin == []


def test_sided_indications_reach_only_the_exam_of_their_side() -> None:
    ind = next(i for i in INDICATIONS if i["icd10"] == "M25.561")
    assert ind["laterality"] == "R"
    assert indication_matches(ind, BY_ID["MR-KNEE-RIGHT-WO"])
    assert not indication_matches(ind, BY_ID["MR-KNEE-LEFT-WO"])


def test_pregnancy_indications_are_female_and_of_childbearing_age() -> None:
    pregnancy = [i for i in INDICATIONS if i["icd10"].startswith(("O", "Z34", "Z36"))]
    assert len(pregnancy) >= 5
    for ind in pregnancy:
        assert ind["sex"] == "F" and ind["min_age"] is not None and ind["min_age"] >= 12
        assert ind["max_age"] is not None and ind["max_age"] <= 55
        assert not indication_matches(ind, BY_ID["US-SCROTUM"])


def test_a_ct_series_read_in_the_lung_window_says_so_in_its_protocol() -> None:
    lung_series = [(e["id"], s["description"]) for e in ACTIVE if e["modality"] == "CT" for s in e["series"]
                   if s.get("window") == "lung"]
    assert {"CT-CHEST-WO", "CT-CHEST-W", "CT-CHEST-LDCT-SCREEN", "CT-CHEST-CTA-PE", "CT-CHEST-HRCT-WO"} <= \
        {exam_id for exam_id, _ in lung_series}
    # and no mediastinal series of the same exams borrows it
    assert [d for _, d in lung_series if "MEDIASTINUM" in d] == []
