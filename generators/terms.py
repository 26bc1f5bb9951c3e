"""Controlled vocabularies shared by the catalog, the generators and the runner.

Every enum is a ``StrEnum`` whose ``.value`` is the code the standards use on the wire
(DICOM defined terms, HL7 table values), so ``exam.laterality.value`` is what goes into
DICOM (0020,0060) Laterality and HL7 ZDS-3.
"""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """DICOM (0008,0060) Modality defined terms offered by the catalog (PS3.3 C.7.3.1.1.1)."""

    CT = "CT"
    MR = "MR"
    CR = "CR"
    DX = "DX"
    US = "US"
    MG = "MG"
    NM = "NM"
    PT = "PT"
    XA = "XA"
    RF = "RF"

    @property
    def label(self) -> str:
        return MODALITY_LABELS[self]


MODALITY_LABELS: dict[Modality, str] = {
    Modality.CT: "Computed Tomography",
    Modality.MR: "Magnetic Resonance",
    Modality.CR: "Computed Radiography",
    Modality.DX: "Digital Radiography",
    Modality.US: "Ultrasound",
    Modality.MG: "Mammography",
    Modality.NM: "Nuclear Medicine",
    Modality.PT: "Positron Emission Tomography",
    Modality.XA: "X-Ray Angiography",
    Modality.RF: "Radio Fluoroscopy",
}


class Laterality(StrEnum):
    """DICOM (0020,0060) Laterality; NONE (empty) for unpaired body parts."""

    RIGHT = "R"
    LEFT = "L"
    BILATERAL = "B"
    NONE = ""


