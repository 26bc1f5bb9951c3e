"""Series-level data sets for the image IODs of PS3.3 Annex A, built from an :class:`Order`.

One function assembles the modules every IOD shares (Patient C.7.1.1, General Study C.7.2.1, Patient
Study C.7.2.2, General Series C.7.3.1, General Equipment C.7.5.1, General Image C.7.6.1, Image Pixel
C.7.6.3, SOP Common C.12.1) and one function per modality adds its own modules. Identity comes only
from the order (the Study Instance UID, accession and patient are never minted here); the
per-instance elements (:data:`DYNAMIC`) are left out and patched in by :mod:`generators.dicom.writer`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    MRImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    UltrasoundImageStorage,
)

from generators.dicom import iods_xray_mf, phantoms_pet
from generators.dicom.pixels import SeriesPixels, series_has_contrast
from generators.dicom_common import (
    SPECIFIC_CHARACTER_SET,
    code_item,
    dicom_date,
    dicom_datetime,
    dicom_time,
    order_texts,
    set_requested_procedure,
    set_study,
)
from generators.terms import (
    IMAGED_BY_SIDE,
    MODALITY_SCENES,
    PAIRED_BODY_PARTS,
    Laterality,
    Modality,
    Scene,
    SeriesRole,
    Weighting,
    body_part_examined,
)
from generators.types import ExamInfo, Order, SeriesSpec
from generators.vr import clean_dataset, clip

SOP_CLASSES: dict[Modality, str] = {
    Modality.CT: CTImageStorage,
    Modality.MR: MRImageStorage,
    Modality.DX: DigitalXRayImageStorageForPresentation,
    Modality.CR: ComputedRadiographyImageStorage,
    Modality.US: UltrasoundImageStorage,
    Modality.MG: DigitalMammographyXRayImageStorageForPresentation,
    Modality.NM: NuclearMedicineImageStorage,
    Modality.PT: PositronEmissionTomographyImageStorage,
}

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class (PS3.4 F.7)
MANUFACTURER = "YEETER SIMULATED"
DEFAULT_MODELS: dict[Modality, str] = {
    Modality.CT: "Yeeter CT 128", Modality.MR: "Yeeter MR 1.5T", Modality.DX: "Yeeter DR 43",
    Modality.CR: "Yeeter CR Reader", Modality.US: "Yeeter Sono C5", Modality.MG: "Yeeter Mammo 3D",
    Modality.NM: "Yeeter Dual Head", Modality.PT: "Yeeter PET/CT 64", Modality.XA: "Yeeter Angio FD20",
    Modality.RF: "Yeeter Fluoro RF",
}

# Per-instance elements (tag → VR), patched by the writer; kept out of the series template.
SOP_INSTANCE_UID = 0x00080018
INSTANCE_NUMBER = 0x00200013
IMAGE_POSITION = 0x00200032
SLICE_LOCATION = 0x00201041
IMAGE_ORIENTATION = 0x00200037  # per instance only in a multi-plane series (an MR three-plane localizer)
DETECTOR_INFORMATION = 0x00540022
IMAGE_INDEX = 0x00541330
PIXEL_DATA = 0x7FE00010
DYNAMIC: dict[int, str] = {SOP_INSTANCE_UID: "UI", INSTANCE_NUMBER: "IS", IMAGE_POSITION: "DS",
                           SLICE_LOCATION: "DS", PIXEL_DATA: "OB"}
NM_DYNAMIC: dict[int, str] = {**DYNAMIC, DETECTOR_INFORMATION: "SQ"}
PT_DYNAMIC: dict[int, str] = {**DYNAMIC, IMAGE_INDEX: "US"}  # PET Image C.8.9.4: Image Index per slice

# SNOMED CT codes for Anatomic Region Sequence (CID 4009/4031) and MG views (CID 4014).
_ANATOMY: dict[str, tuple[str, str]] = {
    "CHEST": ("51185008", "Thorax"), "ABDOMEN": ("818981001", "Abdomen"), "PELVIS": ("816092008", "Pelvis"),
    "HEAD": ("69536005", "Head"), "SKULL": ("89546000", "Skull"), "KNEE": ("72696002", "Knee"),
    "WRIST": ("74670003", "Wrist joint"), "HAND": ("85562004", "Hand"), "ANKLE": ("70258002", "Ankle joint"),
    "FOOT": ("56459004", "Foot"), "ELBOW": ("127949000", "Elbow"), "SHOULDER": ("16982005", "Shoulder"),
    "HIP": ("29836001", "Hip"), "BREAST": ("76752008", "Breast"), "LSPINE": ("122496007", "Lumbar spine"),
    "CSPINE": ("122494005", "Cervical spine"), "TSPINE": ("122495006", "Thoracic spine"),
    "FOREARM": ("14975008", "Forearm"), "HUMERUS": ("85050009", "Humerus"), "FEMUR": ("71341001", "Femur"),
    "LEG": ("30021000", "Lower leg"), "CLAVICLE": ("51299004", "Clavicle"),
    "SINUS": ("2095001", "Paranasal sinus"), "SPINE": ("421060004", "Spine"),
    "ESOPHAGUS": ("32849002", "Esophagus"), "BLADDER": ("89837001", "Urinary bladder"),
}
# CID 4010 DX View (SCT codes as PS3.16 lists them: 399348003 is antero-posterior, 272479007 postero-anterior).
# A decubitus view is a frontal view taken with a horizontal beam; the obliques name their side only.
_DX_VIEWS: dict[str, tuple[str, str]] = {
    "PA": ("272479007", "postero-anterior"), "AP": ("399348003", "antero-posterior"),
    "LL": ("399173006", "left lateral"), "RL": ("399198007", "right lateral"),
    "RLD": ("399348003", "antero-posterior"), "LLD": ("399348003", "antero-posterior"),
    "RLO": ("399236003", "right oblique"), "LLO": ("399184004", "left oblique"),
}
_MG_VIEWS: dict[str, tuple[str, str]] = {
    "CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique"),
    "ML": ("399260004", "medio-lateral"), "LM": ("399352003", "latero-medial"),
    "XCCL": ("399192003", "cranio-caudal exaggerated laterally"),
}


@dataclass(frozen=True, slots=True)
class SeriesContext:
    """What one series' header depends on besides the order."""

    spec: SeriesSpec
    series_instance_uid: str
    frame_of_reference_uid: str
    acquired_at: dt.datetime
    pixels: SeriesPixels
    manufacturer_model: str | None = None
    instance_count: int = 1  # instances the series holds (PET Series Number of Slices)


