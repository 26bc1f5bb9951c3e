"""X-Ray Radiation Dose SR (PS3.3 A.35.8) of a fluoroscopy-guided study: angiography (XA) and radiofluoroscopy (RF).

Template (PS3.16): TID 10001 Projection X-Ray Radiation Dose, Procedure reported Projection X-Ray, with

* TID 10002 Accumulated X-Ray Dose (single plane) and its TID 10004 Accumulated Fluoroscopy and Acquisition
  Projection X-Ray Dose: Fluoro Dose Area Product Total, Fluoro Dose (RP) Total, Total Fluoro Time,
  Acquisition Dose Area Product Total, Acquisition Dose (RP) Total, Total Acquisition Time, Dose Area Product
  Total, Dose (RP) Total, Total Number of Radiographic Frames and the Reference Point Definition;
* one TID 10003 Irradiation Event X-Ray Data per fluoroscopy period and per acquired run. Each series of
  the protocol is a view: the operator screens (Irradiation Event Type Fluoroscopy, pulsed, at the
  fluoroscopy pulse rate) and records its runs (Stationary Acquisition: the C-arm is STATIC, Positioner
  Motion of the images). An acquisition event carries what its image header carries — KVP, X-Ray Tube
  Current, Exposure Time, Pulse Width, the run's frames as Number of Pulses, its Effective Duration as
  Irradiation Duration, the positioner angles (XA) or column angulation (RF) — and the TID 10003b/10003c
  source and mechanical data are written inline in the event.

Dose Area Product per frame (acquisition) and per second (fluoroscopy) follow the usual adult reference
levels of the region (cerebral DSA near 0.15 Gy.cm2 a frame, pulsed fluoroscopy about 1 Gy.cm2 a minute),
scaled by the patient's water-equivalent diameter (:func:`~generators.dicom.sr.dose.patient_diameter_cm`),
with a few per cent of noise. Dose (RP) is the DAP over the X-ray field area at the reference point: the
image's field (Intensifier Size) projected from the detector (Distance Source to Detector) to the interventional
reference point 15 cm from the isocentre toward the source (XA) or 1 cm above the tabletop (RF), both from
Distance Source to Patient. Every total is the exact decimal sum of the event values written.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from decimal import Decimal

from pydicom.dataset import Dataset

from generators.dicom import iods, iods_xray_mf
from generators.dicom.sr import dose
from generators.dicom.sr import items as sr
from generators.dicom.sr.document import AcquiredSeries, DocumentSeries, StudyContext
from generators.terms import Laterality, Modality
from generators.types import Order, SeriesSpec
from generators.uids import new_uid

FLUORO_MODALITIES = frozenset({Modality.XA, Modality.RF})

# --- codes (PS3.16 Annex D DCM, SNOMED CT, UCUM) ---------------------------------------------------
FLUORO_DAP_TOTAL = ("113726", "DCM", "Fluoro Dose Area Product Total")
FLUORO_DOSE_RP_TOTAL = ("113728", "DCM", "Fluoro Dose (RP) Total")
TOTAL_FLUORO_TIME = ("113730", "DCM", "Total Fluoro Time")
ACQUISITION_DAP_TOTAL = ("113727", "DCM", "Acquisition Dose Area Product Total")
ACQUISITION_DOSE_RP_TOTAL = ("113729", "DCM", "Acquisition Dose (RP) Total")
TOTAL_ACQUISITION_TIME = ("113855", "DCM", "Total Acquisition Time")
FLUOROSCOPY = ("44491008", "SCT", "Fluoroscopy")  # CID 10002 Irradiation Event Types
FLUORO_MODE = ("113732", "DCM", "Fluoro Mode")
PULSED = ("113631", "DCM", "Pulsed")
PULSE_RATE = ("113791", "DCM", "Pulse Rate")
NUMBER_OF_PULSES = ("113768", "DCM", "Number of Pulses")
PULSE_WIDTH = ("113793", "DCM", "Pulse Width")
IRRADIATION_DURATION = ("113742", "DCM", "Irradiation Duration")
PRIMARY_ANGLE = ("112011", "DCM", "Positioner Primary Angle")
SECONDARY_ANGLE = ("112012", "DCM", "Positioner Secondary Angle")
COLUMN_ANGULATION = ("113770", "DCM", "Column Angulation")
# CID 10025 Radiation Dose Reference Points (IEC 60601-2-43 interventional reference point; under-table RF)
IEC_REFERENCE_POINT = ("113860", "DCM", "15cm from Isocenter toward Source")
TABLETOP_REFERENCE_POINT = ("113862", "DCM", "1cm above Tabletop")
DEGREES = ("deg", "UCUM", "deg")
PULSES_PER_S = ("{pulse}/s", "UCUM", "pulse/s")
PULSES = ("{pulses}", "UCUM", "pulses")


@dataclass(frozen=True, slots=True)
class FluoroRegion:
    """Reference adult output of one region: DAP per acquired frame, DAP per second of fluoroscopy (Gy.cm2)
    and the fluoroscopy clock time of one view (s)."""

    dap_per_frame: float
    fluoro_dap_per_s: float
    fluoro_s_per_view: float


_REGIONS: dict[tuple[Modality, str], FluoroRegion] = {
    (Modality.XA, "HEAD"): FluoroRegion(0.15, 0.012, 120), (Modality.XA, "BRAIN"): FluoroRegion(0.15, 0.012, 120),
    (Modality.XA, "LEG"): FluoroRegion(0.10, 0.010, 90), (Modality.XA, "KIDNEY"): FluoroRegion(0.30, 0.030, 90),
    (Modality.XA, "HEART"): FluoroRegion(0.02, 0.030, 60),
    (Modality.RF, "ESOPHAGUS"): FluoroRegion(0.010, 0.010, 45), (Modality.RF, "ABDOMEN"): FluoroRegion(0.03, 0.020, 90),
    (Modality.RF, "BLADDER"): FluoroRegion(0.010, 0.008, 40),
}
_DEFAULT = {Modality.XA: FluoroRegion(0.15, 0.020, 90), Modality.RF: FluoroRegion(0.02, 0.015, 60)}
# XA pulsed fluoroscopy: pulse rate (pulses/s), pulse width (ms), tube current (mA), well below the DSA runs'.
# RF screens with the pulses its runs record (they are stored fluoroscopy, Radiation Setting GR): the image
# header's rate, pulse width and tube current (generators.dicom.iods_xray_mf).
_XA_FLUORO = (Decimal("7.5"), Decimal(8), 60)


@dataclass(frozen=True, slots=True)
class Technique:
    """The beam of one irradiation event: what the image header of the run says, or the fluoroscopy setting."""

    kvp: Decimal
    tube_current_ma: int
    pulse_width_ms: Decimal
    pulses: int
    duration_s: Decimal  # clock time of the irradiation
    primary_angle: Decimal | None  # XA Positioner; RF has the column angulation instead
    secondary_angle: Decimal | None
    column_angulation: Decimal | None
    rp_area_cm2: float  # X-ray field at the reference point

    @property
    def exposure_time_ms(self) -> Decimal:
        return self.pulse_width_ms * self.pulses


@dataclass(frozen=True, slots=True)
class FluoroEvent:
    """One irradiation event as reported: a fluoroscopy period (``image_index`` None) or a recorded run."""

    series: AcquiredSeries
    image_index: int | None
    uid: str
    started_at: dt.datetime
    technique: Technique
    pulse_rate: Decimal | None  # fluoroscopy only
    dap_gy_m2: Decimal
    dose_rp_gy: Decimal

    @property
    def fluoroscopy(self) -> bool:
        return self.image_index is None


def run_header(order: Order, spec: SeriesSpec) -> Dataset:
    """The acquisition attributes the image generator writes for a run of ``spec`` (one source of truth:
    :func:`generators.dicom.iods_xray_mf.xray_multiframe` fills them, the dose report repeats them)."""
    header = Dataset()
    header.ImageType = ["ORIGINAL", "PRIMARY"]
    iods_xray_mf.xray_multiframe(header, order, spec, contrast=False)
    return header


def _rp_area_cm2(header: Dataset, xa: bool) -> float:
    """The field area at the reference point: the detector field (a square inscribed in Intensifier Size)
    scaled by the squared ratio of the source-to-reference-point and source-to-detector distances."""
    side_cm = float(header.IntensifierSize) / math.sqrt(2) / 10
    source_to_patient = float(header.DistanceSourceToPatient)
    source_to_rp = source_to_patient - 150 if xa else source_to_patient + 10
    return side_cm * side_cm * (source_to_rp / float(header.DistanceSourceToDetector)) ** 2


def _angles(header: Dataset) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    if "PositionerPrimaryAngle" in header:
        return Decimal(str(header.PositionerPrimaryAngle)), Decimal(str(header.PositionerSecondaryAngle)), None
    return None, None, Decimal(str(header.ColumnAngulation))


def run_technique(order: Order, spec: SeriesSpec) -> Technique:
    """The technique of one recorded run of ``spec``, from its image header."""
    header = run_header(order, spec)
    primary, secondary, column = _angles(header)
    return Technique(
        kvp=Decimal(str(header.KVP)), tube_current_ma=int(header.XRayTubeCurrent),
        pulse_width_ms=Decimal(str(header.AveragePulseWidth)), pulses=int(header.NumberOfFrames),
        duration_s=Decimal(str(header.EffectiveDuration)), primary_angle=primary, secondary_angle=secondary,
        column_angulation=column, rp_area_cm2=_rp_area_cm2(header, order.modality == Modality.XA))


def _fluoro_technique(order: Order, spec: SeriesSpec, seconds: Decimal) -> tuple[Technique, Decimal]:
    """The pulsed fluoroscopy of the view of ``spec`` for ``seconds``, and its pulse rate."""
    header = run_header(order, spec)
    if order.modality == Modality.XA:
        rate, width, ma = _XA_FLUORO
    else:
        rate = Decimal(iods_xray_mf.run_timing(order.exam, spec).rate_fps)
        width, ma = Decimal(str(header.AveragePulseWidth)), int(header.XRayTubeCurrent)
    primary, secondary, column = _angles(header)
    pulses = int((rate * seconds).to_integral_value())
    technique = Technique(Decimal(str(header.KVP)), ma, width, pulses, seconds, primary, secondary, column,
                          _rp_area_cm2(header, order.modality == Modality.XA))
    return technique, rate


def fluoro_events(order: Order, study: StudyContext, *, rng: random.Random) -> list[FluoroEvent]:
    """The irradiation events of an XA/RF study: each series' runs (one per image, from its acquisition time,
    30 s apart after each run ends), then the fluoroscopy of that view (repositioning for the next view).
    Event UIDs are left empty (the builder mints them)."""
    modality = Modality(order.modality)
    if modality not in FLUORO_MODALITIES:
        raise ValueError(f"{modality} is not fluoroscopy-guided")
    region = _REGIONS.get((modality, order.exam.body_part.upper()), _DEFAULT[modality])
    size = math.exp(0.06 * (dose.patient_diameter_cm(order.patient, rng) - 30))
    if order.patient.age < 18:
        size *= 0.3 + 0.035 * order.patient.age
    events = []
    for series in study.series:
        spec = series.spec
        technique = run_technique(order, spec)
        at = series.acquired_at
        for index, _ref in enumerate(series.instances):
            dap = region.dap_per_frame * technique.pulses * size * rng.uniform(0.92, 1.08)
            events.append(_event(series, index, at, technique, None, dap))
            at += dt.timedelta(seconds=float(technique.duration_s) + 30)
        seconds = dose.round_decimal(region.fluoro_s_per_view * rng.uniform(0.6, 1.4), 1)
        fluoro, rate = _fluoro_technique(order, spec, seconds)
        dap = region.fluoro_dap_per_s * float(seconds) * size * rng.uniform(0.92, 1.08)
        events.append(_event(series, None, at, fluoro, rate, dap))
    return events


def _event(series: AcquiredSeries, index: int | None, at: dt.datetime, technique: Technique,
           rate: Decimal | None, dap_gy_cm2: float) -> FluoroEvent:
    dap = dose.round_decimal(dap_gy_cm2 * 1e-4, 8)  # Gy.m2
    if dap == 0:
        dap = Decimal("0.00000001")
    rp = dose.round_decimal(float(dap) * 1e4 / technique.rp_area_cm2, 6)  # Gy.cm2 / cm2 = Gy
    return FluoroEvent(series, index, "", at, technique, rate, dap, rp)


def _reference_point(order: Order) -> sr.CodeTriple:
    return IEC_REFERENCE_POINT if order.modality == Modality.XA else TABLETOP_REFERENCE_POINT


def _target_region(order: Order) -> Dataset:
    """Target Region: the Anatomic Region Sequence code the images carry, with the exam's side."""
    anatomy = iods._ANATOMY.get(order.exam.body_part.upper())
    region = (anatomy[0], "SCT", anatomy[1]) if anatomy else dose.target_region(order)
    side = {Laterality.RIGHT: dose.RIGHT, Laterality.LEFT: dose.LEFT}.get(order.exam.laterality)
    children = [sr.code_item(sr.HAS_CONCEPT_MOD, dose.LATERALITY, side)] if side else []
    return sr.code_item(sr.CONTAINS, dose.TARGET_REGION, region, children)


