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
_S = terms.Scene
Scene = _choices("Scene", terms.Scene, {
    _S.NONE: "None (not NM or US)",
    _S.BONE: "NM bone scan, whole-body sweep (MDP)", _S.HEART: "NM myocardial perfusion SPECT, rest (sestamibi)",
    _S.STRESS: "NM myocardial perfusion SPECT, stress (sestamibi)", _S.POLAR: "NM myocardial perfusion polar maps",
    _S.VQ_VENT: "NM lung ventilation (DTPA aerosol)", _S.VQ_PERF: "NM lung perfusion (MAA)",
    _S.HIDA: "NM hepatobiliary (mebrofenin)", _S.HIDA_CCK: "NM hepatobiliary after CCK (mebrofenin)",
    _S.THYROID: "NM thyroid planar (pertechnetate) / US thyroid right lobe",
    _S.PINHOLE: "NM thyroid pinhole (pertechnetate, pinhole collimator)",
    _S.GASTRIC: "NM gastric emptying (sulfur colloid meal)", _S.RENAL: "NM renogram (MAG3)",
    _S.RENAL_LATE: "NM renogram after diuretic (MAG3)",
    _S.ABDOMEN: "US abdomen", _S.GALLBLADDER: "US gallbladder", _S.KIDNEY: "US right kidney under the liver",
    _S.KIDNEY_LEFT: "US left kidney", _S.BLADDER: "US bladder", _S.PELVIS_TA: "US pelvis transabdominal",
    _S.PELVIS_TV: "US pelvis transvaginal", _S.OB_TA: "US early pregnancy transabdominal",
    _S.OB_TV: "US early pregnancy transvaginal", _S.FETAL_HEAD: "US fetal head (biometry)",
    _S.FETAL_BODY: "US fetal body (anatomy)", _S.TESTIS: "US testes", _S.THYROID_LEFT: "US thyroid left lobe",
    _S.CAROTID: "US carotid", _S.VEINS: "US leg vessels", _S.BREAST: "US breast", _S.HIP: "US infant hip",
    _S.HEAD_COR: "US neonatal head, coronal", _S.HEAD_SAG: "US neonatal head, sagittal",
    _S.BOWEL: "US bowel, graded compression"})
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
