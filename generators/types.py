"""Plain, immutable values that flow through the generators.

``ExamInfo`` is the generator-side view of one catalog ``ExamSpec`` (``exams.models.ExamSpec.to_info()``
builds it); ``Patient`` is a synthetic person; ``Order`` is the identity set minted once per order
(:func:`generators.identity.mint_order`) and carried unchanged into HL7, the worklist, MPPS, every
DICOM instance and the report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from generators.terms import (
    CareSetting,
    CodingScheme,
    Contrast,
    ContrastPhase,
    Laterality,
    Modality,
    Plane,
    Priority,
    Projection,
    Purpose,
    Scene,
    SeriesRole,
    Sex,
    Weighting,
    WindowPreset,
)
from generators.vr import pn_component


@dataclass(frozen=True, slots=True)
class Code:
    """A coded concept: CPT / LOINC / RadLex procedure code, ICD-10-CM diagnosis, protocol code."""

    code: str
    scheme: CodingScheme
    display: str


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One series of an exam's protocol (``exams.models.SeriesProtocol``)."""

    number: int
    description: str
    protocol_name: str
    instance_count: int
    role: SeriesRole = SeriesRole.PRIMARY
    plane: Plane = Plane.NONE
    # MR
    sequence_name: str = ""  # pulse sequence as the scanner names it, e.g. "TSE", "SE", "GRE", "EPI"
    weighting: Weighting | None = None
    fat_sat: bool = False
    # CT (and DX/CR for kvp)
    slice_thickness_mm: float | None = None
    kvp: int | None = None
    contrast_phase: ContrastPhase = ContrastPhase.NONE
    kernel: str = ""
    # projection imaging (DX/CR/MG)
    view_position: str = ""  # DICOM (0018,5101) e.g. AP, PA, LL, RL; MG: CC, MLO, ML
    image_laterality: Laterality = Laterality.NONE
    window: WindowPreset = WindowPreset.NONE  # CT: the default display window of the series
    projection: Projection = Projection.NONE  # DX/CR: oblique, mortise, axial patellofemoral (sunrise)
    # multi-frame (XA/RF runs, US cine loops): frames per instance, PS3.3 C.7.6.6; 1 = a single-frame image
    frames: int = 1
    # NM/US: what the series shows, hence its tracer and collimator (NM) or transducer (US); NONE elsewhere
    scene: Scene = Scene.NONE


@dataclass(frozen=True, slots=True)
class ExamInfo:
    """Everything the generators need to know about one catalog exam."""

    id: str
    name: str
    description: str
    modality: Modality
    body_part: str
    laterality: Laterality
    codes: tuple[Code, ...]
    series: tuple[SeriesSpec, ...]
    contrast: Contrast = Contrast.NONE
    contrast_agent: str = ""
    contrast_volume_ml: float | None = None
    estimated_duration_min: int = 20
    care_settings: tuple[CareSetting, ...] = (CareSetting.OUTPATIENT,)
    min_age: int | None = None
    max_age: int | None = None
    required_sex: Sex | None = None
    purpose: Purpose = Purpose.DIAGNOSTIC

    @property
    def primary_code(self) -> Code:
        """The code the order uses (the first one in catalog order): OBR-4, RequestedProcedureCodeSequence."""
        return self.codes[0]

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.series)


@dataclass(frozen=True, slots=True)
class PersonName:
    """A person's name in HL7 XPN / DICOM PN component order."""

    family: str
    given: str
    middle: str = ""
    prefix: str = ""
    suffix: str = ""

    @property
    def dicom(self) -> str:
        """DICOM PN alphabetic group ``family^given^middle^prefix^suffix`` with empty tail trimmed; a ``^``,
        ``=`` or ``\\`` inside a component becomes a space (:func:`generators.vr.pn_component`), so the
        name keeps its five components and one value (PS3.5 §6.2.1)."""
        parts = [pn_component(p) for p in (self.family, self.given, self.middle, self.prefix, self.suffix)]
        return "^".join(parts).rstrip("^")


@dataclass(frozen=True, slots=True)
class Provider:
    """A physician: referring / ordering / performing (HL7 XCN, DICOM PN)."""

    id: str
    name: PersonName


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    city: str
    state: str
    postal_code: str
    country: str = "USA"


@dataclass(frozen=True, slots=True)
class Patient:
    """A synthetic patient. ``age`` is in whole years at ``generators.patients``' reference date."""

    mrn: str
    issuer: str  # assigning authority of the MRN (PID-3.4, DICOM IssuerOfPatientID)
    name: PersonName
    birth_date: dt.date
    sex: Sex
    age: int
    ssn: str  # always in the never-issued 9xx area
    address: Address
    phone: str


@dataclass(frozen=True, slots=True)
class Indication:
    """Reason for study: free text plus the ICD-10-CM code (HL7 OBR-31, DICOM ReasonForRequestedProcedure).

    ``secondary_icd10`` is the code that goes beside it: the external cause of an injury (V00–Y99),
    the smoking history of a lung screening, a family history. Empty when there is none.
    """

    text: str
    icd10: str
    secondary_icd10: str = ""
    secondary_text: str = ""

    @property
    def codes(self) -> tuple[tuple[str, str], ...]:
        """(code, meaning) of the primary and, when present, the secondary diagnosis, in that order."""
        primary = ((self.icd10, self.text),)
        return primary + (((self.secondary_icd10, self.secondary_text),) if self.secondary_icd10 else ())


@dataclass(frozen=True, slots=True)
class Order:
    """The identity set of one order, minted once and used by every message of the patient story."""

    patient: Patient
    exam: ExamInfo
    setting: CareSetting
    priority: Priority
    indication: Indication
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    requested_procedure_id: str
    sps_id: str
    study_instance_uid: str
    visit_number: str
    ordered_at: dt.datetime
    scheduled_at: dt.datetime
    referring: Provider
    station_ae_title: str
    station_name: str = ""
    performing: Provider | None = None
    facility: str = "YEETER_HOSP"
    # The performed procedure step that fulfils the SPS (PS3.3 C.4.14): its MPPS SOP Instance UID (the N-CREATE's
    # Affected SOP Instance UID, every image's Referenced Performed Procedure Step) and its PPS ID (MPPS and
    # every image's Performed Procedure Step ID, C.7.3.1), minted with the order so all of them agree.
    mpps_uid: str = ""
    pps_id: str = ""

    # Convenience views of the bound exam so downstream code never reaches for text inference.
    @property
    def modality(self) -> Modality:
        return self.exam.modality

    @property
    def body_part(self) -> str:
        return self.exam.body_part

    @property
    def laterality(self) -> Laterality:
        return self.exam.laterality

    @property
    def description(self) -> str:
        return self.exam.description

    @property
    def procedure_code(self) -> Code:
        return self.exam.primary_code

    @property
    def study_id(self) -> str:
        """DICOM (0020,0010) Study ID (SH): the requested procedure ID, in the images and in MPPS alike."""
        return self.requested_procedure_id[:16]
