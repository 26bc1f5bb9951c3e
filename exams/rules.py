"""Catalog validation rules, written once and used by the model ``clean()``, the admin inline formsets
and the catalog loader, so an exam the admin refuses is also refused in a JSON file and vice versa.

Each rule returns a list of :class:`Problem` (field name + sentence) instead of raising, so callers can
report every problem of an exam at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from generators.terms import (
    PAIRED_BODY_PARTS,
    Contrast,
    Laterality,
    Modality,
    Purpose,
    is_external_cause_code,
    is_injury_code,
    is_pregnancy_code,
    is_screening_code,
    scene_problem,
)

EXAM_ID_RE = re.compile(r"^[A-Z0-9]+(?:-[A-Z0-9]+)*$")
ICD10_RE = re.compile(r"^[A-TV-Z][0-9][0-9AB](?:\.[0-9A-TV-Z]{1,4})?$")
CPT_RE = re.compile(r"^(?:\d{5}|\d{4}[A-Z])$")

_SIDE_TOKENS = {"RIGHT": Laterality.RIGHT, "RT": Laterality.RIGHT, "LEFT": Laterality.LEFT, "LT": Laterality.LEFT,
                "BILAT": Laterality.BILATERAL, "BILATERAL": Laterality.BILATERAL}


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def laterality_from_id(exam_id: str) -> Laterality | None:
    """The side an exam id names (``MR-KNEE-RIGHT-WO`` → R), or None when it names none."""
    found = {_SIDE_TOKENS[token] for token in exam_id.split("-") if token in _SIDE_TOKENS}
    return found.pop() if len(found) == 1 else None


def check_exam(e: Mapping[str, Any]) -> list[Problem]:
    """Rules on an exam's own fields. ``e`` holds model-field names (id, modality, body_part, ...)."""
    problems: list[Problem] = []
    exam_id = e.get("id") or ""
    if not EXAM_ID_RE.match(exam_id):
        problems.append(Problem("id", f"{exam_id!r} must be upper-case letters/digits in dash-separated parts, "
                                      "e.g. MR-KNEE-RIGHT-WO."))
    min_age, max_age = e.get("min_age"), e.get("max_age")
    if min_age is not None and max_age is not None and min_age > max_age:
        problems.append(Problem("min_age", f"minimum age {min_age} is above maximum age {max_age}."))
    laterality = e.get("laterality") or ""
    body_part = e.get("body_part") or ""
    named = laterality_from_id(exam_id)
    if named is not None and laterality != named.value:
        problems.append(Problem("laterality", f"the id {exam_id} names side {named.value!r} but laterality is "
                                              f"{laterality or 'none'!r}."))
    if body_part in PAIRED_BODY_PARTS and not laterality:
        problems.append(Problem("laterality", f"{body_part} is a paired body part: choose right, left or bilateral."))
    if body_part and body_part not in PAIRED_BODY_PARTS and laterality:
        problems.append(Problem("laterality", f"{body_part} is not a paired body part: laterality must be none."))
    contrast = e.get("contrast") or Contrast.NONE.value
    if contrast != Contrast.NONE.value:
        if not e.get("contrast_agent"):
            problems.append(Problem("contrast_agent", "an exam with contrast needs the contrast agent."))
        if not e.get("contrast_volume_ml"):
            problems.append(Problem("contrast_volume_ml", "an exam with contrast needs the contrast volume."))
    elif e.get("contrast_agent") or e.get("contrast_volume_ml"):
        problems.append(Problem("contrast", "a contrast agent or volume is given but contrast is 'none'."))
    settings = [s for s in ("for_outpatient", "for_inpatient", "for_emergency") if e.get(s)]
    if not settings:
        problems.append(Problem("care_settings", "choose at least one care setting."))
    purpose = e.get("purpose") or Purpose.DIAGNOSTIC.value
    if purpose not in {p.value for p in Purpose}:
        problems.append(Problem("purpose", f"{purpose!r} is not a purpose; use one of "
                                           f"{', '.join(p.value for p in Purpose)}."))
    return problems


