"""PET emission phantom of a PET/CT study: the body model's tissues as tracer uptake, in SUV.

The emission image is drawn from the same body model (:mod:`generators.dicom.phantoms`) and on the same
axial planes as the study's CT attenuation-correction series, so the two share one Frame of Reference
(PS3.3 C.7.4.1) and fuse: every tissue label gets a body-weight SUV typical of its tracer (FDG: brain and
myocardium avid, liver ~2.5, urine in the collecting systems and bladder; Ga-68 PSMA-11: salivary and
lacrimal glands, kidneys, liver, spleen, bowel and bladder, a prostate focus and pelvic nodes), a few
seed-chosen lesions are added, the map is blurred to the scanner's ~6 mm resolution and Poisson-like noise
is drawn. Stored values are SUV × :data:`SUV_SCALE`; the header's Rescale Slope turns them into Bq/ml
(:func:`rescale_slope`), so a reader computing SUVbw from Units BQML, Decay Correction START, the dose,
its start time, the half-life and the Patient's Weight gets the phantom's SUV back.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from dataclasses import dataclass

import numpy as np

from generators.dicom import phantoms
from generators.terms import Laterality, Plane, Sex
from generators.types import ExamInfo, Patient

T = phantoms.Tissue
SUV_SCALE = 500.0  # stored value per SUV unit: SUV up to 131 fits the unsigned 16 bits
PET_MATRIX = 192
FWHM_MM = 6.0  # reconstructed resolution of a clinical PET/CT
CT_MATRIX = 512
# Axial fields of the two PET/CT ranges, in the body model (LPS mm): 78815 from the vertex (brain included, as
# most departments acquire it) to the mid-thighs, 78816 from the vertex to the feet.
_LIMITED = phantoms.Region("body", (0, 0, 140), 600, 1120)
_WHOLE_BODY = phantoms.Region("body", (0, 0, -175), 600, 1750)


@dataclass(frozen=True, slots=True)
class Tracer:
    """A PET radiopharmaceutical (PET Isotope module C.8.9.2 Radiopharmaceutical Information Sequence)."""

    key: str
    name: str  # Radiopharmaceutical (0018,0031)
    code: tuple[str, str, str]  # Radiopharmaceutical Code Sequence, PS3.16 CID 4021
    nuclide: tuple[str, str, str]  # Radionuclide Code Sequence, PS3.16 CID 4020
    half_life_s: float  # Radionuclide Half Life (0018,1075)
    positron_fraction: float  # Radionuclide Positron Fraction (0018,1076)
    mbq_per_kg: float
    dose_range_mbq: tuple[float, float]
    uptake_min: int  # injection to the start of the PET acquisition


# SNMMI/EANM procedure guidelines: FDG 3.7 MBq/kg (185-555 MBq), 60 min uptake; Ga-68 PSMA-11 2 MBq/kg
# (111-259 MBq), 60 min uptake. Half-lives and positron fractions: NNDC (F-18 109.77 min, Ga-68 67.71 min).
FDG = Tracer("fdg", "Fludeoxyglucose F^18^", ("35321007", "SCT", "Fluorodeoxyglucose F^18^"),
             ("77004003", "SCT", "^18^Fluorine"), 6586.2, 0.9673, 3.7, (185.0, 555.0), 60)
PSMA = Tracer("psma", "Gallium Ga^68^ gozetotide (PSMA-11)", ("C118961", "NCIt", "PSMA-11 Ga^68^"),
              ("35337001", "SCT", "^68^Gallium"), 4062.6, 0.8891, 2.0, (111.0, 259.0), 60)

# Exam id → tracer; a PET exam not listed is an FDG study (the curated catalog names the PSMA exams).
TRACER_BY_EXAM: dict[str, Tracer] = {"PT-PROSTATE-PSMA": PSMA}


def tracer_for(exam: ExamInfo) -> Tracer:
    return TRACER_BY_EXAM.get(exam.id, FDG)


def field_for(exam: ExamInfo) -> phantoms.Region:
    """The axial range of the study: 78816 (whole body) or 78815 (skull base to mid-thigh) and the rest."""
    return _WHOLE_BODY if exam.primary_code.code == "78816" else _LIMITED


def is_ct_series(spec_kvp: int | None) -> bool:
    """A series of a PET/CT exam with a tube voltage is its CT (attenuation correction) series."""
    return spec_kvp is not None


@dataclass(frozen=True, slots=True)
class Dose:
    """What the technologist records at injection, and the body size SUVbw needs (C.7.2.2 Patient Study)."""

    weight_kg: float
    height_m: float
    total_mbq: float
    injected_at: dt.datetime

    @property
    def injection_ended_at(self) -> dt.datetime:
        """The end of the intravenous bolus and its saline flush."""
        return self.injected_at + dt.timedelta(seconds=INJECTION_S)


INJECTION_S = 30


def patient_habitus(patient: Patient) -> tuple[float, float]:
    """A plausible adult weight (kg) and height (m) for the patient, fixed by the MRN (CDC adult means)."""
    rng = random.Random(f"habitus/{patient.mrn}")
    male = patient.sex == Sex.MALE
    height = rng.gauss(1.76 if male else 1.62, 0.07)
    bmi = min(max(rng.gauss(28.5, 4.5), 18.5), 42.0)
    return round(bmi * height * height, 1), round(height, 2)


def dose_for(exam: ExamInfo, patient: Patient, pet_start: dt.datetime) -> Dose:
    """The administered activity (weight-based, rounded to 5 MBq as a dose calibrator reads) and its time."""
    tracer = tracer_for(exam)
    weight, height = patient_habitus(patient)
    lo, hi = tracer.dose_range_mbq
    mbq = round(min(max(tracer.mbq_per_kg * weight, lo), hi) / 5.0) * 5.0
    return Dose(weight, height, mbq, pet_start - dt.timedelta(minutes=tracer.uptake_min))


def decay_to(tracer: Tracer, injected_at: dt.datetime, at: dt.datetime) -> float:
    """Fraction of the injected activity left at ``at``."""
    return math.exp(-math.log(2) * (at - injected_at).total_seconds() / tracer.half_life_s)


def rescale_slope(tracer: Tracer, dose: Dose, series_start: dt.datetime) -> float:
    """Bq/ml per stored value: SUVbw = C × weight / (dose × decay to the series start) (Decay Correction START)."""
    activity_bq = dose.total_mbq * 1e6 * decay_to(tracer, dose.injected_at, series_start)
    return activity_bq / (dose.weight_kg * 1000.0) / SUV_SCALE


def frame_decay_factor(tracer: Tracer, frame_s: float) -> float:
    """Decay Factor (0054,1321) of a frame starting at the series start: the decay during the frame itself."""
    lam = math.log(2) / tracer.half_life_s
    return lam * frame_s / (1.0 - math.exp(-lam * frame_s))


# SUV per tissue label (order = phantoms.Tissue).
#              AIR  FAT  MUS  FLU  BONE MARR LUNG LIV  SPL  KID  BLOOD GREY WHITE CART LIG  DISC BOWEL GLAND URINE MES
_FDG_SUV = [0.0, 0.3, 0.7, 0.2, 0.4, 1.4, 0.4, 2.4, 2.0, 3.0, 1.7, 9.0, 3.2, 0.3, 0.4, 0.4, 1.6, 1.6, 35.0, 0.5]
_PSMA_SUV = [0.0, 0.1, 0.5, 0.1, 0.3, 0.6, 0.2, 5.0, 6.0, 35.0, 1.0, 0.3, 0.2, 0.2, 0.3, 0.3, 5.0, 1.5, 60.0, 0.2]

# Extra uptake the label model has no tissue for: (centre x, y, z, semi-axes, SUV added, only in tissue), LPS mm.
_Blob = tuple[tuple[float, float, float], tuple[float, float, float], float, "phantoms.Tissue | None"]
_FDG_PHYSIOLOGIC: tuple[_Blob, ...] = (
    ((22, -25, 215), (66, 56, 66), 5.0, T.MUSCLE),  # myocardium: the muscle shell around the blood pool
    ((0, -10, 505), (18, 14, 18), 2.5, None),  # palatine tonsils / Waldeyer's ring
)
_PSMA_PHYSIOLOGIC: tuple[_Blob, ...] = (
    ((-52, 5, 560), (16, 22, 24), 18.0, None), ((52, 5, 560), (16, 22, 24), 18.0, None),  # parotid glands
    ((-38, -35, 515), (12, 12, 12), 16.0, None), ((38, -35, 515), (12, 12, 12), 16.0, None),  # submandibular glands
    ((-32, -55, 640), (7, 5, 5), 10.0, None), ((32, -55, 640), (7, 5, 5), 10.0, None),  # lacrimal glands
    ((0, -10, -252), (23, 18, 19), 3.0, None),  # prostate (the male pelvis organ the body model lacks)
)
# Candidate lesions; each study shows a seed-chosen few.
_FDG_LESIONS: tuple[_Blob, ...] = (
    ((-85, 0, 290), (11, 11, 11), 9.0, None),  # right upper lobe nodule
    ((10, -15, 285), (9, 8, 9), 6.5, None),  # mediastinal (4R/7) node
    ((-90, -10, 80), (13, 13, 13), 6.0, None),  # hepatic metastasis
    ((-40, 40, 380), (8, 8, 8), 5.5, None),  # right supraclavicular node
    ((30, 40, 40), (10, 10, 12), 7.0, None),  # left para-aortic node
    ((95, 45, -110), (12, 12, 12), 6.0, None),  # left iliac bone metastasis
)
_PSMA_LESIONS: tuple[_Blob, ...] = (
    ((-10, -8, -255), (8, 7, 8), 22.0, None),  # right peripheral-zone prostate cancer
    ((-58, 10, -190), (6, 6, 7), 14.0, None), ((58, 10, -190), (6, 6, 7), 12.0, None),  # external iliac nodes
    ((-28, 45, 10), (6, 6, 8), 10.0, None),  # retroperitoneal node
    ((105, 45, -120), (10, 10, 10), 16.0, None),  # iliac bone metastasis
)


def lesions(tracer: Tracer, seed: int) -> tuple[_Blob, ...]:
    """The lesions of one study: two to four of the tracer's candidates, chosen by the seed."""
    pool = _PSMA_LESIONS if tracer is PSMA else _FDG_LESIONS
    rng = random.Random(f"pet-lesions/{seed}")
    return tuple(rng.sample(pool, rng.randint(2, min(4, len(pool)))))