def _event_item(order: Order, event: FluoroEvent) -> Dataset:
    t = event.technique
    spec = event.series.spec
    children = [
        sr.code_item(sr.HAS_CONCEPT_MOD, dose.ACQUISITION_PLANE, dose.SINGLE_PLANE),
        sr.uidref(sr.CONTAINS, dose.IRRADIATION_EVENT_UID, event.uid),
        sr.datetime_item(sr.CONTAINS, dose.DATETIME_STARTED, event.started_at),
        sr.code_item(sr.CONTAINS, dose.IRRADIATION_EVENT_TYPE, FLUOROSCOPY if event.fluoroscopy else dose.STATIONARY),
        sr.text(sr.CONTAINS, dose.ACQUISITION_PROTOCOL, spec.protocol_name or spec.description),
        _target_region(order),
        sr.num(sr.CONTAINS, dose.DAP, event.dap_gy_m2, dose.GY_M2),
        sr.num(sr.CONTAINS, dose.DOSE_RP, event.dose_rp_gy, dose.GY),
        sr.code_item(sr.CONTAINS, dose.REFERENCE_POINT_DEFINITION, _reference_point(order)),
    ]
    # TID 10003c Irradiation Event X-Ray Mechanical Data, inline in the event
    if t.primary_angle is not None and t.secondary_angle is not None:
        children += [sr.num(sr.CONTAINS, PRIMARY_ANGLE, t.primary_angle, DEGREES),
                     sr.num(sr.CONTAINS, SECONDARY_ANGLE, t.secondary_angle, DEGREES)]
    if t.column_angulation is not None:
        children.append(sr.num(sr.CONTAINS, COLUMN_ANGULATION, t.column_angulation, DEGREES))
    # TID 10003b Irradiation Event X-Ray Source Data, inline in the event
    if event.fluoroscopy:
        assert event.pulse_rate is not None
        children += [sr.code_item(sr.CONTAINS, FLUORO_MODE, PULSED),
                     sr.num(sr.CONTAINS, PULSE_RATE, event.pulse_rate, PULSES_PER_S)]
    children += [
        sr.num(sr.CONTAINS, NUMBER_OF_PULSES, t.pulses, PULSES),
        sr.num(sr.CONTAINS, IRRADIATION_DURATION, t.duration_s, dose.SECONDS),
        sr.num(sr.CONTAINS, dose.KVP, t.kvp, dose.KV),
        sr.num(sr.CONTAINS, dose.TUBE_CURRENT, t.tube_current_ma, dose.MA),
        sr.num(sr.CONTAINS, dose.EXPOSURE_TIME, t.exposure_time_ms, dose.MS),
        sr.num(sr.CONTAINS, PULSE_WIDTH, t.pulse_width_ms, dose.MS),
        sr.num(sr.CONTAINS, dose.EXPOSURE, t.tube_current_ma * t.exposure_time_ms, dose.UAS),  # mA x ms = uA.s
    ]
    return sr.container(sr.CONTAINS, dose.IRRADIATION_EVENT, children)