def series_modality(exam: ExamInfo, spec: SeriesSpec) -> Modality:
    """The modality of one series: a PET/CT exam's series with a tube voltage is its CT (attenuation
    correction) series, in the same study and Frame of Reference as the PET (PS3.3 A.21, C.7.4.1)."""
    if exam.modality == Modality.PT and phantoms_pet.is_ct_series(spec.kvp):
        return Modality.CT
    return exam.modality


def dynamic_tags(modality: Modality) -> dict[int, str]:
    """The per-instance elements (tag → VR) of a series of ``modality``."""
    return {Modality.NM: NM_DYNAMIC, Modality.PT: PT_DYNAMIC}.get(modality, DYNAMIC)


def sop_class_for(modality: Modality, spec: SeriesSpec) -> str:
    """The SOP Class of a series' instances: the modality's, or its multi-frame IOD's (XA, RF, US cine)."""
    return iods_xray_mf.sop_class_for(modality, spec) or SOP_CLASSES[modality]


def decimal_string(value: float) -> str:
    """A Decimal String of at most 16 characters without float noise."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else clip(text, "DS")


def _needs_utf8(order: Order) -> bool:
    texts = [*order_texts(order), *(s.description for s in order.exam.series)]
    return any(not t.isascii() for t in texts)


def image_type(modality: Modality, spec: SeriesSpec) -> list[str]:
    """Image Type (0008,0008) per series role (PS3.3 C.7.6.1.1.2 and the modality-specific values).

    Value 3 is always one of the modality's Defined Terms: CT (C.8.2.1.1.1) knows only AXIAL and
    LOCALIZER, so a multiplanar reformat is ``DERIVED\\SECONDARY\\AXIAL`` (derived-secondary marks it as
    a reformat, Image Orientation (Patient) gives its plane; dciodvfy also checks CT value 4, so none is
    added); MR (C.8.3.1.1.1) has no localizer term, so a localizer is ``OTHER`` with ``LOCALIZER`` as
    value 4, and an ADC map is a ``DIFFUSION MAP`` (value 4 ``ADC``).
    """
    if spec.role == SeriesRole.REFORMAT:
        first = ["DERIVED", "SECONDARY"]
    elif spec.role == SeriesRole.DERIVED or spec.weighting == Weighting.ADC:
        first = ["DERIVED", "PRIMARY"]
    else:
        first = ["ORIGINAL", "PRIMARY"]
    if modality == Modality.CT:
        if spec.role == SeriesRole.LOCALIZER:
            return [*first, "LOCALIZER"]
        return [*first, "AXIAL"]
    if modality == Modality.MR:
        if spec.role == SeriesRole.LOCALIZER or spec.weighting == Weighting.LOCALIZER:
            return [*first, "OTHER", "LOCALIZER"]
        if spec.weighting == Weighting.ADC:
            return [*first, "DIFFUSION MAP", "ADC"]
        return [*first, "OTHER"]
    # NM and US value 3 depend on the study (static vs whole body; the transducer's application): the
    # defaults here are refined by _nm and _us
    if modality == Modality.NM:
        return [*first, "WHOLE BODY", "EMISSION"]
    if modality == Modality.US:
        return [*first, "ABDOMINAL"]
    return [*first]


def series_dataset(order: Order, ctx: SeriesContext, *, now: dt.datetime,
                   pps_started_at: dt.datetime | None = None) -> Dataset:
    """The series-level data set (everything but the per-instance elements) for ``ctx.spec`` of ``order``.

    ``pps_started_at`` is the start of the performed procedure step as MPPS reported it; given, the images
    also reference that MPPS instance (``order.mpps_uid``). Without it (no MPPS was created) the PPS start
    is ``now`` and no MPPS instance is referenced, since none exists.
    """
    exam, spec, px = order.exam, ctx.spec, ctx.pixels
    modality = series_modality(exam, spec)
    ds = Dataset()
    if _needs_utf8(order):
        ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    # SOP Common (C.12.1) and General Image (C.7.6.1)
    ds.ImageType = image_type(modality, spec)
    ds.SOPClassUID = sop_class_for(modality, spec)
    set_study(ds, order, started_at=now)
    ds.SeriesDate, ds.SeriesTime = dicom_date(ctx.acquired_at), dicom_time(ctx.acquired_at)
    ds.AcquisitionDate, ds.AcquisitionTime = dicom_date(ctx.acquired_at), dicom_time(ctx.acquired_at)
    ds.ContentDate, ds.ContentTime = dicom_date(ctx.acquired_at), dicom_time(ctx.acquired_at)
    # Patient (C.7.1.1), General Study (C.7.2.1), Patient Study (C.7.2.2): identity from the order only
    ds.Modality = modality.value
    ds.Manufacturer = MANUFACTURER
    ds.SeriesDescription = clip(spec.description)
    if order.performing is not None:
        ds.PerformingPhysicianName = order.performing.name.dicom
    ds.ManufacturerModelName = ctx.manufacturer_model or DEFAULT_MODELS[exam.modality]
    patient_body_size(ds, order)
    # Contrast/Bolus (C.7.6.4)
    if modality in (Modality.CT, Modality.MR, Modality.DX, Modality.CR) and series_has_contrast(exam, spec):
        ds.ContrastBolusAgent = clip(exam.contrast_agent or "IV contrast")
        ds.ContrastBolusRoute = "IV"
        if exam.contrast_volume_ml is not None:
            ds.ContrastBolusVolume = decimal_string(exam.contrast_volume_ml)
    ds.BodyPartExamined = body_part_examined(exam.body_part)
    ds.ProtocolName = clip(spec.protocol_name)
    ds.SoftwareVersions = "yeeter 0.1"
    # Performed procedure (C.7.3.1 General Series, MPPS references)
    ds.SeriesInstanceUID = ctx.series_instance_uid
    ds.SeriesNumber = spec.number
    _laterality(ds, order, spec)
    # General Series (C.7.3.1) performed procedure step: the one MPPS reports (ID and UID minted with the order)
    started = pps_started_at or now
    ds.PerformedProcedureStepStartDate = dicom_date(started)
    ds.PerformedProcedureStepStartTime = dicom_time(started)
    ds.PerformedProcedureStepID = order.pps_id or clip(order.sps_id, "SH")
    ds.PerformedProcedureStepDescription = clip(exam.description)
    ds.RequestAttributesSequence = Sequence([_request_attributes(order)])
    if order.mpps_uid and pps_started_at is not None:
        # Referenced Performed Procedure Step Sequence (0008,1111), General Series C.7.3.1
        pps = Dataset()
        pps.ReferencedSOPClassUID = MPPS_SOP_CLASS
        pps.ReferencedSOPInstanceUID = order.mpps_uid
        ds.ReferencedPerformedProcedureStepSequence = Sequence([pps])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = px.rows, px.cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = px.bits_allocated, px.bits_stored, px.bits_stored - 1
    ds.PixelRepresentation = int(px.signed)
    {Modality.CT: _ct, Modality.MR: _mr, Modality.DX: _dx, Modality.CR: _cr, Modality.US: _us,
     Modality.MG: _mg, Modality.NM: _nm, Modality.PT: _pt, Modality.XA: _xray_mf,
     Modality.RF: _xray_mf}[modality](ds, order, ctx)
    return clean_dataset(ds)


def patient_body_size(ds: Dataset, order: Order) -> None:
    """Patient's Weight and Size (Patient Study C.7.2.2) of a PET/CT study: SUVbw needs them, and every
    instance of the study (CT, PET and the documents) carries the one study-level value."""
    if order.exam.modality == Modality.PT:
        weight_kg, height_m = phantoms_pet.patient_habitus(order.patient)
        ds.PatientWeight, ds.PatientSize = decimal_string(weight_kg), decimal_string(height_m)


def series_side(order: Order, spec: SeriesSpec) -> Laterality:
    """The side a series shows: its own (a per-side series of a bilateral exam) or else the exam's."""
    return spec.image_laterality if spec.image_laterality != Laterality.NONE else order.exam.laterality