class Sex(StrEnum):
    """DICOM (0010,0040) Patient's Sex, which is also a valid HL7 table 0001 administrative sex."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"


class CareSetting(StrEnum):
    """Where the order comes from; maps to HL7 PV1-2 patient class."""

    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    EMERGENCY = "emergency"

    @property
    def patient_class(self) -> str:
        """HL7 table 0004 patient class for PV1-2."""
        return {"outpatient": "O", "inpatient": "I", "emergency": "E"}[self.value]


class Contrast(StrEnum):
    NONE = "none"
    WITH = "with"
    WITHOUT_THEN_WITH = "without_then_with"


class Priority(StrEnum):
    """Order priority: HL7 OBR-27.6 / TQ1-9 code; ``dicom`` gives (0040,1003) RequestedProcedurePriority."""

    STAT = "S"
    ASAP = "A"
    ROUTINE = "R"

    @property
    def dicom(self) -> str:
        return {"S": "STAT", "A": "HIGH", "R": "ROUTINE"}[self.value]


class Weighting(StrEnum):
    """MR series weighting / contrast family; drives sequence parameters and pixel intensities."""

    T1 = "T1"
    T2 = "T2"
    PD = "PD"
    FLAIR = "FLAIR"
    DWI = "DWI"
    ADC = "ADC"
    STIR = "STIR"
    T2STAR = "T2STAR"
    TOF = "TOF"
    LOCALIZER = "LOCALIZER"


class Plane(StrEnum):
    """Acquisition / reconstruction plane of a cross-sectional series; NONE for projection images."""

    AXIAL = "AX"
    CORONAL = "COR"
    SAGITTAL = "SAG"
    NONE = ""


class SeriesRole(StrEnum):
    """What a series is within its study; drives ImageType (0008,0008)."""

    PRIMARY = "PRIMARY"
    LOCALIZER = "LOCALIZER"
    REFORMAT = "REFORMAT"
    DERIVED = "DERIVED"


class WindowPreset(StrEnum):
    """The display window a CT series is read in: its default VOI (Window Center/Width, PS3.3 C.11.2.1.2).

    Curated per series protocol (a lung series and a mediastinal series of the same chest differ only here);
    NONE lets the body part choose. Values are (center, width) in HU, see :data:`CT_WINDOWS`.
    """

    NONE = ""
    BRAIN = "brain"
    SUBDURAL = "subdural"
    LUNG = "lung"
    MEDIASTINUM = "mediastinum"
    SOFT_TISSUE = "soft_tissue"
    LIVER = "liver"
    BONE = "bone"
    ANGIO = "angio"


# Window (center, width) in HU per preset: the values reading rooms use (e.g. lung -600/1500, bone 400/1800).
CT_WINDOWS: dict[WindowPreset, tuple[float, float]] = {
    WindowPreset.BRAIN: (40.0, 80.0),
    WindowPreset.SUBDURAL: (75.0, 215.0),
    WindowPreset.LUNG: (-600.0, 1500.0),
    WindowPreset.MEDIASTINUM: (40.0, 400.0),
    WindowPreset.SOFT_TISSUE: (50.0, 400.0),
    WindowPreset.LIVER: (60.0, 160.0),
    WindowPreset.BONE: (400.0, 1800.0),
    WindowPreset.ANGIO: (300.0, 600.0),
}


class Projection(StrEnum):
    """How a radiographic view is projected when the View Position (0018,5101) cannot say it: the beam
    rotated about the limb (oblique, mortise) or along the femur, tangential to the patellofemoral joint
    (the axial "sunrise"/"skyline" view of the knee, View Position stays its AP/PA term). NONE: straight
    through along the View Position."""

    NONE = ""
    OBLIQUE = "oblique"
    MORTISE = "mortise"
    AXIAL_PATELLOFEMORAL = "axial_patellofemoral"


class Scene(StrEnum):
    """What an NM or US series shows: the study picture its phantom draws, and with it the tracer and
    collimator (NM) or the transducer (US) the generators write. Curated per series protocol (a V/Q
    study's ventilation and perfusion series differ only here), never read from a description; NONE for
    every other modality. :data:`MODALITY_SCENES` says which scenes each modality knows (``thyroid`` is
    both a pertechnetate planar view and an ultrasound of the right lobe)."""

    NONE = ""
    # NM (generators.dicom.phantoms_nm; the bone scan is phantoms.nm_bone_scan)
    BONE = "bone"
    HEART = "heart"
    STRESS = "stress"
    POLAR = "polar"
    VQ_VENT = "vq-vent"
    VQ_PERF = "vq-perf"
    HIDA = "hida"
    HIDA_CCK = "hida-cck"
    THYROID = "thyroid"
    PINHOLE = "pinhole"
    GASTRIC = "gastric"
    RENAL = "renal"
    RENAL_LATE = "renal-late"
    # US (generators.dicom.phantoms_us)
    ABDOMEN = "abdomen"
    GALLBLADDER = "gallbladder"
    KIDNEY = "kidney"
    KIDNEY_LEFT = "kidney-left"
    BLADDER = "bladder"
    PELVIS_TA = "pelvis-ta"
    PELVIS_TV = "pelvis-tv"
    OB_TA = "ob-ta"
    OB_TV = "ob-tv"
    FETAL_HEAD = "fetal-head"
    FETAL_BODY = "fetal-body"
    TESTIS = "testis"
    THYROID_LEFT = "thyroid-left"
    CAROTID = "carotid"
    VEINS = "veins"
    BREAST = "breast"
    HIP = "hip"
    HEAD_COR = "head-cor"
    HEAD_SAG = "head-sag"
    BOWEL = "bowel"


# The scenes each modality's phantom draws, in the order the admin offers them; a modality not listed has none.
MODALITY_SCENES: dict[Modality, tuple[Scene, ...]] = {
    Modality.NM: (Scene.BONE, Scene.HEART, Scene.STRESS, Scene.POLAR, Scene.VQ_VENT, Scene.VQ_PERF, Scene.HIDA,
                  Scene.HIDA_CCK, Scene.THYROID, Scene.PINHOLE, Scene.GASTRIC, Scene.RENAL, Scene.RENAL_LATE),
    Modality.US: (Scene.ABDOMEN, Scene.GALLBLADDER, Scene.KIDNEY, Scene.KIDNEY_LEFT, Scene.BLADDER, Scene.PELVIS_TA,
                  Scene.PELVIS_TV, Scene.OB_TA, Scene.OB_TV, Scene.FETAL_HEAD, Scene.FETAL_BODY, Scene.TESTIS,
                  Scene.THYROID, Scene.THYROID_LEFT, Scene.CAROTID, Scene.VEINS, Scene.BREAST, Scene.HIP,
                  Scene.HEAD_COR, Scene.HEAD_SAG, Scene.BOWEL),
}


def scene_problem(modality: str, scene: str) -> str | None:
    """Why ``scene`` cannot be the scene of a series of ``modality`` (a sentence), or None when it can:
    an NM or US series names one of its modality's scenes, any other series none."""
    known, scene = MODALITY_SCENES.get(modality), str(scene)  # a plain str: a Scene's repr is <Scene.X: 'x'>
    if not known:
        if scene:
            return (f"a scene ({scene!r}) applies to {' and '.join(MODALITY_SCENES)} series only; "
                    f"leave it blank for {modality or 'this modality'}.")
        return None
    listed, article = ", ".join(s.value for s in known), "an" if modality == Modality.NM else "a"
    if not scene:
        return f"{article} {modality} series needs a scene (what it shows): one of {listed}."
    if scene not in known:
        return f"{scene!r} is not {article} {modality} scene; use one of {listed}."
    return None


class ContrastPhase(StrEnum):
    NONE = ""
    NONCONTRAST = "NONCONTRAST"
    ARTERIAL = "ARTERIAL"
    PORTAL_VENOUS = "PORTAL_VENOUS"
    DELAYED = "DELAYED"
    POST = "POST"


class Purpose(StrEnum):
    """Why an exam is done: it decides which indications an order for it can carry."""

    SCREENING = "screening"  # no symptom: a population programme (mammography, LDCT lung screening)
    DIAGNOSTIC = "diagnostic"  # a symptom, a sign or a question to answer
    FOLLOW_UP = "follow_up"  # a known finding or disease, watched over time
    STAGING = "staging"  # a known malignancy: extent of disease, restaging
    TRAUMA = "trauma"  # an injury, coded with its external cause
    GUIDANCE = "guidance"  # the images guide a procedure (biopsy, line placement)


# Which indication purposes an exam of each purpose may draw. A screening exam never draws a
# symptomatic indication; a diagnostic exam may carry any reason but a screening one.
PURPOSE_DRAWS: dict[Purpose, frozenset[Purpose]] = {
    Purpose.SCREENING: frozenset({Purpose.SCREENING}),
    Purpose.DIAGNOSTIC: frozenset({Purpose.DIAGNOSTIC, Purpose.FOLLOW_UP, Purpose.STAGING, Purpose.TRAUMA}),
    Purpose.FOLLOW_UP: frozenset({Purpose.FOLLOW_UP, Purpose.STAGING}),
    Purpose.STAGING: frozenset({Purpose.STAGING}),
    Purpose.TRAUMA: frozenset({Purpose.TRAUMA}),
    Purpose.GUIDANCE: frozenset({Purpose.GUIDANCE, Purpose.DIAGNOSTIC}),
}


def is_pregnancy_code(icd10: str) -> bool:
    """ICD-10-CM chapter 15 (O00–O9A) and the pregnancy encounter codes Z32–Z36, Z3A."""
    return icd10.startswith(("O", "Z32", "Z33", "Z34", "Z36", "Z3A"))


def is_injury_code(icd10: str) -> bool:
    """ICD-10-CM chapter 19, injury and poisoning (S00–T88)."""
    return icd10[:1] in {"S", "T"}


def is_external_cause_code(icd10: str) -> bool:
    """ICD-10-CM chapter 20, external causes of morbidity (V00–Y99), coded beside an injury."""
    return icd10[:1] in {"V", "W", "X", "Y"}


def is_screening_code(icd10: str) -> bool:
    """Encounter for screening (Z11–Z13): the reason of a screening exam."""
    return icd10.startswith(("Z11", "Z12", "Z13"))


class CodingScheme(StrEnum):
    """Coding scheme designators as HL7 CE/CWE-3 and DICOM (0008,0102) use them."""

    CPT = "C4"
    LOINC = "LN"
    RADLEX = "RPID"
    ICD10CM = "I10C"
    DCM = "DCM"  # DICOM Controlled Terminology (PS3.16), e.g. CID 9300 discontinuation reasons


# DICOM (0018,0015) Body Part Examined defined terms (PS3.16 Annex L) that the catalog uses.
BODY_PARTS: dict[str, str] = {
    "ABDOMEN": "Abdomen",
    "ABDOMENPELVIS": "Abdomen and pelvis",
    "ANKLE": "Ankle",
    "AORTA": "Aorta",
    "BREAST": "Breast",
    "BLADDER": "Urinary bladder",
    "BRAIN": "Brain",
    "CAROTID": "Carotid artery",
    "CHEST": "Chest",
    "CHESTABDPELVIS": "Chest, abdomen and pelvis",
    "CLAVICLE": "Clavicle",
    "CSPINE": "Cervical spine",
    "ELBOW": "Elbow",
    "ESOPHAGUS": "Esophagus",
    "EXTREMITY": "Extremity",
    "FEMUR": "Femur",
    "FOOT": "Foot",
    "FOREARM": "Forearm",
    "HAND": "Hand",
    "HEAD": "Head",
    "HEART": "Heart",
    "HIP": "Hip",
    "HUMERUS": "Humerus",
    "KIDNEY": "Kidney",
    "KNEE": "Knee",
    "LEG": "Lower leg",
    "LIVER": "Liver",
    "LSPINE": "Lumbar spine",
    "NECK": "Neck",
    "ORBIT": "Orbit",
    "PELVIS": "Pelvis",
    "PROSTATE": "Prostate",
    "SCROTUM": "Scrotum",
    "SHOULDER": "Shoulder",
    "SINUS": "Paranasal sinus",
    "SKULL": "Skull",
    "SPINE": "Spine",
    "THYROID": "Thyroid",
    "TSPINE": "Thoracic spine",
    "WHOLEBODY": "Whole body",
    "WRIST": "Wrist",
    "BONE": "Bone",
    "GALLBLADDER": "Gallbladder",
    "UTERUS": "Uterus",
    "PELVISFEMALE": "Female pelvis",
}

# Body parts that come in left/right pairs: an exam of one of these needs a laterality.
PAIRED_BODY_PARTS: frozenset[str] = frozenset(
    {
        "ANKLE", "BREAST", "CLAVICLE", "ELBOW", "EXTREMITY", "FEMUR", "FOOT", "FOREARM", "HAND",
        "HIP", "HUMERUS", "KIDNEY", "KNEE", "LEG", "ORBIT", "SHOULDER", "WRIST",
    }
)

# Body parts whose images need a side (Laterality (0020,0060) R/L or Image Laterality (0020,0062) B): the paired
# ones above, plus parts an exam always covers on both sides, one series per side (the carotid arteries, the
# testes), so the exam itself has no laterality but each series names the side it shows (PS3.16 Annex L marks
# them paired).
IMAGED_BY_SIDE: frozenset[str] = PAIRED_BODY_PARTS | {"CAROTID", "SCROTUM", "TESTIS"}

# Catalog body parts that are no PS3.16 Annex L defined term, and the defined term the images carry in
# Body Part Examined (0018,0015) instead: the catalog keeps the finer term for exam choice, indications and
# anatomy; receivers and validators get a term they know (dciodvfy warns on any other, and cannot tell
# whether an unknown part is paired, so it asks for a Laterality).
BODY_PART_EXAMINED: dict[str, str] = {"SINUS": "HEAD", "PELVISFEMALE": "PELVIS", "FOREARM": "ARM"}


def body_part_examined(body_part: str) -> str:
    """The Body Part Examined (0018,0015) defined term for a catalog body part (PS3.16 Annex L), at most 16 chars."""
    part = body_part.upper()
    return BODY_PART_EXAMINED.get(part, part)[:16]
