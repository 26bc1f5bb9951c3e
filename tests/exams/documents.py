"""Small catalog documents for tests, built from tests/examples.py (independent of the shipped catalog)."""

from __future__ import annotations

import copy
from dataclasses import replace

from generators.terms import Laterality
from generators.types import ExamInfo
from tests.examples import EXAMS


def exam_entry(exam: ExamInfo, *, weight: int = 10, active: bool = True) -> dict:
    return {
        "id": exam.id, "name": exam.name, "description": exam.description, "modality": exam.modality.value,
        "body_part": exam.body_part, "laterality": exam.laterality.value,
        "care_settings": [s.value for s in exam.care_settings], "weight": weight,
        "min_age": exam.min_age, "max_age": exam.max_age,
        "required_sex": exam.required_sex.value if exam.required_sex else "",
        "contrast": exam.contrast.value, "contrast_agent": exam.contrast_agent,
        "contrast_volume_ml": exam.contrast_volume_ml, "estimated_duration_min": exam.estimated_duration_min,
        "purpose": exam.purpose.value, "active": active,
        "codes": [{"code": c.code, "scheme": c.scheme.value, "display": c.display} for c in exam.codes],
        "series": [
            {"number": s.number, "description": s.description, "protocol_name": s.protocol_name,
             "instances": s.instance_count, "role": s.role.value, "plane": s.plane.value,
             "sequence_name": s.sequence_name, "weighting": s.weighting.value if s.weighting else "",
             "fat_sat": s.fat_sat, "slice_thickness_mm": s.slice_thickness_mm, "kvp": s.kvp,
             "contrast_phase": s.contrast_phase.value, "kernel": s.kernel, "view_position": s.view_position,
             "image_laterality": s.image_laterality.value, "frames": s.frames, "scene": s.scene.value}
            for s in exam.series
        ],
    }


def small_catalog() -> dict:
    """One exam per modality, plus the left knee sharing CPT 73721 with the right knee (weight 30 vs 10)."""
    exams = [exam_entry(e) for e in EXAMS.values()]
    right = next(e for e in exams if e["id"] == "MR-KNEE-RIGHT-WO")
    right["weight"] = 30
    left = exam_entry(replace(EXAMS["MR"], id="MR-KNEE-LEFT-WO", name="MRI Knee Left without contrast",
                              description="MRI KNEE LEFT WO CONTRAST", laterality=Laterality.LEFT))
    left["weight"] = 10
    exams.append(left)
    return {
        "format": "yeeter-catalog",
        "version": 1,
        "exams": exams,
        "indications": [
            {"text": "Right knee pain", "icd10": "M25.561", "body_part": "KNEE", "modality": "", "laterality": "R",
             "min_age": None, "max_age": None, "sex": "", "weight": 3},
            {"text": "Left knee pain", "icd10": "M25.562", "body_part": "KNEE", "modality": "", "laterality": "L",
             "min_age": None, "max_age": None, "sex": "", "weight": 3},
            {"text": "Cough", "icd10": "R05.9", "body_part": "CHEST", "modality": "", "laterality": "",
             "min_age": None, "max_age": None, "sex": "", "weight": 2},
            {"text": "Encounter for screening mammogram for malignant neoplasm of breast", "icd10": "Z12.31",
             "body_part": "BREAST", "modality": "MG", "laterality": "", "min_age": 40, "max_age": None, "sex": "F",
             "weight": 1, "purpose": "screening"},
            {"text": "Abdominal pain, unspecified", "icd10": "R10.9", "body_part": "", "modality": "",
             "laterality": "", "min_age": None, "max_age": None, "sex": "", "weight": 1},
            {"text": "Non-small cell lung cancer, initial staging", "icd10": "C34.90", "body_part": "WHOLEBODY",
             "modality": "PT", "laterality": "", "min_age": 18, "max_age": None, "sex": "", "weight": 1,
             "purpose": "staging"},
        ],
    }


def mutated(doc: dict, exam_id: str, **changes) -> dict:
    doc = copy.deepcopy(doc)
    for exam in doc["exams"]:
        if exam["id"] == exam_id:
            exam.update(changes)
    return doc