def _laterality(ds: Dataset, order: Order, spec: SeriesSpec) -> None:
    """Laterality (0020,0060, General Series C.7.3.1) or Image Laterality (0020,0062) of a series.

    Laterality is Type 2C, required for a paired body part unless Image Laterality is sent, and its
    enumerated values are only R and L; Image Laterality also has B (both) and U (unpaired). So: a
    one-sided series of a paired part carries Laterality R/L; a series showing both sides carries Image
    Laterality B; a paired part of unknown side an empty Laterality; an unpaired part carries neither
    (dciodvfy: "should be absent if an unpaired body part"). DX and MG always carry Image Laterality
    (their modules require it) and set it themselves.
    """
    if order.exam.modality in (Modality.DX, Modality.MG) or order.exam.body_part.upper() not in IMAGED_BY_SIDE:
        return
    side = series_side(order, spec)
    if side in (Laterality.LEFT, Laterality.RIGHT):
        ds.Laterality = side.value
    elif side == Laterality.BILATERAL:
        ds.ImageLaterality = side.value
    elif order.exam.body_part.upper() not in PAIRED_BODY_PARTS:
        # a part always covered on both sides (carotids, testes) in a series that names no side: a CTA/MRA of
        # the neck shows both carotid arteries in every image
        ds.ImageLaterality = Laterality.BILATERAL.value
    else:  # a paired part of unknown side (the catalog's rules forbid it; a hand-made exam may do it): Type 2
        ds.Laterality = ""


def _request_attributes(order: Order) -> Dataset:
    """Request Attributes Sequence item (C.7.3.1 / Table 10-9): links the instance to the order."""
    item = Dataset()
    set_requested_procedure(item, order)
    item.ScheduledProcedureStepDescription = clip(order.exam.description)
    item.ScheduledProcedureStepID = clip(order.sps_id, "SH")
    return item


def _plane(ds: Dataset, ctx: SeriesContext, *, spacing_between: bool) -> None:
    """Frame of Reference (C.7.4.1) and the series-constant part of Image Plane (C.7.6.2)."""
    geometry = ctx.pixels.geometry
    assert geometry is not None
    ds.SliceThickness = decimal_string(geometry.thickness)
    if spacing_between:
        ds.SpacingBetweenSlices = decimal_string(geometry.spacing)
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    if not geometry.planes:  # a multi-plane series writes it per instance (writer DYNAMIC)
        ds.ImageOrientationPatient = [decimal_string(v) for v in geometry.orientation]
    ds.PixelSpacing = [decimal_string(geometry.pixel_spacing), decimal_string(geometry.pixel_spacing)]


def _voi(ds: Dataset, px: SeriesPixels) -> None:
    ds.WindowCenter = [decimal_string(v) for v in px.window[0]]
    ds.WindowWidth = [decimal_string(v) for v in px.window[1]]


