"""Multi-frame modules of the X-Ray Angiographic (XA, PS3.3 A.14), X-Ray Radiofluoroscopic (RF, A.16) and
US Multi-frame (A.7) Image IODs, added to the shared series data set by :func:`generators.dicom.iods.series_dataset`.

A series of these exams is a set of *runs*: each instance holds ``SeriesSpec.frames`` frames acquired at the
rate of :func:`run_timing` (Cine C.7.6.5, Multi-frame C.7.6.6). A constant-rate run carries Frame Time
(0018,1063); a variable-rate run (the cerebral DSA: 3 frames/s through the arterial phase, then 1 frame/s for
the venous phase) carries Frame Time Vector (0018,1065), whose first value is 0 (C.7.6.5.1.2). The Frame
Increment Pointer (0028,0009) names whichever of the two is present.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UltrasoundMultiFrameImageStorage, XRayAngiographicImageStorage, XRayRadiofluoroscopicImageStorage

from generators.terms import Modality
from generators.types import ExamInfo, Order, SeriesSpec
from generators.vr import clip

FRAME_TIME = 0x00181063
FRAME_TIME_VECTOR = 0x00181065

SOP_CLASSES: dict[Modality, str] = {
    Modality.XA: XRayAngiographicImageStorage,
    Modality.RF: XRayRadiofluoroscopicImageStorage,
}
US_MULTIFRAME = UltrasoundMultiFrameImageStorage


def is_multiframe(modality: Modality, spec: SeriesSpec) -> bool:
    """XA and RF images are always written multi-frame (a run); a US series only when it is a cine loop."""
    return modality in SOP_CLASSES or (modality == Modality.US and spec.frames > 1)


def sop_class_for(modality: Modality, spec: SeriesSpec) -> str | None:
    """The SOP Class of a multi-frame series, or None when the modality's single-frame class applies."""
    if modality in SOP_CLASSES:
        return SOP_CLASSES[modality]
    if modality == Modality.US and spec.frames > 1:
        return US_MULTIFRAME
    return None


@dataclass(frozen=True, slots=True)
class RunTiming:
    """When each frame of a run was acquired: a constant ``frame_time_ms`` or a per-frame vector."""

    frame_time_ms: float | None
    frame_time_vector_ms: tuple[float, ...] | None
    rate_fps: int  # Cine Rate (0018,0040) / Recommended Display Frame Rate (0008,2144)

    @property
    def pointer(self) -> int:
        """The Frame Increment Pointer (0028,0009) value for this timing (C.7.6.6.1.1)."""
        return FRAME_TIME if self.frame_time_vector_ms is None else FRAME_TIME_VECTOR

    def duration_ms(self, frames: int) -> float:
        """From the first frame to the end of the last: frames × Frame Time, or the vector's sum plus one interval."""
        if self.frame_time_vector_ms is None:
            assert self.frame_time_ms is not None
            return frames * self.frame_time_ms
        return sum(self.frame_time_vector_ms) + self.frame_time_vector_ms[-1]


# Acquisition frame rates (frames/s) by (modality, body part): DSA runs are slow (2-4 f/s, a bolus transit
# of a few seconds), cine esophagography records the swallow at video rate, VCUG and upper GI use low-rate
# pulsed fluoroscopy (3-4 pulses/s keeps the dose down, ALARA), US clips at the scanner's 30 f/s.
_RATES: dict[tuple[Modality, str], int] = {
    (Modality.XA, "HEAD"): 3, (Modality.XA, "BRAIN"): 3, (Modality.XA, "CAROTID"): 3,
    (Modality.XA, "LEG"): 2, (Modality.XA, "EXTREMITY"): 2, (Modality.XA, "KIDNEY"): 4, (Modality.XA, "HEART"): 15,
    (Modality.RF, "ESOPHAGUS"): 15, (Modality.RF, "BLADDER"): 3, (Modality.RF, "ABDOMEN"): 4,
}


def run_timing(exam: ExamInfo, spec: SeriesSpec) -> RunTiming:
    """The frame timing of each instance of ``spec`` (Cine module C.7.6.5)."""
    part = exam.body_part.upper()
    if exam.modality == Modality.US:
        return RunTiming(round(1000 / 30, 4), None, 30)
    rate = _RATES.get((exam.modality, part), 4 if exam.modality == Modality.XA else 8)
    if exam.modality == Modality.XA and part in {"HEAD", "BRAIN"} and spec.frames >= 6:
        # cerebral DSA: arterial phase at 3 f/s for two thirds of the run, then the venous phase at 1 f/s
        fast = (2 * spec.frames) // 3
        vector = (0.0, *([round(1000 / rate, 4)] * (fast - 1)), *([1000.0] * (spec.frames - fast)))
        return RunTiming(None, vector, rate)
    return RunTiming(round(1000 / rate, 4), None, rate)


