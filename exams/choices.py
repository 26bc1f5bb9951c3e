"""Django ``TextChoices`` built from the enums of :mod:`generators.terms` (one vocabulary, two views)."""

from __future__ import annotations

from django.db import models

from generators import terms


def _choices(name: str, enum: type, labels: dict | None = None) -> type[models.TextChoices]:
    members = []
    for member in enum:
        label = (labels or {}).get(member) or member.name.replace("_", " ").title()
        members.append((member.name, (member.value, label)))
    return models.TextChoices(name, members)


Modality = _choices("Modality", terms.Modality, {m: f"{m.value} – {m.label}" for m in terms.Modality})
Laterality = _choices(
    "Laterality",
    terms.Laterality,
    {terms.Laterality.RIGHT: "Right", terms.Laterality.LEFT: "Left", terms.Laterality.BILATERAL: "Bilateral",
     terms.Laterality.NONE: "None (unpaired)"},
)
Sex = _choices("Sex", terms.Sex, {terms.Sex.FEMALE: "Female", terms.Sex.MALE: "Male", terms.Sex.OTHER: "Other"})
Contrast = _choices(
    "Contrast",
    terms.Contrast,
    {terms.Contrast.NONE: "No contrast", terms.Contrast.WITH: "With contrast",
     terms.Contrast.WITHOUT_THEN_WITH: "Without, then with contrast"},
)
CareSetting = _choices("CareSetting", terms.CareSetting)
Purpose = _choices("Purpose", terms.Purpose, {terms.Purpose.FOLLOW_UP: "Follow-up",
                                              terms.Purpose.GUIDANCE: "Procedure guidance"})
Weighting = _choices("Weighting", terms.Weighting, {w: w.value for w in terms.Weighting})
Plane = _choices(
    "Plane", terms.Plane,
    {terms.Plane.AXIAL: "Axial", terms.Plane.CORONAL: "Coronal", terms.Plane.SAGITTAL: "Sagittal",
     terms.Plane.NONE: "None (projection)"},
)
SeriesRole = _choices("SeriesRole", terms.SeriesRole)
ContrastPhase = _choices("ContrastPhase", terms.ContrastPhase, {terms.ContrastPhase.NONE: "None"})
WindowPreset = _choices("WindowPreset", terms.WindowPreset, {
    terms.WindowPreset.NONE: "By body part",
    **{w: f"{w.name.replace('_', ' ').title()} (C {c:g} / W {wd:g} HU)" for w, (c, wd) in terms.CT_WINDOWS.items()}})
Projection = _choices("Projection", terms.Projection, {
    terms.Projection.NONE: "Straight (as the view position)",
    terms.Projection.AXIAL_PATELLOFEMORAL: "Axial patellofemoral (sunrise/skyline)"})
CodingScheme = _choices(
    "CodingScheme", terms.CodingScheme,
    {terms.CodingScheme.CPT: "CPT (C4)", terms.CodingScheme.LOINC: "LOINC (LN)",
     terms.CodingScheme.RADLEX: "RadLex Playbook (RPID)", terms.CodingScheme.ICD10CM: "ICD-10-CM (I10C)"},
)
BODY_PART_CHOICES = sorted(((code, f"{code} – {label}") for code, label in terms.BODY_PARTS.items()))

# DICOM (0018,5101) View Position defined terms for DX/CR (PS3.3 C.8.11.5) and MG (C.8.11.7.1.1 + ACR views).
PROJECTION_VIEWS = ("AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO")
MAMMO_VIEWS = ("CC", "MLO", "ML", "LM", "XCCL", "XCCM", "FB", "SIO", "LMO")
VIEW_POSITION_CHOICES = [("", "None")] + [(v, v) for v in PROJECTION_VIEWS + MAMMO_VIEWS]