def _ct(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """CT Image module (C.8.2.1)."""
    spec, px = ctx.spec, ctx.pixels
    kvp = spec.kvp or 120
    localizer = spec.role == SeriesRole.LOCALIZER
    ds.ScanOptions = "SURVIEW" if localizer else "HELICAL_CT"
    ds.KVP = decimal_string(kvp)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = decimal_string(px.geometry.pixel_spacing * px.cols) if px.geometry else "500"
    ds.DistanceSourceToDetector = "1040"
    ds.DistanceSourceToPatient = "570"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500" if not localizer else "3000"
    ds.XRayTubeCurrent = 250 if not localizer else 30
    ds.Exposure = 125 if not localizer else 90
    ds.FilterType = "BODY"
    ds.GeneratorPower = str(kvp * 250 // 1000)
    ds.FocalSpots = "1.2"
    ds.ConvolutionKernel = spec.kernel or ("B70f" if localizer else "B30f")
    _plane(ds, ctx, spacing_between=False)
    ds.AcquisitionNumber = 1
    ds.RescaleIntercept, ds.RescaleSlope = decimal_string(px.rescale[0]), decimal_string(px.rescale[1])
    if not localizer:  # a scout's values are not Hounsfield units
        ds.RescaleType = "HU"
    _voi(ds, px)


@dataclass(frozen=True, slots=True)
class MRParams:
    """Acquisition parameters of an MR series (C.8.3.1)."""

    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    tr: float
    te: float
    flip: float
    etl: int
    acquisition: str = "2D"
    ti: float | None = None


def mr_params(spec: SeriesSpec, field_t: float) -> MRParams:
    """Plausible sequence parameters for the series' named sequence and weighting at ``field_t`` tesla."""
    seq = spec.sequence_name.upper()
    w = spec.weighting or Weighting.T1
    gradient = seq in {"GRE", "FLASH", "SPGR", "VIBE", "LAVA", "THRIVE", "FFE", "SWI", "TOF", "MPRAGE", "BRAVO"}
    if w == Weighting.FLAIR:
        return MRParams(("SE", "IR"), ("SK", "SP", "MP"), 9000, 110, 150, 20, ti=2500 if field_t < 2 else 2800)
    if w == Weighting.STIR:
        return MRParams(("SE", "IR"), ("SK", "SP", "MP"), 4500, 40, 150, 12, ti=150 if field_t < 2 else 220)
    if w in (Weighting.DWI, Weighting.ADC):
        return MRParams(("EP",), ("SK", "SP"), 5000, 80, 90, 1)
    if w == Weighting.TOF:
        return MRParams(("GR",), ("SP", "OSP"), 24, 3.6, 18, 1, "3D")
    if w == Weighting.T2STAR:
        return MRParams(("GR",), ("SP",), 650, 20, 20, 1)
    if w == Weighting.LOCALIZER:
        return MRParams(("GR",), ("SP",), 8.6, 4.0, 20, 1)
    if seq in {"MPRAGE", "BRAVO"}:
        return MRParams(("GR", "IR"), ("SK", "SP", "MP"), 2300, 2.9, 9, 1, "3D", ti=900)
    if gradient:
        return MRParams(("GR",), ("SP",), 5.0 if w == Weighting.T1 else 40, 2.3 if w == Weighting.T1 else 15,
                        10 if w == Weighting.T1 else 25, 1, "3D" if seq in {"VIBE", "LAVA", "THRIVE"} else "2D")
    tse = seq in {"TSE", "FSE", "RARE", "HASTE", "SSFSE"}
    if w == Weighting.T1:
        return MRParams(("SE",), ("SK", "SP") if tse else ("SK",), 550, 12, 90, 3 if tse else 1)
    if w == Weighting.PD:
        return MRParams(("SE",), ("SK", "SP") if tse else ("SK",), 3000, 30, 90 if not tse else 150, 8 if tse else 1)
    return MRParams(("SE",), ("SK", "SP") if tse else ("SK",), 4000, 95, 90 if not tse else 150, 16 if tse else 1)


def _mr(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """MR Image module (C.8.3.1)."""
    spec, px = ctx.spec, ctx.pixels
    field_t = 3.0 if order.exam.body_part.upper() in {"HEAD", "BRAIN", "ORBIT", "KNEE", "PROSTATE"} else 1.5
    p = mr_params(spec, field_t)
    ds.ScanningSequence = list(p.scanning_sequence)
    ds.SequenceVariant = list(p.sequence_variant)
    options = []
    if spec.fat_sat:
        options.append("FS")
    if "EP" in p.scanning_sequence:
        options.append("PFP")
    ds.ScanOptions = options or ""
    ds.MRAcquisitionType = p.acquisition
    ds.SequenceName = clip(f"*{(spec.sequence_name or 'se').lower()}{int(p.etl) if p.etl > 1 else ''}", "SH")
    ds.AngioFlag = "Y" if spec.weighting == Weighting.TOF else "N"
    _plane(ds, ctx, spacing_between=True)
    ds.RepetitionTime = decimal_string(p.tr)
    ds.EchoTime = decimal_string(p.te)
    if p.ti is not None:
        ds.InversionTime = decimal_string(p.ti)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = decimal_string(round(42.577478 * field_t, 6))
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = decimal_string(field_t)
    ds.EchoTrainLength = str(p.etl)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "200"
    ds.ReceiveCoilName = _coil(order.exam.body_part)
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [0, px.cols, px.rows, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = decimal_string(p.flip)
    ds.PatientPosition = "FFS" if order.exam.body_part.upper() in {"KNEE", "ANKLE", "FOOT", "LEG"} else "HFS"
    ds.AcquisitionNumber = 1
    _voi(ds, px)


def _coil(body_part: str) -> str:
    part = body_part.upper()
    if part in {"HEAD", "BRAIN", "ORBIT", "SINUS"}:
        return "Head_32"
    if part in {"KNEE", "ANKLE", "FOOT", "WRIST", "HAND", "ELBOW", "SHOULDER"}:
        return f"{part.title()}_16"
    return "Body_18"


def _projection_common(ds: Dataset, order: Order, ctx: SeriesContext) -> str:
    """X-Ray Acquisition Dose (C.8.7.8) fields shared by DX/CR/MG; returns the view's image laterality."""
    spec = ctx.spec
    ds.KVP = decimal_string(spec.kvp or (28 if order.exam.modality == Modality.MG else 70))
    ds.ExposureTime = "20" if order.exam.modality != Modality.MG else "1200"
    ds.XRayTubeCurrent = 320 if order.exam.modality != Modality.MG else 100
    ds.Exposure = 6 if order.exam.modality != Modality.MG else 120
    ds.DistanceSourceToDetector = "1800" if order.exam.body_part.upper() == "CHEST" else "1000"
    side = series_side(order, spec)
    return "U" if side == Laterality.NONE else side.value


def _orientation(view: str, side: str, modality: Modality) -> list[str]:
    """Patient Orientation (0020,0020) of a projection image (PS3.3 C.7.6.1.1.1)."""
    view = view.upper()
    if modality == Modality.MG:
        # Right breast: chest wall at the right edge, rows run toward posterior (back-to-back hanging).
        down = "F" if view in {"MLO", "ML", "LM"} else ("L" if side == "R" else "R")
        return ["P" if side == "R" else "A", down]
    if view in {"LL", "RL", "LAT", "LATERAL"}:
        return ["P", "F"]
    return ["L", "F"] if view in {"PA", "AP", ""} else ["L", "F"]


def _dx(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """DX Series/Anatomy Imaged/Image/Detector/Positioning modules (C.8.11.1-7), For Presentation."""
    spec, px = ctx.spec, ctx.pixels
    side = _projection_common(ds, order, ctx)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = side
    anatomy = _ANATOMY.get(order.exam.body_part.upper())
    ds.AnatomicRegionSequence = Sequence([code_item(anatomy[0], "SCT", anatomy[1])] if anatomy else [])
    ds.PatientOrientation = _orientation(spec.view_position, side, Modality.DX)
    ds.ViewPosition = (spec.view_position or "PA").upper()
    view = _DX_VIEWS.get(ds.ViewPosition)
    if view:
        item = code_item(view[0], "SCT", view[1])
        item.ViewModifierCodeSequence = Sequence([])
        ds.ViewCodeSequence = Sequence([item])
    ds.PositionerType = "COLUMN" if order.exam.body_part.upper() == "CHEST" else "NONE"
    _detector(ds, px, "SCINTILLATOR")
    ds.DerivationDescription = "Processed for presentation"
    _presentation(ds, px)


def _detector(ds: Dataset, px: SeriesPixels, kind: str) -> None:
    """DX Detector module (C.8.11.4) essentials."""
    ds.DetectorType = kind
    ds.DetectorConfiguration = "AREA"
    ds.DetectorID = "DET0001"
    ds.DetectorBinning = ["1", "1"]
    ds.ImagerPixelSpacing = [decimal_string(px.pixel_spacing), decimal_string(px.pixel_spacing)]
    ds.PixelSpacing = [decimal_string(px.pixel_spacing), decimal_string(px.pixel_spacing)]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Imager pixel spacing at the detector"


def _presentation(ds: Dataset, px: SeriesPixels) -> None:
    """DX Image module (C.8.11.3) pixel relationship and the mandatory VOI LUT for presentation."""
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.PresentationLUTShape = "IDENTITY"
    _voi(ds, px)
    ds.AcquisitionContextSequence = Sequence([])


def _cr(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """CR Series (C.8.1.1) and CR Image (C.8.1.2) modules."""
    spec, px = ctx.spec, ctx.pixels
    side = _projection_common(ds, order, ctx)
    ds.ViewPosition = (spec.view_position or "PA").upper()
    ds.PlateID = "PLATE0042"
    ds.ImagerPixelSpacing = [decimal_string(px.pixel_spacing), decimal_string(px.pixel_spacing)]
    ds.PatientOrientation = _orientation(spec.view_position, side, Modality.CR)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    _voi(ds, px)


def _mg(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """Mammography Series (C.8.11.15), Mammography Image (C.8.11.7) and DX modules."""
    spec, px = ctx.spec, ctx.pixels
    side = _projection_common(ds, order, ctx)
    if side not in ("R", "L"):
        side = "R"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = side
    ds.AnatomicRegionSequence = Sequence([code_item("76752008", "SCT", "Breast")])
    ds.PatientOrientation = _orientation(spec.view_position or "CC", side, Modality.MG)
    # The view is coded only (View Code Sequence, CID 4014): View Position (0018,5101) of the DX Positioning
    # module has no mammography terms (its Defined Terms are AP, PA, LL, RL, ...), so MG leaves it out.
    view = (spec.view_position or "CC").upper()
    code = _MG_VIEWS.get(view, _MG_VIEWS["CC"])
    view_item = code_item(code[0], "SCT", code[1])
    view_item.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([view_item])
    ds.BodyPartThickness = "52"
    ds.CompressionForce = "110"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.PositionerPrimaryAngle = "0" if view == "CC" else ("45" if side == "R" else "-45")
    ds.DetectorType = "DIRECT"
    ds.DetectorConfiguration = "AREA"
    ds.DetectorID = "MGDET01"
    ds.ImagerPixelSpacing = [decimal_string(px.pixel_spacing), decimal_string(px.pixel_spacing)]
    ds.OrganExposed = "BREAST"
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.EstimatedRadiographicMagnificationFactor = "1"
    ds.AnodeTargetMaterial = "TUNGSTEN"
    ds.FilterMaterial = "RHODIUM"
    _presentation(ds, px)


@dataclass(frozen=True, slots=True)
class Collimator:
    """The collimator of an NM view, as the NM Detector module (C.8.4.11) names it."""

    grid_name: str  # Collimator/Grid Name (0018,1180)
    kind: str  # Collimator Type (0018,1181), a defined term of C.8.4.11.1.1


_LEHR = Collimator("LEHR", "PARA")  # low-energy high-resolution parallel hole
# NM scene (its catalog ``scene``) → collimator: the thyroid pinhole views magnify through a pinhole.
_COLLIMATORS: dict[Scene, Collimator] = {scene: _LEHR for scene in MODALITY_SCENES[Modality.NM]} | {
    Scene.PINHOLE: Collimator("PINHOLE", "PINH")}


def _for_scene[T](table: dict[Scene, T], scene: Scene, modality: Modality) -> T:
    """The row of a scene table; a scene the table's modality does not know is a sentence, not a KeyError."""
    try:
        return table[scene]
    except KeyError:
        shown = repr(str(scene)) if scene else "no scene"
        raise ValueError(f"{shown} is not {'an NM' if modality == Modality.NM else 'a US'} scene; use one of "
                         f"{', '.join(MODALITY_SCENES[modality])}") from None


def collimator_for(scene: Scene) -> Collimator:
    """The collimator an NM series' scene is acquired with (:data:`_COLLIMATORS`)."""
    return _for_scene(_COLLIMATORS, scene, Modality.NM)


def nm_detector_information(posterior: bool, scene: Scene) -> Dataset:
    """The per-instance NM Detector module (C.8.4.11) item: one head, anterior or posterior view,
    behind the collimator of the series' scene (:func:`collimator_for`).

    Returned as a one-element data set so the writer can encode it per instance.
    """
    collimator = collimator_for(scene)
    det = Dataset()
    det.ImagePositionPatient = None
    det.ImageOrientationPatient = None
    det.CollimatorGridName = collimator.grid_name
    det.CollimatorType = collimator.kind
    view = code_item("255551008", "SCT", "Posterior") if posterior else code_item("255549009", "SCT", "Anterior")
    det.ViewCodeSequence = Sequence([view])
    holder = Dataset()
    holder.DetectorInformationSequence = Sequence([det])
    return holder


@dataclass(frozen=True, slots=True)
class Transducer:
    """The probe a US scene is scanned with, as the US Image module (C.8.5.6) names it."""

    model: str  # Transducer Data (0018,5010): the vendor's probe name, e.g. "L12-5" (12-5 MHz linear)
    kind: str  # Transducer Type (0018,6031), one of the defined terms of the US Image module (C.8.5.6)
    processing: str  # Processing Function (0018,5020): the preset the scanner was in
    image_type: str  # Image Type (0008,0008) value 3, a defined term of C.8.5.6.1.1
    mechanical_index: str = "1.1"


_CURVED = Transducer("C5-1", "CURVED LINEAR", "ABDOMEN", "ABDOMINAL")
_SMALL_PARTS = Transducer("L12-5", "LINEAR", "SMALL PARTS", "SMALL PARTS", "0.9")
_VASCULAR = Transducer("L9-3", "LINEAR", "VASCULAR", "VASCULAR", "0.9")
# US scene (its catalog ``scene``) → transducer: a curved array for the abdomen, linear for superficial and
# vascular work, endocavitary for transvaginal, phased for the fontanelle. Obstetric presets keep the
# mechanical index low (ALARA).
_TRANSDUCERS: dict[Scene, Transducer] = {
    Scene.ABDOMEN: _CURVED,
    Scene.GALLBLADDER: _CURVED,
    Scene.KIDNEY: _CURVED,
    Scene.KIDNEY_LEFT: _CURVED,
    Scene.BLADDER: _CURVED,
    Scene.PELVIS_TA: Transducer("C5-1", "CURVED LINEAR", "GYN", "PELVIC"),
    Scene.OB_TA: Transducer("C5-1", "CURVED LINEAR", "OB", "OBSTETRICAL", "0.6"),
    Scene.FETAL_HEAD: Transducer("C5-1", "CURVED LINEAR", "OB", "OBSTETRICAL", "0.6"),
    Scene.FETAL_BODY: Transducer("C5-1", "CURVED LINEAR", "OB", "OBSTETRICAL", "0.6"),
    # endovaginal curved arrays are ENDOCAV_CLA (endocavity curved linear array)
    Scene.PELVIS_TV: Transducer("EC9-4", "ENDOCAV_CLA", "GYN", "ENDOCAVITARY"),
    Scene.OB_TV: Transducer("EC9-4", "ENDOCAV_CLA", "OB", "ENDOCAVITARY", "0.6"),
    Scene.THYROID: _SMALL_PARTS,
    Scene.THYROID_LEFT: _SMALL_PARTS,
    Scene.BREAST: Transducer("L12-5", "LINEAR", "BREAST", "SMALL PARTS", "0.9"),
    Scene.TESTIS: Transducer("L12-5", "LINEAR", "SMALL PARTS", "SCROTAL", "0.9"),
    Scene.CAROTID: _VASCULAR,
    Scene.VEINS: _VASCULAR,
    Scene.HIP: Transducer("L12-5", "LINEAR", "MSK", "PEDIATRIC", "0.8"),
    Scene.BOWEL: Transducer("L9-3", "LINEAR", "BOWEL", "ABDOMINAL", "0.9"),
    # the anterior fontanelle is a small acoustic window: a phased (sector) array
    Scene.HEAD_COR: Transducer("P10-4", "SECTOR_PHASED", "NEONATAL HEAD", "NEONATAL HEAD", "0.7"),
    Scene.HEAD_SAG: Transducer("P10-4", "SECTOR_PHASED", "NEONATAL HEAD", "NEONATAL HEAD", "0.7"),
}


def transducer_for(scene: Scene) -> Transducer:
    """The transducer a US series' scene is scanned with (:data:`_TRANSDUCERS`)."""
    return _for_scene(_TRANSDUCERS, scene, Modality.US)


def _us(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """US Image module (C.8.5.6) and US Region Calibration (C.8.5.5), 8-bit MONOCHROME2."""
    px = ctx.pixels
    probe = transducer_for(ctx.spec.scene)
    ds.ImageType = [*ds.ImageType[:2], probe.image_type]
    ds.PatientOrientation = ""
    ds.LossyImageCompression = "00"
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = px.cols - 1, px.rows - 1
    region.ReferencePixelX0, region.ReferencePixelY0 = px.cols // 2, 0
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3  # cm
    region.ReferencePixelPhysicalValueX, region.ReferencePixelPhysicalValueY = 0.0, 0.0
    region.PhysicalDeltaX = region.PhysicalDeltaY = px.pixel_spacing / 10.0
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.TransducerData = probe.model
    ds.ProcessingFunction = probe.processing
    ds.MechanicalIndex = probe.mechanical_index
    ds.TransducerType = probe.kind
    if iods_xray_mf.is_multiframe(Modality.US, ctx.spec):
        iods_xray_mf.us_multiframe(ds, order, ctx.spec)
    _voi(ds, px)


def _xray_mf(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """XA / RF multi-frame image modules (:mod:`generators.dicom.iods_xray_mf`)."""
    iods_xray_mf.xray_multiframe(ds, order, ctx.spec, contrast=series_has_contrast(order.exam, ctx.spec))
    anatomy = _ANATOMY.get(order.exam.body_part.upper())
    if anatomy:
        ds.AnatomicRegionSequence = Sequence([code_item(anatomy[0], "SCT", anatomy[1])])
    ds.ImagerPixelSpacing = [decimal_string(ctx.pixels.pixel_spacing), decimal_string(ctx.pixels.pixel_spacing)]
    _voi(ds, ctx.pixels)


@dataclass(frozen=True, slots=True)
class Radiopharmaceutical:
    """The tracer of an NM study (Radiopharmaceutical Information Sequence item, C.8.4.10)."""

    name: str  # Radiopharmaceutical (0018,0031)
    code: tuple[str, str]  # CID 25 (SCT code value, code meaning)
    dose_mbq: float  # Radionuclide Total Dose (0018,1074), MBq
    route: str = "Intravenous"
    frame_ms: int = 300000  # Actual Frame Duration (0018,1242) of one planar view
    counts: int = 500000  # Counts Accumulated (0018,0070) of one view


# NM scene (its catalog ``scene``) → tracer. Codes are PS3.16 CID 25 in SNOMED CT (SCT): the SNOMED-RT (SRT) ids
# that CID 25 still lists beside them are deprecated (PS3.16 Section 8, dciodvfy warns on SRT); doses are usual
# adult activities (SNMMI / EANM guidelines).
_MDP = Radiopharmaceutical("Tc-99m MDP", ("96390006", "Technetium Tc^99m^ medronate"), 740, frame_ms=800000,
                           counts=1500000)
_SESTAMIBI_REST = Radiopharmaceutical("Tc-99m sestamibi", ("424299003", "Technetium Tc^99m^ sestamibi"), 370,
                                      frame_ms=1200000, counts=800000)
_RADIOPHARMACEUTICALS: dict[Scene, Radiopharmaceutical] = {
    Scene.BONE: _MDP,
    Scene.HEART: _SESTAMIBI_REST,
    Scene.POLAR: _SESTAMIBI_REST,
    # one-day protocol: the stress injection is about three times the rest activity
    Scene.STRESS: Radiopharmaceutical("Tc-99m sestamibi", ("424299003", "Technetium Tc^99m^ sestamibi"), 1110,
                                      frame_ms=1200000, counts=2000000),
    Scene.VQ_PERF: Radiopharmaceutical("Tc-99m MAA", ("85693008", "Technetium Tc^99m^ aggregated albumin"), 150,
                                       frame_ms=120000),
    # activity in the nebuliser; a few percent reaches the lungs
    Scene.VQ_VENT: Radiopharmaceutical("Tc-99m DTPA aerosol", ("430276001", "Technetium Tc^99m^ pentetate"), 1110,
                                       "Inhalation", frame_ms=180000, counts=300000),
    Scene.HIDA: Radiopharmaceutical("Tc-99m mebrofenin", ("4832001", "Technetium Tc^99m^ mebrofenin"), 185,
                                    frame_ms=60000, counts=300000),
    Scene.HIDA_CCK: Radiopharmaceutical("Tc-99m mebrofenin", ("4832001", "Technetium Tc^99m^ mebrofenin"), 185,
                                        frame_ms=60000, counts=250000),
    Scene.THYROID: Radiopharmaceutical("Tc-99m pertechnetate", ("19495007", "Sodium pertechnetate Tc^99m^"), 185,
                                       frame_ms=300000, counts=200000),
    Scene.PINHOLE: Radiopharmaceutical("Tc-99m pertechnetate", ("19495007", "Sodium pertechnetate Tc^99m^"), 185,
                                       frame_ms=300000, counts=100000),
    # a radiolabelled egg meal
    Scene.GASTRIC: Radiopharmaceutical("Tc-99m sulfur colloid", ("5931004", "Technetium Tc^99m^ sulfur colloid"), 37,
                                       "Oral", frame_ms=60000, counts=150000),
    Scene.RENAL: Radiopharmaceutical("Tc-99m MAG3", ("446536001", "Technetium^99m Mercaptoacetyl triglycine MAG3"), 185,
                                     frame_ms=60000, counts=200000),
    Scene.RENAL_LATE: Radiopharmaceutical("Tc-99m MAG3", ("446536001", "Technetium^99m Mercaptoacetyl triglycine MAG3"),
                                          185, frame_ms=60000, counts=150000),
}


def radiopharmaceutical_for(scene: Scene) -> Radiopharmaceutical:
    """The tracer an NM series' scene shows (:data:`_RADIOPHARMACEUTICALS`), PS3.3 C.8.4.10."""
    return _for_scene(_RADIOPHARMACEUTICALS, scene, Modality.NM)


def _nm(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """NM Image IOD modules: NM/PET Patient Orientation, NM Image Pixel, Multi-frame, NM Multi-frame,
    NM Image, NM Isotope, NM Detector (C.8.4.6-11). The bone scan is a whole-body sweep (Whole Body
    Technique, Scan Length/Velocity); every other study is a static planar (or displayed SPECT) image
    of its own tracer."""
    px = ctx.pixels
    whole_body = ctx.spec.scene == Scene.BONE  # the bone scan's sweep (pixels: phantoms.nm_bone_scan)
    tracer = radiopharmaceutical_for(ctx.spec.scene)
    ds.ImageType = [*ds.ImageType[:2], "WHOLE BODY" if whole_body else "STATIC", "EMISSION"]
    ds.PatientOrientation = ""
    ds.PixelSpacing = [decimal_string(px.pixel_spacing), decimal_string(px.pixel_spacing)]
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]  # EnergyWindowVector, DetectorVector
    ds.EnergyWindowVector = [1]
    ds.NumberOfEnergyWindows = 1
    window = Dataset()
    bound = Dataset()
    bound.EnergyWindowLowerLimit, bound.EnergyWindowUpperLimit = "126", "154"  # 140 keV ± 10 %
    window.EnergyWindowRangeSequence = Sequence([bound])
    window.EnergyWindowName = "Tc99m"
    ds.EnergyWindowInformationSequence = Sequence([window])
    pharm = Dataset()
    pharm.RadionuclideCodeSequence = Sequence([code_item("44588005", "SCT", "^99m^Technetium")])
    pharm.RadiopharmaceuticalRoute = tracer.route
    pharm.RadionuclideTotalDose = decimal_string(tracer.dose_mbq)
    pharm.Radiopharmaceutical = tracer.name
    pharm.RadiopharmaceuticalCodeSequence = Sequence([code_item(tracer.code[0], "SCT", tracer.code[1])])
    ds.RadiopharmaceuticalInformationSequence = Sequence([pharm])
    ds.DetectorVector = [1]
    ds.NumberOfDetectors = 1
    ds.PatientOrientationCodeSequence = Sequence([code_item("102538003", "SCT", "recumbent")])
    ds.PatientGantryRelationshipCodeSequence = Sequence([code_item("102540008", "SCT", "headfirst")])
    ds.ActualFrameDuration = tracer.frame_ms
    ds.CountsAccumulated = tracer.counts
    if whole_body:
        # Whole Body Image (C.8.4.9 NM Image): a 2 m sweep at 2.5 mm/s is the 800 s frame above
        ds.ScanVelocity = "2.5"
        ds.ScanLength = "2000"
        ds.WholeBodyTechnique = ["1PS", "2PS"]
    _voi(ds, px)


def _pt(ds: Dataset, order: Order, ctx: SeriesContext) -> None:
    """PET Image IOD (PS3.3 A.21) modules: PET Series (C.8.9.1), PET Isotope (C.8.9.2), NM/PET Patient
    Orientation (C.8.4.6), Frame of Reference and Image Plane (shared with the CT attenuation series),
    PET Image (C.8.9.4) and Acquisition Context (C.7.6.14); Patient Weight and Size (Patient Study C.7.2.2).

    Pixel values are Bq/ml after Rescale Slope (Units BQML), decay corrected to the series start (Decay
    Correction START, the Series Time equals the acquisition start), so SUVbw = value × weight /
    (total dose × 2^-(Series Time - Radiopharmaceutical Start)/half-life) gives the phantom's SUV.
    """
    exam, px = order.exam, ctx.pixels
    tracer = phantoms_pet.tracer_for(exam)
    dose = phantoms_pet.dose_for(exam, order.patient, ctx.acquired_at)
    frame_s = 120.0  # 2 min per bed position
    _plane(ds, ctx, spacing_between=False)
    del ds.PatientPosition  # the NM/PET Patient Orientation codes below replace it (C.8.4.6)
    ds.ImageType = [*ds.ImageType[:2]]
    # PET Series (C.8.9.1)
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.NumberOfSlices = ctx.instance_count
    ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "CT-derived mu-map"
    ds.ScatterCorrectionMethod = "Model-based single scatter"
    ds.DecayCorrection = "START"
    ds.ReconstructionDiameter = decimal_string(px.cols * px.pixel_spacing)
    ds.ConvolutionKernel = f"Gaussian {phantoms_pet.FWHM_MM:g} mm"
    ds.ReconstructionMethod = "OSEM 3D 3i21s TOF"
    ds.CollimatorType = "NONE"
    window = Dataset()
    window.EnergyWindowLowerLimit, window.EnergyWindowUpperLimit = "435", "650"
    ds.EnergyWindowRangeSequence = Sequence([window])
    # PET Isotope (C.8.9.2): activity in Bq, half-life in s
    pharm = Dataset()
    pharm.RadionuclideCodeSequence = Sequence([code_item(*tracer.nuclide)])
    pharm.RadiopharmaceuticalRoute = "Intravenous"
    pharm.AdministrationRouteCodeSequence = Sequence([code_item("47625008", "SCT", "Intravenous route")])
    pharm.RadiopharmaceuticalStartTime = dicom_time(dose.injected_at)
    pharm.RadiopharmaceuticalStartDateTime = dicom_datetime(dose.injected_at)
    pharm.RadiopharmaceuticalStopTime = dicom_time(dose.injection_ended_at)
    pharm.RadiopharmaceuticalStopDateTime = dicom_datetime(dose.injection_ended_at)
    pharm.RadionuclideTotalDose = decimal_string(dose.total_mbq * 1e6)
    pharm.RadionuclideHalfLife = decimal_string(tracer.half_life_s)
    pharm.RadionuclidePositronFraction = decimal_string(tracer.positron_fraction)
    pharm.Radiopharmaceutical = tracer.name
    pharm.RadiopharmaceuticalCodeSequence = Sequence([code_item(*tracer.code)])
    ds.RadiopharmaceuticalInformationSequence = Sequence([pharm])
    # NM/PET Patient Orientation (C.8.4.6): supine, head first
    orientation = code_item("102538003", "SCT", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = Sequence([code_item("40199007", "SCT", "supine")])
    ds.PatientOrientationCodeSequence = Sequence([orientation])
    ds.PatientGantryRelationshipCodeSequence = Sequence([code_item("102540008", "SCT", "headfirst")])
    # PET Image (C.8.9.4)
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = decimal_string_sig(phantoms_pet.rescale_slope(tracer, dose, ctx.acquired_at))
    lam = math.log(2) / tracer.half_life_s
    decay = phantoms_pet.frame_decay_factor(tracer, frame_s)
    # the frame's reference point: the time at which the activity equals the frame's average (C.8.9.4.1.5)
    ds.FrameReferenceTime = decimal_string(math.log(decay) / lam * 1000.0)
    ds.ActualFrameDuration = int(frame_s * 1000)
    ds.DecayFactor = decimal_string(decay)
    ds.DoseCalibrationFactor = "1"
    ds.ScatterFractionFactor = "0.35"
    ds.DeadTimeFactor = "1.02"
    ds.SliceSensitivityFactor = "1"
    # Acquisition Context (C.7.6.14): Type 2, nothing to record
    ds.AcquisitionContextSequence = Sequence([])
    scale = float(ds.RescaleSlope)
    ds.WindowCenter = decimal_string(px.window[0][0] * scale)
    ds.WindowWidth = decimal_string(px.window[1][0] * scale)


def decimal_string_sig(value: float) -> str:
    """A Decimal String of a small positive factor with 8 significant digits (e.g. a PET Rescale Slope)."""
    return f"{value:.8g}"
