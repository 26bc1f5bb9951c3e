"""X-Ray Radiation Dose SR (PS3.3 A.35.8, SOP Class 1.2.840.10008.5.1.4.1.1.88.67) for a study's exposures.

Templates (PS3.16):

* CT: TID 10011 CT Radiation Dose — TID 1002 Observer Context (a device observer, TID 1004), Start/End
  of X-Ray Irradiation, Scope of Accumulation (Study, with its UID), TID 10012 CT Accumulated Dose Data
  (Total Number of Irradiation Events, CT Dose Length Product Total), one TID 10013 CT Irradiation Event
  Data per acquired series (localizer = Constant Angle Acquisition, the others Spiral Acquisition;
  reformatted and derived series are reconstructions, not irradiation events) with CT Acquisition
  Parameters, CT X-Ray Source Parameters and CT Dose (Mean CTDIvol, CTDIw Phantom Type, DLP), and the
  Source of Dose Information.
* DX / CR / MG: TID 10001 Projection X-Ray Radiation Dose — Observer Context, Scope of Accumulation,
  TID 10002 Accumulated X-Ray Dose Data (single plane; TID 10007 integrated-projection totals for DX/CR:
  Dose Area Product Total, Dose (RP) Total, Total Number of Radiographic Frames; TID 10005 Accumulated
  Average Glandular Dose per breast for MG), and one TID 10003 Irradiation Event X-Ray Data per acquired
  image (one exposure per view: Stationary Acquisition) with Target Region and its laterality, Image
  View, Dose Area Product, Entrance Exposure at RP / Dose (RP), Average Glandular Dose for mammography,
  and the TID 10003b source data (KVP, X-Ray Tube Current, Exposure Time, Exposure) exactly as the
  image header of that view carries them.

Values are plausible for the protocol and the patient: each body region has a reference adult exposure
(CTDIvol per region with the head or body dosimetry phantom, DAP and entrance dose per radiographic
projection, AGD per mammographic view near the ACR/EUREF typical figures), scaled by a patient
water-equivalent diameter drawn from the patient's age and sex (automatic exposure control raises the
output for a larger patient), the series' kVp, and a few per cent of scanner-to-scanner noise. Every
total is the exact decimal sum of the event values written (DLP, DAP, Dose (RP), AGD per breast).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from pydicom.dataset import Dataset

from generators.dicom import iods, phantoms_pet
from generators.dicom.sr import items as sr
from generators.dicom.sr.document import (
    AcquiredSeries,
    DocumentSeries,
    StudyContext,
    attach_content,
    base_dataset,
    device_serial,
    device_uid,
    model_name,
    sr_document_general,
)
from generators.dicom_common import station_name
from generators.terms import Laterality, Modality, SeriesRole, Sex
from generators.types import Order, Patient, SeriesSpec
from generators.uids import new_uid

XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
# PT: a PET/CT study reports its CT attenuation-correction series (its radiopharmaceutical goes in the
# Radiopharmaceutical Radiation Dose SR, generators.dicom.sr.radiopharmaceutical)
DOSE_MODALITIES = frozenset({Modality.CT, Modality.DX, Modality.CR, Modality.MG, Modality.PT})

# --- codes (PS3.16 Annex D DCM, SNOMED CT, UCUM) ---------------------------------------------------
REPORT = ("113701", "DCM", "X-Ray Radiation Dose Report")
PROCEDURE_REPORTED = ("121058", "DCM", "Procedure reported")
CT_PROCEDURE = ("77477000", "SCT", "Computerized axial tomography")
PROJECTION_PROCEDURE = ("113704", "DCM", "Projection X-Ray")
MAMMOGRAPHY_PROCEDURE = ("71651007", "SCT", "Mammography")
HAS_INTENT = ("363703001", "SCT", "Has intent")
DIAGNOSTIC_INTENT = ("261004008", "SCT", "Diagnostic intent")
SCREENING_INTENT = ("360156006", "SCT", "Screening intent")
OBSERVER_TYPE = ("121005", "DCM", "Observer Type")
DEVICE = ("121007", "DCM", "Device")
DEVICE_OBSERVER_UID = ("121012", "DCM", "Device Observer UID")
DEVICE_OBSERVER_NAME = ("121013", "DCM", "Device Observer Name")
DEVICE_OBSERVER_MANUFACTURER = ("121014", "DCM", "Device Observer Manufacturer")
DEVICE_OBSERVER_MODEL = ("121015", "DCM", "Device Observer Model Name")
DEVICE_OBSERVER_SERIAL = ("121016", "DCM", "Device Observer Serial Number")
START_OF_IRRADIATION = ("113809", "DCM", "Start of X-Ray Irradiation")
END_OF_IRRADIATION = ("113810", "DCM", "End of X-Ray Irradiation")
SCOPE_OF_ACCUMULATION = ("113705", "DCM", "Scope of Accumulation")
STUDY = ("113014", "DCM", "Study")
STUDY_INSTANCE_UID = ("110180", "DCM", "Study Instance UID")
SOURCE_OF_DOSE_INFORMATION = ("113854", "DCM", "Source of Dose Information")
AUTOMATED_DATA_COLLECTION = ("113856", "DCM", "Automated Data Collection")
IRRADIATION_EVENT_UID = ("113769", "DCM", "Irradiation Event UID")
ACQUISITION_PROTOCOL = ("125203", "DCM", "Acquisition Protocol")
TARGET_REGION = ("123014", "DCM", "Target Region")
# TID 10012 / 10013
CT_ACCUMULATED = ("113811", "DCM", "CT Accumulated Dose Data")
TOTAL_EVENTS = ("113812", "DCM", "Total Number of Irradiation Events")
DLP_TOTAL = ("113813", "DCM", "CT Dose Length Product Total")
CT_ACQUISITION = ("113819", "DCM", "CT Acquisition")
CT_ACQUISITION_TYPE = ("113820", "DCM", "CT Acquisition Type")
SPIRAL = ("116152004", "SCT", "Spiral Acquisition")
CONSTANT_ANGLE = ("113805", "DCM", "Constant Angle Acquisition")
CT_PARAMETERS = ("113822", "DCM", "CT Acquisition Parameters")
EXPOSURE_TIME = ("113824", "DCM", "Exposure Time")
SCANNING_LENGTH = ("113825", "DCM", "Scanning Length")
SINGLE_COLLIMATION = ("113826", "DCM", "Nominal Single Collimation Width")
TOTAL_COLLIMATION = ("113827", "DCM", "Nominal Total Collimation Width")
PITCH = ("113828", "DCM", "Pitch Factor")
SOURCES = ("113823", "DCM", "Number of X-Ray Sources")
SOURCE_PARAMETERS = ("113831", "DCM", "CT X-Ray Source Parameters")
SOURCE_ID = ("113832", "DCM", "Identification of the X-Ray Source")
KVP = ("113733", "DCM", "KVP")
MAX_TUBE_CURRENT = ("113833", "DCM", "Maximum X-Ray Tube Current")
TUBE_CURRENT = ("113734", "DCM", "X-Ray Tube Current")
ROTATION_TIME = ("113834", "DCM", "Exposure Time per Rotation")
CT_DOSE = ("113829", "DCM", "CT Dose")
MEAN_CTDIVOL = ("113830", "DCM", "Mean CTDIvol")
PHANTOM_TYPE = ("113835", "DCM", "CTDIw Phantom Type")
HEAD_PHANTOM = ("113690", "DCM", "IEC Head Dosimetry Phantom")
BODY_PHANTOM = ("113691", "DCM", "IEC Body Dosimetry Phantom")
DLP = ("113838", "DCM", "DLP")
# TID 10002 / 10003 / 10005 / 10007
ACCUMULATED_XRAY = ("113702", "DCM", "Accumulated X-Ray Dose Data")
ACQUISITION_PLANE = ("113764", "DCM", "Acquisition Plane")
SINGLE_PLANE = ("113622", "DCM", "Single Plane")
DAP_TOTAL = ("113722", "DCM", "Dose Area Product Total")
DOSE_RP_TOTAL = ("113725", "DCM", "Dose (RP) Total")
TOTAL_FRAMES = ("113731", "DCM", "Total Number of Radiographic Frames")
REFERENCE_POINT_DEFINITION = ("113780", "DCM", "Reference Point Definition")  # TID 10002: fluoroscopy (fluoro.py)
ACCUMULATED_AGD = ("111637", "DCM", "Accumulated Average Glandular Dose")
LATERALITY = ("272741003", "SCT", "Laterality")
RIGHT_BREAST = ("73056007", "SCT", "Right breast")
LEFT_BREAST = ("80248007", "SCT", "Left breast")
IRRADIATION_EVENT = ("113706", "DCM", "Irradiation Event X-Ray Data")
DATETIME_STARTED = ("111526", "DCM", "DateTime Started")
IRRADIATION_EVENT_TYPE = ("113721", "DCM", "Irradiation Event Type")
STATIONARY = ("113611", "DCM", "Stationary Acquisition")
DAP = ("122130", "DCM", "Dose Area Product")
ENTRANCE_EXPOSURE = ("111636", "DCM", "Entrance Exposure at RP")
DOSE_RP = ("113738", "DCM", "Dose (RP)")
AGD = ("111631", "DCM", "Average Glandular Dose")
IMAGE_VIEW = ("111031", "DCM", "Image View")
EXPOSURE = ("113736", "DCM", "Exposure")
RIGHT = ("24028007", "SCT", "Right")
LEFT = ("7771000", "SCT", "Left")
# UCUM units
MGY = ("mGy", "UCUM", "mGy")
GY = ("Gy", "UCUM", "Gy")
MGY_CM = ("mGy.cm", "UCUM", "mGy.cm")
GY_M2 = ("Gy.m2", "UCUM", "Gy.m2")
MM = ("mm", "UCUM", "mm")
SECONDS = ("s", "UCUM", "s")
KV = ("kV", "UCUM", "kV")
MA = ("mA", "UCUM", "mA")
MS = ("ms", "UCUM", "ms")
UAS = ("uA.s", "UCUM", "uA.s")
RATIO = ("{ratio}", "UCUM", "ratio")
EVENTS = ("{events}", "UCUM", "events")
XRAY_SOURCES = ("{X-Ray sources}", "UCUM", "X-Ray sources")
FRAMES = ("{frames}", "UCUM", "frames")

# CPT codes of screening procedures (their dose report carries Screening intent)
_SCREENING_CPT = frozenset({"77067", "77063", "71271"})

# Target regions (PS3.16 CID 4030 CT/MR/PET anatomy, CID 4031 common anatomic regions), by Body Part Examined
_REGIONS: dict[str, tuple[str, str, str]] = {
    "HEAD": ("69536005", "SCT", "Head"), "BRAIN": ("69536005", "SCT", "Head"),
    "SKULL": ("69536005", "SCT", "Head"), "SINUS": ("69536005", "SCT", "Head"),
    "ORBIT": ("69536005", "SCT", "Head"), "NECK": ("45048000", "SCT", "Neck"),
    "CHEST": ("51185008", "SCT", "Thorax"), "ABDOMEN": ("818981001", "SCT", "Abdomen"),
    "PELVIS": ("816092008", "SCT", "Pelvis"), "ABDOMENPELVIS": ("818982008", "SCT", "Abdomen and Pelvis"),
    "CHESTABDPELVIS": ("416775004", "SCT", "Chest, Abdomen and Pelvis"),
    "CSPINE": ("122494005", "SCT", "Cervical spine"), "TSPINE": ("122495006", "SCT", "Thoracic spine"),
    "LSPINE": ("122496007", "SCT", "Lumbar spine"), "SPINE": ("421060004", "SCT", "Spine"),
    "HEART": ("80891009", "SCT", "Heart"), "AORTA": ("15825003", "SCT", "Aorta"),
    "KIDNEY": ("64033007", "SCT", "Kidney"), "LIVER": ("10200004", "SCT", "Liver"),
    "KNEE": ("72696002", "SCT", "Knee"), "ANKLE": ("70258002", "SCT", "Ankle joint"),
    "FOOT": ("56459004", "SCT", "Foot"), "WRIST": ("74670003", "SCT", "Wrist joint"),
    "HAND": ("85562004", "SCT", "Hand"), "ELBOW": ("127949000", "SCT", "Elbow"),
    "FOREARM": ("14975008", "SCT", "Forearm"), "HUMERUS": ("85050009", "SCT", "Humerus"),
    "SHOULDER": ("16982005", "SCT", "Shoulder"), "HIP": ("29836001", "SCT", "Hip"),
    "FEMUR": ("71341001", "SCT", "Femur"), "LEG": ("30021000", "SCT", "Lower leg"),
    "CLAVICLE": ("51299004", "SCT", "Clavicle"), "BREAST": ("76752008", "SCT", "Breast"),
    "WHOLEBODY": ("38266002", "SCT", "Entire body"),
}
_ENTIRE_BODY = ("38266002", "SCT", "Entire body")


@dataclass(frozen=True, slots=True)
class CTRegion:
    """Reference adult exposure of one CT body region at 120 kV with automatic exposure control."""

    ctdivol_mgy: float  # Mean CTDIvol of a standard (30 cm water-equivalent) adult
    scan_length_mm: float
    head: bool = False  # CTDIw measured in the 16 cm head phantom (else the 32 cm body phantom)


# Near the ACR/AAPM and European diagnostic reference levels (median adult values).
_CT_REGIONS: dict[str, CTRegion] = {
    "HEAD": CTRegion(52, 170, True), "BRAIN": CTRegion(52, 170, True), "SKULL": CTRegion(45, 170, True),
    "SINUS": CTRegion(14, 110, True), "ORBIT": CTRegion(30, 80, True), "NECK": CTRegion(14, 220),
    "CHEST": CTRegion(9, 330), "ABDOMEN": CTRegion(12, 280), "PELVIS": CTRegion(12, 220),
    "ABDOMENPELVIS": CTRegion(13, 450), "CHESTABDPELVIS": CTRegion(12, 680), "CSPINE": CTRegion(18, 180),
    "TSPINE": CTRegion(14, 300), "LSPINE": CTRegion(17, 220), "SPINE": CTRegion(15, 450),
    "HEART": CTRegion(25, 150), "AORTA": CTRegion(11, 550), "KIDNEY": CTRegion(11, 300),
    "LIVER": CTRegion(12, 250),
}
_CT_EXTREMITY = CTRegion(6, 250)
_LOW_DOSE_CPT = frozenset({"71271"})  # low-dose CT lung cancer screening: about 1.5 mGy
_PETCT_CTDIVOL_MGY = 3.0  # PET/CT attenuation-correction CT (EANM/SNMMI: about 2-5 mGy)


@dataclass(frozen=True, slots=True)
class ProjectionRegion:
    """Reference adult exposure of one radiographic projection (AP/PA; lateral views get ``lateral_factor``)."""

    dap_gy_cm2: float
    entrance_mgy: float
    lateral_factor: float = 2.0


_DX_REGIONS: dict[str, ProjectionRegion] = {
    "CHEST": ProjectionRegion(0.10, 0.12, 2.5), "ABDOMEN": ProjectionRegion(2.0, 3.0),
    "PELVIS": ProjectionRegion(2.0, 3.0), "HIP": ProjectionRegion(1.0, 1.8),
    "LSPINE": ProjectionRegion(1.6, 4.0), "TSPINE": ProjectionRegion(1.2, 3.0),
    "CSPINE": ProjectionRegion(0.25, 1.0, 1.2), "SPINE": ProjectionRegion(1.6, 4.0),
    "SKULL": ProjectionRegion(0.6, 2.0, 0.8), "SHOULDER": ProjectionRegion(0.3, 0.8, 1.5),
    "KNEE": ProjectionRegion(0.15, 0.3, 1.2), "ANKLE": ProjectionRegion(0.06, 0.15, 1.2),
    "FOOT": ProjectionRegion(0.06, 0.15, 1.2), "WRIST": ProjectionRegion(0.04, 0.10, 1.2),
    "HAND": ProjectionRegion(0.03, 0.08, 1.2), "ELBOW": ProjectionRegion(0.05, 0.12, 1.2),
    "FOREARM": ProjectionRegion(0.05, 0.12, 1.2), "HUMERUS": ProjectionRegion(0.15, 0.4, 1.3),
    "FEMUR": ProjectionRegion(0.4, 1.0, 1.3), "LEG": ProjectionRegion(0.15, 0.3, 1.2),
    "CLAVICLE": ProjectionRegion(0.2, 0.6, 1.0),
}
_DX_DEFAULT = ProjectionRegion(0.5, 1.0)
_LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "ML", "LM"})


def patient_diameter_cm(patient: Patient, rng: random.Random) -> float:
    """A water-equivalent trunk diameter (AAPM Report 220) for the patient: grows with age to adulthood,
    adult men a little larger than women, spread as in an adult clinical population (about ±3.5 cm)."""
    if patient.age < 18:
        mean = 12.0 + 0.95 * patient.age
        return max(10.0, rng.gauss(mean, 1.5))
    mean = 31.0 if patient.sex == Sex.MALE else 29.0
    return min(45.0, max(20.0, rng.gauss(mean, 3.5)))


def _region_key(order: Order) -> str:
    return order.exam.body_part.upper()


def target_region(order: Order) -> sr.CodeTriple:
    return _REGIONS.get(_region_key(order), _ENTIRE_BODY)


def _intent(order: Order) -> sr.CodeTriple:
    return SCREENING_INTENT if order.procedure_code.code in _SCREENING_CPT else DIAGNOSTIC_INTENT


def round_decimal(value: float, places: int) -> Decimal:
    """``value`` as a Decimal of ``places`` decimals (its shortest repr first: no binary float noise)."""
    return round(Decimal(repr(value)), places)


def procedure_reported(order: Order, procedure: sr.CodeTriple) -> Dataset:
    return sr.code_item(sr.HAS_CONCEPT_MOD, PROCEDURE_REPORTED, procedure,
                        [sr.code_item(sr.HAS_CONCEPT_MOD, HAS_INTENT, _intent(order))])


def device_observer(order: Order, study: StudyContext) -> list[Dataset]:
    """TID 1002 Observer Context with a device observer (TID 1004): the modality that irradiated."""
    model = model_name(order, study)
    return [
        sr.code_item(sr.HAS_OBS_CONTEXT, OBSERVER_TYPE, DEVICE),
        sr.uidref(sr.HAS_OBS_CONTEXT, DEVICE_OBSERVER_UID, device_uid(order)),
        sr.text(sr.HAS_OBS_CONTEXT, DEVICE_OBSERVER_NAME, station_name(order)),
        sr.text(sr.HAS_OBS_CONTEXT, DEVICE_OBSERVER_MANUFACTURER, iods.MANUFACTURER),
        sr.text(sr.HAS_OBS_CONTEXT, DEVICE_OBSERVER_MODEL, model),
        sr.text(sr.HAS_OBS_CONTEXT, DEVICE_OBSERVER_SERIAL, device_serial(order)),
    ]


def scope_of_accumulation(order: Order) -> Dataset:
    return sr.code_item(sr.HAS_OBS_CONTEXT, SCOPE_OF_ACCUMULATION, STUDY,
                        [sr.uidref(sr.HAS_PROPERTIES, STUDY_INSTANCE_UID, order.study_instance_uid)])


def dose_document(order: Order, study: StudyContext, doc: DocumentSeries, content: list[Dataset],
                  template: str, *, now: dt.datetime, sop_class_uid: str = XRAY_RADIATION_DOSE_SR,
                  title: sr.CodeTriple = REPORT) -> Dataset:
    """The SR Document General (C.17.2) and Content (C.17.3) modules around a dose report's items (an X-Ray
    Radiation Dose SR unless ``sop_class_uid`` names another dose IOD, whose root concept is ``title``)."""
    ds = base_dataset(order, study, doc, sop_class_uid=sop_class_uid, modality="SR", now=now)
    # the dose applies to every image of the study: they are its evidence
    sr_document_general(ds, order, references=study.images)
    attach_content(ds, title, content, template=template)
    return ds


# --- CT (TID 10011) -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CTEvent:
    """One CT irradiation event as reported (the values the content items carry)."""

    series: AcquiredSeries
    uid: str
    localizer: bool
    kvp: int
    tube_current_ma: int
    max_tube_current_ma: int
    rotation_time_s: Decimal
    exposure_time_s: Decimal
    scan_length_mm: Decimal
    single_collimation_mm: Decimal
    total_collimation_mm: Decimal
    pitch: Decimal
    ctdivol_mgy: Decimal
    dlp_mgy_cm: Decimal
    head_phantom: bool


def _ct_region(order: Order) -> CTRegion:
    if order.modality == Modality.PT:
        # the low-dose attenuation-correction CT of a PET/CT, over the PET's axial range
        return CTRegion(_PETCT_CTDIVOL_MGY, phantoms_pet.field_for(order.exam).coverage)
    return _CT_REGIONS.get(_region_key(order), _CT_EXTREMITY)


def ct_events(order: Order, study: StudyContext, *, rng: random.Random) -> list[CTEvent]:
    """The irradiation events of a CT study: one per acquired series (localizers and primary series)."""
    region = _ct_region(order)
    diameter = patient_diameter_cm(order.patient, rng)
    head = region.head
    if head and order.patient.age < 18:
        # paediatric head protocols (image gently): 25 mGy in infants rising to the adult value
        base = min(region.ctdivol_mgy, 25 + 2.0 * order.patient.age)
    else:
        base = region.ctdivol_mgy * (1.0 if head else math.exp(0.045 * (diameter - 30)))
    if order.procedure_code.code in _LOW_DOSE_CPT:
        base *= 0.15
    events = []
    for series in study.series:
        spec = series.spec
        if spec.role in (SeriesRole.REFORMAT, SeriesRole.DERIVED):
            continue
        events.append(_ct_event(series, spec, region, base, head, rng))
    return events


def _ct_event(series: AcquiredSeries, spec: SeriesSpec, region: CTRegion, base: float, head: bool,
              rng: random.Random) -> CTEvent:
    kvp = spec.kvp or 120
    localizer = spec.role == SeriesRole.LOCALIZER
    kv_factor = (kvp / 120) ** 2.5  # CTDIw per mAs grows about as kV^2.5
    n_ctdiw = (0.18 if head else 0.08) * kv_factor  # mGy per mAs
    if localizer:
        length = 250.0 if head else min(region.scan_length_mm + 150, 1200)
        ctdivol = rng.uniform(0.04, 0.12) * (2 if head else 1)
        ma = rng.choice((20, 30, 40))
        rotation, pitch, single, total = 0.0, 0.0, 0.625, 0.625 * 2
        exposure = length / 100.0  # table at 100 mm/s under a parked tube
    else:
        length = region.scan_length_mm * rng.uniform(0.9, 1.1)
        ctdivol = base * (kvp / 120) ** 2.0 * rng.uniform(0.93, 1.07)
        rotation = 1.0 if head else 0.5
        pitch = 0.531 if head else 0.984
        single, total = 0.625, (20.0 if head else 40.0)
        ma = max(10, round(ctdivol * pitch / (n_ctdiw * rotation)))
        exposure = rotation * (length / (pitch * total) + 1)  # plus one rotation of over-ranging
    ctdi = round_decimal(ctdivol, 2)
    if ctdi == 0:
        ctdi = Decimal("0.01")
    return CTEvent(
        series=series, uid="", localizer=localizer, kvp=kvp, tube_current_ma=ma,
        max_tube_current_ma=round(ma * (1.0 if localizer else 1.35)), rotation_time_s=round_decimal(rotation, 3),
        exposure_time_s=round_decimal(exposure, 2), scan_length_mm=round_decimal(length, 1),
        single_collimation_mm=round_decimal(single, 3), total_collimation_mm=round_decimal(total, 3),
        pitch=round_decimal(pitch, 3),
        ctdivol_mgy=ctdi, dlp_mgy_cm=round_decimal(float(ctdi) * length / 10.0, 2), head_phantom=head,
    )


def _ct_event_item(order: Order, event: CTEvent) -> Dataset:
    spec = event.series.spec
    source = [
        sr.text(sr.CONTAINS, SOURCE_ID, "A"),
        sr.num(sr.CONTAINS, KVP, event.kvp, KV),
        sr.num(sr.CONTAINS, MAX_TUBE_CURRENT, event.max_tube_current_ma, MA),
        sr.num(sr.CONTAINS, TUBE_CURRENT, event.tube_current_ma, MA),
    ]
    parameters = [
        sr.num(sr.CONTAINS, EXPOSURE_TIME, event.exposure_time_s, SECONDS),
        sr.num(sr.CONTAINS, SCANNING_LENGTH, event.scan_length_mm, MM),
        sr.num(sr.CONTAINS, SINGLE_COLLIMATION, event.single_collimation_mm, MM),
        sr.num(sr.CONTAINS, TOTAL_COLLIMATION, event.total_collimation_mm, MM),
    ]
    if not event.localizer:
        parameters.append(sr.num(sr.CONTAINS, PITCH, event.pitch, RATIO))
        source.append(sr.num(sr.CONTAINS, ROTATION_TIME, event.rotation_time_s, SECONDS))
    parameters += [sr.num(sr.CONTAINS, SOURCES, 1, XRAY_SOURCES),
                   sr.container(sr.CONTAINS, SOURCE_PARAMETERS, source)]
    dose = [
        sr.num(sr.CONTAINS, MEAN_CTDIVOL, event.ctdivol_mgy, MGY),
        sr.code_item(sr.CONTAINS, PHANTOM_TYPE, HEAD_PHANTOM if event.head_phantom else BODY_PHANTOM),
        sr.num(sr.CONTAINS, DLP, event.dlp_mgy_cm, MGY_CM),
    ]
    children = [
        sr.text(sr.CONTAINS, ACQUISITION_PROTOCOL, spec.protocol_name or spec.description),
        sr.code_item(sr.CONTAINS, TARGET_REGION, target_region(order)),
        sr.code_item(sr.CONTAINS, CT_ACQUISITION_TYPE, CONSTANT_ANGLE if event.localizer else SPIRAL),
        sr.uidref(sr.CONTAINS, IRRADIATION_EVENT_UID, event.uid),
        sr.container(sr.CONTAINS, CT_PARAMETERS, parameters),
        sr.container(sr.CONTAINS, CT_DOSE, dose),
    ]
    return sr.container(sr.CONTAINS, CT_ACQUISITION, children)


def build_ct_dose_sr(order: Order, study: StudyContext, doc: DocumentSeries, *, rng: random.Random,
                     now: dt.datetime) -> Dataset:
    """The CT Radiation Dose report (TID 10011) of the study's images, created at ``now``.

    ``rng`` draws the patient's size, the exposure noise and the Irradiation Event UIDs: the same
    state gives the same report.
    """
    events = [_with_uid(e, new_uid(rng)) for e in ct_events(order, study, rng=rng)]
    if not events:
        raise ValueError("a CT dose report needs at least one acquired (non-reformatted) series")
    start = min(e.series.acquired_at for e in events)
    end = max(e.series.acquired_at + dt.timedelta(seconds=float(e.exposure_time_s)) for e in events)
    accumulated = sr.container(sr.CONTAINS, CT_ACCUMULATED, [
        sr.num(sr.CONTAINS, TOTAL_EVENTS, len(events), EVENTS),
        sr.num(sr.CONTAINS, DLP_TOTAL, sum((e.dlp_mgy_cm for e in events), Decimal(0)), MGY_CM),
    ])
    content = [
        procedure_reported(order, CT_PROCEDURE),
        *device_observer(order, study),
        sr.datetime_item(sr.HAS_OBS_CONTEXT, START_OF_IRRADIATION, start),
        sr.datetime_item(sr.HAS_OBS_CONTEXT, END_OF_IRRADIATION, end),
        scope_of_accumulation(order),
        accumulated,
        *(_ct_event_item(order, e) for e in events),
        sr.code_item(sr.CONTAINS, SOURCE_OF_DOSE_INFORMATION, AUTOMATED_DATA_COLLECTION),
    ]
    return dose_document(order, study, doc, content, "10011", now=now)


def _with_uid(event: CTEvent, uid: str) -> CTEvent:
    return replace(event, uid=uid)


# --- projection X-ray (TID 10001) -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProjectionEvent:
    """One radiographic exposure (one acquired image) as reported."""

    series: AcquiredSeries
    image_index: int
    uid: str
    started_at: dt.datetime
    side: Laterality
    dap_gy_m2: Decimal
    entrance_mgy: Decimal
    agd_mgy: Decimal | None = None  # mammography only


def projection_events(order: Order, study: StudyContext, *, rng: random.Random) -> list[ProjectionEvent]:
    """One event per acquired image of a DX/CR/MG study (each radiograph is one exposure)."""
    modality = Modality(order.modality)
    diameter = patient_diameter_cm(order.patient, rng)
    size = math.exp(0.08 * (diameter - 30))  # AEC: about 8 % more output per extra centimetre
    events = []
    thickness: dict[Laterality, float] = {}
    for series in study.series:
        spec = series.spec
        side = spec.image_laterality if spec.image_laterality != Laterality.NONE else order.exam.laterality
        for index, _ref in enumerate(series.instances):
            started = series.acquired_at + dt.timedelta(seconds=20 * index)
            if modality == Modality.MG:
                breast = side if side in (Laterality.LEFT, Laterality.RIGHT) else Laterality.RIGHT
                t = thickness.setdefault(breast, min(95.0, max(25.0, rng.gauss(55, 12))))
                if (spec.view_position or "").upper() in _LATERAL_VIEWS | {"MLO"}:
                    t += 3  # oblique and lateral compressions are a little thicker
                agd = 1.5 * math.exp(0.025 * (t - 50)) * rng.uniform(0.92, 1.08)  # DBT-capable FFDM, W/Rh
                entrance = agd * (3.5 + 0.04 * (t - 50))
                dap = 0.0045 * entrance * 1e-4  # about 0.02 Gy.cm2 per view, in Gy.m2
                events.append(ProjectionEvent(series, index, "", started, breast, round_decimal(dap, 8),
                                              round_decimal(entrance, 3), round_decimal(agd, 3)))
                continue
            region = _DX_REGIONS.get(_region_key(order), _DX_DEFAULT)
            factor = size * rng.uniform(0.9, 1.1)
            if (spec.view_position or "").upper() in _LATERAL_VIEWS:
                factor *= region.lateral_factor
            if order.patient.age < 18 and _region_key(order) not in ("HAND", "WRIST", "FOOT", "ANKLE"):
                factor *= 0.3 + 0.035 * order.patient.age
            dap = region.dap_gy_cm2 * factor * 1e-4
            events.append(ProjectionEvent(series, index, "", started, side, round_decimal(dap, 8),
                                          round_decimal(region.entrance_mgy * factor, 3)))
    return events


@dataclass(frozen=True, slots=True)
class ExposureFactors:
    """kV, mA, exposure time and mAs of a radiograph, as its image header (X-Ray Acquisition Dose, C.8.7.8) says."""

    kvp: Decimal
    tube_current_ma: int
    exposure_time_ms: Decimal
    exposure_mas: Decimal
    view: sr.CodeTriple | None


def image_exposure(order: Order, spec: SeriesSpec) -> ExposureFactors:
    """The exposure factors and view code the image generator writes for ``spec`` (one source of truth:
    :func:`generators.dicom.iods.series_dataset` fills them, the dose report repeats them)."""
    header = Dataset()
    context = iods.SeriesContext(spec, "", "", dt.datetime.min, None)  # type: ignore[arg-type]  # no pixels read
    iods._projection_common(header, order, context)
    views = iods._MG_VIEWS if order.modality == Modality.MG else iods._DX_VIEWS
    default = "CC" if order.modality == Modality.MG else "PA"
    view = views.get((spec.view_position or default).upper())
    return ExposureFactors(
        kvp=Decimal(str(header.KVP)), tube_current_ma=int(header.XRayTubeCurrent),
        exposure_time_ms=Decimal(str(header.ExposureTime)), exposure_mas=Decimal(int(header.Exposure)),
        view=(view[0], "SCT", view[1]) if view else None)


def _side_code(side: Laterality) -> sr.CodeTriple | None:
    return {Laterality.RIGHT: RIGHT, Laterality.LEFT: LEFT}.get(side)


def _projection_event_item(order: Order, event: ProjectionEvent, mammography: bool) -> Dataset:
    spec = event.series.spec
    region_children = []
    if mammography:
        region: sr.CodeTriple = _REGIONS["BREAST"]
    else:
        region = target_region(order)
    side = _side_code(event.side)
    if side is not None:
        region_children.append(sr.code_item(sr.HAS_CONCEPT_MOD, LATERALITY, side))
    children = [
        sr.code_item(sr.HAS_CONCEPT_MOD, ACQUISITION_PLANE, SINGLE_PLANE),
        sr.uidref(sr.CONTAINS, IRRADIATION_EVENT_UID, event.uid),
        sr.datetime_item(sr.CONTAINS, DATETIME_STARTED, event.started_at),
        sr.code_item(sr.CONTAINS, IRRADIATION_EVENT_TYPE, STATIONARY),
        sr.text(sr.CONTAINS, ACQUISITION_PROTOCOL, spec.protocol_name or spec.description),
        sr.code_item(sr.CONTAINS, TARGET_REGION, region, region_children),
    ]
    factors = image_exposure(order, spec)
    if factors.view is not None:
        children.append(sr.code_item(sr.CONTAINS, IMAGE_VIEW, factors.view))
    children += [
        sr.num(sr.CONTAINS, DAP, event.dap_gy_m2, GY_M2),
        sr.num(sr.CONTAINS, ENTRANCE_EXPOSURE, event.entrance_mgy, MGY),
    ]
    if mammography and event.agd_mgy is not None:
        children.append(sr.num(sr.CONTAINS, AGD, event.agd_mgy, MGY))
    else:
        children.append(sr.num(sr.CONTAINS, DOSE_RP, event.entrance_mgy / 1000, GY))
    # TID 10003b Irradiation Event X-Ray Source Data, inline in the event
    children += [
        sr.num(sr.CONTAINS, KVP, factors.kvp, KV),
        sr.num(sr.CONTAINS, TUBE_CURRENT, factors.tube_current_ma, MA),
        sr.num(sr.CONTAINS, EXPOSURE_TIME, factors.exposure_time_ms, MS),
        sr.num(sr.CONTAINS, EXPOSURE, factors.exposure_mas * 1000, UAS),
    ]
    return sr.container(sr.CONTAINS, IRRADIATION_EVENT, children)


def build_projection_dose_sr(order: Order, study: StudyContext, doc: DocumentSeries, *, rng: random.Random,
                             now: dt.datetime) -> Dataset:
    """The Projection X-Ray Radiation Dose report (TID 10001) of a DX, CR or MG study, created at ``now``."""
    modality = Modality(order.modality)
    if modality not in (Modality.DX, Modality.CR, Modality.MG):
        raise ValueError(f"{modality} is not projection radiography")
    mammography = modality == Modality.MG
    events = [ProjectionEvent(e.series, e.image_index, new_uid(rng), e.started_at, e.side, e.dap_gy_m2,
                              e.entrance_mgy, e.agd_mgy) for e in projection_events(order, study, rng=rng)]
    if not events:
        raise ValueError("a projection dose report needs at least one acquired image")
    totals: list[Dataset] = [sr.code_item(sr.HAS_CONCEPT_MOD, ACQUISITION_PLANE, SINGLE_PLANE)]
    if mammography:
        for breast, code in ((Laterality.RIGHT, RIGHT_BREAST), (Laterality.LEFT, LEFT_BREAST)):
            agds = [e.agd_mgy for e in events if e.side == breast and e.agd_mgy is not None]
            if agds:
                totals.append(sr.num(sr.CONTAINS, ACCUMULATED_AGD, sum(agds, Decimal(0)), MGY,
                                     [sr.code_item(sr.HAS_CONCEPT_MOD, LATERALITY, code)]))
    else:
        totals += [
            sr.num(sr.CONTAINS, DAP_TOTAL, sum((e.dap_gy_m2 for e in events), Decimal(0)), GY_M2),
            sr.num(sr.CONTAINS, DOSE_RP_TOTAL, sum((e.entrance_mgy for e in events), Decimal(0)) / 1000, GY),
            sr.num(sr.CONTAINS, TOTAL_FRAMES, len(events), FRAMES),
        ]
    content = [
        procedure_reported(order, MAMMOGRAPHY_PROCEDURE if mammography else PROJECTION_PROCEDURE),
        *device_observer(order, study),
        scope_of_accumulation(order),
        sr.container(sr.CONTAINS, ACCUMULATED_XRAY, totals),
        *(_projection_event_item(order, e, mammography) for e in events),
        sr.code_item(sr.CONTAINS, SOURCE_OF_DOSE_INFORMATION, AUTOMATED_DATA_COLLECTION),
    ]
    return dose_document(order, study, doc, content, "10001", now=now)


def build_dose_sr(order: Order, study: StudyContext, doc: DocumentSeries, *, rng: random.Random,
                  now: dt.datetime) -> Dataset | None:
    """The X-ray dose report a study sends (CT, and the CT of a PET/CT: TID 10011; DX/CR/MG: TID 10001), else
    None. A PET/CT's report covers its CT series alone: they are its irradiation events and its evidence."""
    modality = Modality(order.modality)
    if modality == Modality.PT:
        ct_only = replace(study, series=tuple(s for s in study.series if phantoms_pet.is_ct_series(s.spec.kvp)))
        return build_ct_dose_sr(order, ct_only, doc, rng=rng, now=now)
    if modality == Modality.CT:
        return build_ct_dose_sr(order, study, doc, rng=rng, now=now)
    if modality in (Modality.DX, Modality.CR, Modality.MG):
        return build_projection_dose_sr(order, study, doc, rng=rng, now=now)
    return None


def numeric_values(ds: Dataset, concept: sr.CodeTriple) -> list[Decimal]:
    """Every NUM value of ``concept`` (matched by code value and scheme) in the document's content tree."""
    return [Decimal(str(item.MeasuredValueSequence[0].NumericValue)) for item in _content(ds)
            if item.ValueType == "NUM" and (sr.concept_of(item) or ("",))[:2] == concept[:2]]


def _content(ds: Dataset) -> Iterable[Dataset]:
    for child in ds.get("ContentSequence", []):
        yield from sr.walk(child)