def _accumulated(order: Order, events: list[FluoroEvent]) -> Dataset:
    """TID 10002 with its TID 10004 totals: each the exact sum of the events written."""
    fluoro = [e for e in events if e.fluoroscopy]
    runs = [e for e in events if not e.fluoroscopy]

    def total(values) -> Decimal:
        return sum(values, Decimal(0))

    return sr.container(sr.CONTAINS, dose.ACCUMULATED_XRAY, [
        sr.code_item(sr.HAS_CONCEPT_MOD, dose.ACQUISITION_PLANE, dose.SINGLE_PLANE),
        sr.num(sr.CONTAINS, FLUORO_DAP_TOTAL, total(e.dap_gy_m2 for e in fluoro), dose.GY_M2),
        sr.num(sr.CONTAINS, FLUORO_DOSE_RP_TOTAL, total(e.dose_rp_gy for e in fluoro), dose.GY),
        sr.num(sr.CONTAINS, TOTAL_FLUORO_TIME, total(e.technique.duration_s for e in fluoro), dose.SECONDS),
        sr.num(sr.CONTAINS, ACQUISITION_DAP_TOTAL, total(e.dap_gy_m2 for e in runs), dose.GY_M2),
        sr.num(sr.CONTAINS, ACQUISITION_DOSE_RP_TOTAL, total(e.dose_rp_gy for e in runs), dose.GY),
        sr.num(sr.CONTAINS, TOTAL_ACQUISITION_TIME, total(e.technique.duration_s for e in runs), dose.SECONDS),
        sr.num(sr.CONTAINS, dose.DAP_TOTAL, total(e.dap_gy_m2 for e in events), dose.GY_M2),
        sr.num(sr.CONTAINS, dose.DOSE_RP_TOTAL, total(e.dose_rp_gy for e in events), dose.GY),
        sr.num(sr.CONTAINS, dose.TOTAL_FRAMES, sum(e.technique.pulses for e in runs), dose.FRAMES),
        sr.code_item(sr.CONTAINS, dose.REFERENCE_POINT_DEFINITION, _reference_point(order)),
    ])


def build_fluoro_dose_sr(order: Order, study: StudyContext, doc: DocumentSeries, *, rng: random.Random,
                         now: dt.datetime) -> Dataset:
    """The Projection X-Ray Radiation Dose report (TID 10001) of an XA or RF study, created at ``now``.

    ``rng`` draws the patient's size, the fluoroscopy times, the exposure noise and the Irradiation Event
    UIDs: the same state gives the same report.
    """
    events = [FluoroEvent(e.series, e.image_index, new_uid(rng), e.started_at, e.technique, e.pulse_rate,
                          e.dap_gy_m2, e.dose_rp_gy) for e in fluoro_events(order, study, rng=rng)]
    if not events:
        raise ValueError("a fluoroscopy dose report needs at least one acquired run")
    content = [
        dose.procedure_reported(order, dose.PROJECTION_PROCEDURE),
        *dose.device_observer(order, study),
        dose.scope_of_accumulation(order),
        _accumulated(order, events),
        *(_event_item(order, e) for e in events),
        sr.code_item(sr.CONTAINS, dose.SOURCE_OF_DOSE_INFORMATION, dose.AUTOMATED_DATA_COLLECTION),
    ]
    return dose.dose_document(order, study, doc, content, "10001", now=now)