@functools.lru_cache(maxsize=4)
def _grid(matrix: int) -> tuple[np.ndarray, np.ndarray]:
    u, v, _ = phantoms.plane_coords(_LIMITED, Plane.AXIAL, matrix, matrix)
    return np.asarray(u, np.float32)[None, :], np.asarray(v, np.float32)[:, None]


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur (the scanner's point spread), edges clamped."""
    r = max(1, int(3 * sigma_px))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_px) ** 2).astype(np.float32)
    k /= k.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        for j, w in enumerate(k):
            acc += w * (p[j:j + out.shape[0], :] if axis == 0 else p[:, j:j + out.shape[1]])
        out = acc
    return out


class EmissionStack:
    """Axial PET slices at ``positions`` (mm): SUV × :data:`SUV_SCALE` as uint16, deterministic in the seed."""

    def __init__(self, tracer: Tracer, positions: np.ndarray, matrix: int, pixel_mm: float, seed: int) -> None:
        self.tracer, self.positions, self.matrix, self.seed = tracer, positions, matrix, seed
        self.pixel_mm = pixel_mm
        k = min(len(positions), 64)
        self.level_pos = np.linspace(positions.min(), positions.max(), k) if k > 1 else positions[:1].copy()
        self.lut = np.array(_PSMA_SUV if tracer is PSMA else _FDG_SUV, np.float32)
        self.blobs = (*(_PSMA_PHYSIOLOGIC if tracer is PSMA else _FDG_PHYSIOLOGIC), *lesions(tracer, seed))

    def _labels(self, z: float) -> np.ndarray:
        key = tuple(round(float(p), 3) for p in self.level_pos)
        levels = phantoms.label_levels("WHOLEBODY", Laterality.NONE, Plane.AXIAL, self.matrix, self.matrix, key)
        return levels[int(np.abs(self.level_pos - z).argmin())]

    def suv(self, i: int) -> np.ndarray:
        """The noiseless, resolution-blurred SUV map of slice ``i``."""
        z = float(self.positions[i])
        x, y = _grid(self.matrix)
        labels = self._labels(z)
        img = self.lut[labels]
        for (cx, cy, cz), (ax, ay, az), value, tissue in self.blobs:
            dz = ((z - cz) / az) ** 2
            if dz >= 1.0:
                continue
            inside = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + dz < 1.0
            if tissue is not None:
                inside &= labels == tissue
            img = img + value * inside
        return _blur(img.astype(np.float32), FWHM_MM / 2.3548 / self.pixel_mm)

    def __call__(self, i: int) -> np.ndarray:
        mean = self.suv(i)
        n = mean.size
        bank = _noise_bank(self.seed, n)
        offset = int(np.random.default_rng([self.seed, i]).integers(0, bank.size - n))
        # ~10 % noise at SUV 1, relative noise falling as 1/sqrt(counts) in hot regions (count statistics)
        noisy = mean + bank[offset:offset + n].reshape(mean.shape) * np.sqrt(np.maximum(mean, 0.05))
        np.multiply(noisy, SUV_SCALE, out=noisy)
        return np.clip(noisy, 0, 65535, out=noisy).astype(np.uint16)


@functools.lru_cache(maxsize=2)
def _noise_bank(seed: int, size: int) -> np.ndarray:
    """Gaussian samples (σ 0.1) a slice takes a random window of: one draw per series, not per slice."""
    bank = np.random.default_rng(seed).standard_normal(size + 65536, dtype=np.float32) * np.float32(0.1)
    bank.flags.writeable = False
    return bank