# Positioner angles (XA Positioner C.8.7.5.1.2) of the view a run is taken in: primary +90 = LAO (detector at
# the patient's left), -90 = RAO; secondary +90 = cranial. Lateral runs are at 90°, obliques at 30°.
_ANGLES: dict[str, tuple[int, int]] = {"AP": (0, 0), "PA": (0, 0), "LL": (90, 0), "RL": (-90, 0),
                                       "LLO": (30, 0), "RLO": (-30, 0)}
# X-Ray Acquisition (C.8.7.2) technique per modality: kVp, mA, pulse width (ms) and the image intensifier /
# flat-panel field (mm diagonal).
_XA_TECHNIQUE = (80, 400, 80, 300)
_RF_TECHNIQUE = (85, 20, 8, 400)


def _contrast_route(exam: ExamInfo) -> str:
    if exam.modality == Modality.XA:
        return "Intra-arterial"
    return "Intravesical" if exam.body_part.upper() == "BLADDER" else "Oral"


def xray_multiframe(ds: Dataset, order: Order, spec: SeriesSpec, *, contrast: bool) -> None:
    """XA (A.14) / RF (A.16) modules: Cine, Multi-frame, X-Ray Image (C.8.7.1), X-Ray Acquisition (C.8.7.2),
    XA Positioner (C.8.7.5) or XRF Positioner (C.8.7.6), Contrast/Bolus (C.7.6.4)."""
    exam = order.exam
    xa = exam.modality == Modality.XA
    timing = run_timing(exam, spec)
    ds.ImageType = [*ds.ImageType[:2], "SINGLE PLANE"]  # C.8.7.1.1.1 value 3
    ds.PixelIntensityRelationship = "LIN"
    ds.PatientOrientation = ""
    _cine(ds, spec, timing)
    kvp, ma, pulse_ms, field_mm = _XA_TECHNIQUE if xa else _RF_TECHNIQUE
    ds.KVP = str(spec.kvp or kvp)
    ds.RadiationSetting = "SC" if xa else "GR"  # SC: subtraction/cine (high dose); GR: general fluoroscopy
    ds.RadiationMode = "PULSED"
    ds.XRayTubeCurrent = ma
    ds.ExposureTime = round(pulse_ms * spec.frames)
    ds.AveragePulseWidth = str(pulse_ms)
    ds.Grid = "IN"
    ds.IntensifierSize = str(field_mm)
    ds.FieldOfViewShape = "RECTANGLE"
    ds.FocalSpots = "0.6" if xa else "1"
    ds.DistanceSourceToDetector = "1100" if xa else "1150"
    ds.DistanceSourceToPatient = "750" if xa else "950"
    if xa:
        primary, secondary = _ANGLES.get(spec.view_position.upper(), (0, 0))
        ds.PositionerMotion = "STATIC"
        ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = str(primary), str(secondary)
    else:
        ds.ColumnAngulation = "0"
    if contrast:
        ds.ContrastBolusAgent = clip(exam.contrast_agent or "Contrast")
        ds.ContrastBolusRoute = _contrast_route(exam)
        if exam.contrast_volume_ml is not None:
            ds.ContrastBolusVolume = f"{exam.contrast_volume_ml:g}"
    ds.LossyImageCompression = "00"


def us_multiframe(ds: Dataset, order: Order, spec: SeriesSpec) -> None:
    """US Multi-frame Image IOD (A.7): Cine (C.7.6.5, mandatory) and Multi-frame (C.7.6.6) modules; the US
    Image and US Region Calibration modules are the stills' (``iods._us``)."""
    _cine(ds, spec, run_timing(order.exam, spec))


def _cine(ds: Dataset, spec: SeriesSpec, timing: RunTiming) -> None:
    ds.NumberOfFrames = spec.frames
    ds.FrameIncrementPointer = timing.pointer
    if timing.frame_time_vector_ms is None:
        ds.FrameTime = f"{timing.frame_time_ms:g}"
    else:
        ds.FrameTimeVector = [f"{v:g}" for v in timing.frame_time_vector_ms]
    ds.CineRate = timing.rate_fps
    ds.RecommendedDisplayFrameRate = timing.rate_fps
    ds.PreferredPlaybackSequencing = 0  # looping
    ds.StartTrim, ds.StopTrim = 1, spec.frames
    ds.EffectiveDuration = f"{timing.duration_ms(spec.frames) / 1000:.3f}"