def check_indication(i: Mapping[str, Any]) -> list[Problem]:
    """Rules on one indication: its purpose fits its code, pregnancy codes only for women of
    childbearing age, injuries of the trauma purpose carry their external cause (ICD-10-CM
    guideline I.C.20), screening reasons are Z11–Z13 encounter codes."""
    problems: list[Problem] = []
    code, secondary = i.get("icd10") or "", i.get("secondary_icd10") or ""
    purpose = i.get("purpose") or Purpose.DIAGNOSTIC.value
    min_age, max_age = i.get("min_age"), i.get("max_age")
    if min_age is not None and max_age is not None and min_age > max_age:
        problems.append(Problem("min_age", f"minimum age {min_age} is above maximum age {max_age}."))
    if purpose not in {p.value for p in Purpose}:
        problems.append(Problem("purpose", f"{purpose!r} is not a purpose; use one of "
                                           f"{', '.join(p.value for p in Purpose)}."))
        return problems
    if is_pregnancy_code(code) or is_pregnancy_code(secondary):
        if i.get("sex") != "F":
            problems.append(Problem("sex", f"{code} is a pregnancy code: the indication needs sex F."))
        if min_age is None or max_age is None or min_age < 10 or max_age > 60:
            problems.append(Problem("min_age", f"{code} is a pregnancy code: give an age range within 10–60."))
    if purpose == Purpose.SCREENING and not is_screening_code(code):
        problems.append(Problem("icd10", f"a screening indication is coded as an encounter for screening "
                                         f"(Z11–Z13), not {code}."))
    if purpose != Purpose.SCREENING and is_screening_code(code):
        problems.append(Problem("purpose", f"{code} is an encounter for screening: its purpose is screening."))
    if purpose == Purpose.TRAUMA:
        if not is_injury_code(code):
            problems.append(Problem("icd10", f"a trauma indication is an injury code (S00–T88), not {code}."))
        if not is_external_cause_code(secondary):
            problems.append(Problem("secondary_icd10", "a trauma indication carries the injury's external cause "
                                                       "(V00–Y99) as its secondary code."))
    if secondary and not i.get("secondary_text"):
        problems.append(Problem("secondary_text", f"the secondary code {secondary} needs its text."))
    if secondary and secondary == code:
        problems.append(Problem("secondary_icd10", "the secondary code repeats the primary code."))
    return problems


def check_codes(codes: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """At least one code; the first (primary) is CPT; CPT codes look like CPT codes; no duplicates."""
    codes = list(codes)
    if not codes:
        return [Problem("codes", "an exam needs at least one procedure code (the first is the order's CPT code).")]
    problems: list[Problem] = []
    if codes[0].get("scheme") != "C4":
        problems.append(Problem("codes", f"the primary (first) code must be a CPT code (C4), got {codes[0].get('scheme')}."))
    seen: set[tuple[str, str]] = set()
    for c in codes:
        key = (c.get("scheme", ""), c.get("code", ""))
        if key in seen:
            problems.append(Problem("codes", f"code {key[1]} ({key[0]}) is listed twice."))
        seen.add(key)
        if key[0] == "C4" and not CPT_RE.match(key[1]):
            problems.append(Problem("codes", f"{key[1]!r} is not a CPT code (5 digits, or 4 digits and a letter)."))
        if not c.get("display"):
            problems.append(Problem("codes", f"code {key[1]} needs a display text."))
    return problems


def check_series(modality: str, series: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """At least one series; unique numbers; MR series name their sequence and weighting; window presets
    are CT-only and projections DX/CR-only."""
    series = list(series)
    if not series:
        return [Problem("series", "an exam needs at least one series protocol.")]
    problems: list[Problem] = []
    numbers = [s.get("number") for s in series]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        problems.append(Problem("series", f"series numbers must be unique; repeated: {', '.join(map(str, duplicates))}."))
    for s in series:
        label = f"series {s.get('number')}"
        if (s.get("instance_count") or 0) < 1:
            problems.append(Problem("series", f"{label} needs at least one instance."))
        if modality == Modality.MR.value:
            if not s.get("sequence_name"):
                problems.append(Problem("series", f"{label} is an MR series and needs a sequence name (e.g. TSE)."))
            if not s.get("weighting"):
                problems.append(Problem("series", f"{label} is an MR series and needs a weighting (e.g. T1, T2, PD)."))
        elif s.get("weighting") or s.get("sequence_name"):
            problems.append(Problem("series", f"{label}: sequence name and weighting apply to MR series only."))
        if s.get("window") and modality != Modality.CT.value:
            problems.append(Problem("series", f"{label}: a window preset applies to CT series only (MR, US and "
                                              "projection images are windowed from their pixel values)."))
        if s.get("projection") and modality not in (Modality.DX.value, Modality.CR.value):
            problems.append(Problem("series", f"{label}: a projection (oblique, mortise, sunrise) applies to "
                                              "DX and CR series only."))
    return problems


def check_scene(modality: str, scene: str) -> list[Problem]:
    """An NM or US series names a scene its modality knows (:data:`generators.terms.MODALITY_SCENES`); a
    series of any other modality names none. The scene decides what the series shows and its tracer,
    collimator or transducer, so it is curated here and never read from the description."""
    problem = scene_problem(modality, scene or "")
    return [Problem("scene", problem)] if problem else []
