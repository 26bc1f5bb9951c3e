"""Hand-built example values for tests that must not depend on the database or the shipped catalog.

One realistic exam per modality, a patient whose name exercises HL7/DICOM escaping, and
:func:`order_for` to mint an order exactly as the runner does.
"""

from __future__ import annotations

import datetime as dt
import random

from generators.identity import mint_order
from generators.terms import (
    CareSetting,
    CodingScheme,
    Contrast,
    ContrastPhase,
    Laterality,
    Modality,
    Plane,
    Purpose,
    Scene,
    SeriesRole,
    Sex,
    Weighting,
)
from generators.types import Address, Code, ExamInfo, Indication, Order, Patient, PersonName, SeriesSpec

FIXED_NOW = dt.datetime(2026, 11, 25, 9, 30, 0)

CPT = CodingScheme.CPT
LN = CodingScheme.LOINC

EXAMS: dict[Modality, ExamInfo] = {
    Modality.MR: ExamInfo(
        id="MR-KNEE-RIGHT-WO",
        name="MRI Knee Right without contrast",
        description="MRI KNEE RIGHT WO CONTRAST",
        modality=Modality.MR,
        body_part="KNEE",
        laterality=Laterality.RIGHT,
        codes=(Code("73721", CPT, "MRI joint of lower extremity without contrast"),
               Code("36489-5", LN, "MR Knee - right WO contrast")),
        series=(
            SeriesSpec(1, "SAG PD FS", "KNEE_SAG_PD_FS", 4, plane=Plane.SAGITTAL, sequence_name="TSE",
                       weighting=Weighting.PD, fat_sat=True, slice_thickness_mm=3.0),
            SeriesSpec(2, "COR T1", "KNEE_COR_T1", 4, plane=Plane.CORONAL, sequence_name="TSE",
                       weighting=Weighting.T1, slice_thickness_mm=3.0),
            SeriesSpec(3, "AX T2 FS", "KNEE_AX_T2_FS", 3, plane=Plane.AXIAL, sequence_name="TSE",
                       weighting=Weighting.T2, fat_sat=True, slice_thickness_mm=3.5),
        ),
        estimated_duration_min=35,
        care_settings=(CareSetting.OUTPATIENT, CareSetting.INPATIENT),
    ),
    Modality.CT: ExamInfo(
        id="CT-ABDPEL-W",
        name="CT Abdomen and Pelvis with contrast",
        description="CT ABDOMEN PELVIS W CONTRAST",
        modality=Modality.CT,
        body_part="ABDOMENPELVIS",
        laterality=Laterality.NONE,
        codes=(Code("74177", CPT, "CT abdomen and pelvis with contrast"),),
        series=(
            SeriesSpec(1, "Scout", "ABDPEL_SCOUT", 1, role=SeriesRole.LOCALIZER, kvp=120),
            SeriesSpec(2, "AX PORTAL VENOUS 5mm", "ABDPEL_PV", 6, plane=Plane.AXIAL, slice_thickness_mm=5.0,
                       kvp=120, contrast_phase=ContrastPhase.PORTAL_VENOUS, kernel="B30f"),
            SeriesSpec(3, "COR REFORMAT 3mm", "ABDPEL_COR", 4, role=SeriesRole.REFORMAT, plane=Plane.CORONAL,
                       slice_thickness_mm=3.0, kvp=120, contrast_phase=ContrastPhase.PORTAL_VENOUS),
        ),
        contrast=Contrast.WITH,
        contrast_agent="Iohexol 350 mgI/mL",
        contrast_volume_ml=100.0,
        estimated_duration_min=15,
        care_settings=(CareSetting.OUTPATIENT, CareSetting.INPATIENT, CareSetting.EMERGENCY),
    ),
    Modality.DX: ExamInfo(
        id="DX-CHEST-2V",
        name="XR Chest 2 views",
        description="XR CHEST PA AND LATERAL",
        modality=Modality.DX,
        body_part="CHEST",
        laterality=Laterality.NONE,
        codes=(Code("71046", CPT, "Radiologic examination, chest; 2 views"),),
        series=(
            SeriesSpec(1, "PA", "CHEST_PA", 1, view_position="PA", kvp=120),
            SeriesSpec(2, "LATERAL", "CHEST_LAT", 1, view_position="LL", kvp=125),
        ),
        estimated_duration_min=10,
        care_settings=(CareSetting.OUTPATIENT, CareSetting.INPATIENT, CareSetting.EMERGENCY),
    ),
    Modality.CR: ExamInfo(
        id="CR-WRIST-LEFT-3V",
        name="XR Wrist Left 3 views",
        description="XR WRIST LEFT 3+ VIEWS",
        modality=Modality.CR,
        body_part="WRIST",
        laterality=Laterality.LEFT,
        codes=(Code("73110", CPT, "Radiologic examination, wrist; complete, minimum of 3 views"),),
        series=(
            SeriesSpec(1, "PA", "WRIST_PA", 1, view_position="PA", kvp=55, image_laterality=Laterality.LEFT),
            SeriesSpec(2, "OBLIQUE", "WRIST_OBL", 1, view_position="PA", kvp=55, image_laterality=Laterality.LEFT),
            SeriesSpec(3, "LATERAL", "WRIST_LAT", 1, view_position="LL", kvp=55, image_laterality=Laterality.LEFT),
        ),
        estimated_duration_min=10,
    ),
    Modality.US: ExamInfo(
        id="US-ABD-COMPLETE",
        name="US Abdomen complete",
        description="US ABDOMEN COMPLETE",
        modality=Modality.US,
        body_part="ABDOMEN",
        laterality=Laterality.NONE,
        codes=(Code("76700", CPT, "US abdominal, real time with image documentation; complete"),),
        series=(SeriesSpec(1, "ABDOMEN", "US_ABD", 4, scene=Scene.ABDOMEN),),
        estimated_duration_min=30,
    ),
    Modality.MG: ExamInfo(
        id="MG-SCREEN-BILAT",
        name="Screening mammography bilateral",
        description="MG SCREENING BILATERAL W TOMO",
        modality=Modality.MG,
        body_part="BREAST",
        laterality=Laterality.BILATERAL,
        codes=(Code("77067", CPT, "Screening mammography, bilateral"),),
        series=(
            SeriesSpec(1, "R CC", "MG_RCC", 1, view_position="CC", image_laterality=Laterality.RIGHT),
            SeriesSpec(2, "L CC", "MG_LCC", 1, view_position="CC", image_laterality=Laterality.LEFT),
            SeriesSpec(3, "R MLO", "MG_RMLO", 1, view_position="MLO", image_laterality=Laterality.RIGHT),
            SeriesSpec(4, "L MLO", "MG_LMLO", 1, view_position="MLO", image_laterality=Laterality.LEFT),
        ),
        estimated_duration_min=20,
        min_age=40,
        required_sex=Sex.FEMALE,
        purpose=Purpose.SCREENING,
    ),
    Modality.NM: ExamInfo(
        id="NM-BONE-WB",
        name="NM Bone scan whole body",
        description="NM BONE SCAN WHOLE BODY",
        modality=Modality.NM,
        body_part="WHOLEBODY",
        laterality=Laterality.NONE,
        codes=(Code("78306", CPT, "Bone and/or joint imaging; whole body"),),
        series=(SeriesSpec(1, "WB ANT/POST", "NM_BONE_WB", 2, scene=Scene.BONE),),
        contrast=Contrast.NONE,
        estimated_duration_min=45,
    ),
    Modality.PT: ExamInfo(
        id="PT-WHOLEBODY-FDG",
        name="PET/CT FDG skull base to mid-thigh",
        description="PET CT FDG SKULL BASE TO MID THIGH",
        modality=Modality.PT,
        body_part="WHOLEBODY",
        laterality=Laterality.NONE,
        codes=(Code("78815", CPT, "PET with concurrently acquired CT; skull base to mid-thigh"),),
        series=(
            SeriesSpec(1, "CT AC LOW DOSE 5MM", "PETCT_CTAC_LD", 224, plane=Plane.AXIAL, slice_thickness_mm=5.0,
                       kvp=120, kernel="B19f"),
            SeriesSpec(2, "PET WB AC 3D OSEM", "PETCT_PET_WB", 374, plane=Plane.AXIAL, slice_thickness_mm=3.0),
        ),
        estimated_duration_min=30,
        min_age=18,
        purpose=Purpose.STAGING,
    ),
    # multi-frame examples keep to a few frames per run (PS3.3 C.7.6.6): the timing rules, not the size, are tested
    Modality.XA: ExamInfo(
        id="XA-HEAD-CEREBRAL",
        name="XA Cerebral angiography (internal carotid)",
        description="XA ANGIO CEREBRAL ICA",
        modality=Modality.XA,
        body_part="HEAD",
        laterality=Laterality.NONE,
        codes=(Code("36224", CPT, "Selective catheter ICA, unilateral, intracranial angiography"),),
        series=(SeriesSpec(1, "ICA DSA AP", "DSA_ICA_AP", 1, view_position="AP", kvp=80,
                           contrast_phase=ContrastPhase.POST, frames=6),
                SeriesSpec(2, "ICA DSA LATERAL", "DSA_ICA_LAT", 1, view_position="LL", kvp=80,
                           contrast_phase=ContrastPhase.POST, frames=4)),
        contrast=Contrast.WITH,
        contrast_agent="Iohexol 300 mgI/mL",
        contrast_volume_ml=60,
        estimated_duration_min=60,
    ),
    Modality.RF: ExamInfo(
        id="RF-ESOPH-SWALLOW",
        name="FL Esophagram (barium swallow)",
        description="FL ESOPHAGRAM BARIUM SWALLOW",
        modality=Modality.RF,
        body_part="ESOPHAGUS",
        laterality=Laterality.NONE,
        codes=(Code("74220", CPT, "Radiologic examination, esophagus; single-contrast study"),),
        series=(SeriesSpec(1, "SWALLOW LATERAL", "RF_SWALLOW_LAT", 2, view_position="LL", kvp=90,
                           contrast_phase=ContrastPhase.POST, frames=5),),
        contrast=Contrast.WITH,
        contrast_agent="Barium sulfate suspension 60% w/v",
        contrast_volume_ml=150,
        estimated_duration_min=20,
    ),
}

PATIENT = Patient(
    mrn="MRN0012345",
    issuer="YEETER_HOSP",
    name=PersonName("O'BRIEN-NÚÑEZ", "ZOË", "ANNE"),
    birth_date=dt.date(1968, 3, 14),
    sex=Sex.FEMALE,
    age=58,
    ssn="912-34-5678",
    address=Address("12 Main St^Apt 3 & 4", "Springfield", "IL", "62701"),
    phone="(217) 555-0142",
)

INDICATION = Indication("Right knee pain|locking, evaluate for meniscal tear", "M25.561")


def order_for(modality: Modality | str = Modality.MR, *, seed: int = 7, patient: Patient = PATIENT) -> Order:
    """Mint an order for the example exam of ``modality`` at :data:`FIXED_NOW`."""
    exam = EXAMS[Modality(modality)]
    return mint_order(
        exam=exam,
        patient=patient,
        indication=INDICATION,
        rng=random.Random(seed),
        now=FIXED_NOW,
    )
