"""PET/CT studies (PS3.3 A.21 PET Image IOD): the PET modules, the CT attenuation series in the same Frame of
Reference, and SUV inputs a reader can compute from (Units BQML, Decay Correction START, dose, start time,
half-life, Patient's Weight)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from generators.dicom import write_study
from generators.dicom.phantoms_pet import FDG, PSMA, SUV_SCALE, EmissionStack
from generators.identity import mint_order
from generators.terms import Modality, Sex
from generators.types import Order
from tests.conftest import require_binary
from tests.examples import EXAMS, FIXED_NOW, INDICATION, PATIENT

FDG_EXAM = EXAMS[Modality.PT]
PSMA_EXAM = dataclasses.replace(FDG_EXAM, id="PT-PROSTATE-PSMA", body_part="PROSTATE", required_sex=Sex.MALE,
                                name="PET/CT Ga-68 PSMA-11 skull base to mid-thigh")
MAN = dataclasses.replace(PATIENT, sex=Sex.MALE, mrn="MRN0099887")
PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"


def _study(exam, tmp: Path, instances: int = 2) -> tuple[Order, list[pydicom.Dataset], list[Path]]:
    order = mint_order(exam=exam, patient=MAN, indication=INDICATION, rng=random.Random(exam.id), now=FIXED_NOW)
    result = write_study(order, tmp, seed=5, now=FIXED_NOW + dt.timedelta(minutes=5), previews=False,
                         max_instances_per_series=instances, pps_started_at=FIXED_NOW)
    files = sorted(result.study_dir.glob("*.dcm"))
    return order, [pydicom.dcmread(p) for p in files], files


@pytest.fixture(scope="module")
def fdg(tmp_path_factory) -> tuple[Order, list[pydicom.Dataset], list[Path]]:
    return _study(FDG_EXAM, tmp_path_factory.mktemp("fdg"))


def _pet(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    return [ds for ds in datasets if ds.SOPClassUID == PET_SOP]


def _dt(date: str, time: str) -> dt.datetime:
    return dt.datetime.strptime(date + time[:6], "%Y%m%d%H%M%S")


def test_the_pet_series_carries_the_pet_series_isotope_orientation_and_image_modules(fdg) -> None:
    _, datasets, _ = fdg
    pet = _pet(datasets)
    assert len(pet) == 2
    for index, ds in enumerate(pet, 1):
        assert ds.Modality == "PT"
        # PET Series C.8.9.1
        assert ds.Units == "BQML" and ds.CountsSource == "EMISSION" and list(ds.SeriesType) == ["WHOLE BODY", "IMAGE"]
        assert ds.DecayCorrection == "START"
        assert {"ATTN", "DECY"} <= set(ds.CorrectedImage)
        assert ds.NumberOfSlices == 2
        assert ds.CollimatorType == "NONE"
        # PET Image C.8.9.4
        assert ds.ImageIndex == index
        assert ds.BitsAllocated == ds.BitsStored == 16 and ds.HighBit == 15
        assert float(ds.RescaleIntercept) == 0 and float(ds.RescaleSlope) > 0
        assert ds.ActualFrameDuration == 120000 and float(ds.FrameReferenceTime) > 0
        assert 1.0 < float(ds.DecayFactor) < 1.02
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]
        # NM/PET Patient Orientation C.8.4.6 (and no Patient Position beside it)
        orientation = ds.PatientOrientationCodeSequence[0]
        assert (orientation.CodeValue, orientation.PatientOrientationModifierCodeSequence[0].CodeValue) == (
            "102538003", "40199007")
        assert ds.PatientGantryRelationshipCodeSequence[0].CodeValue == "102540008"
        assert "PatientPosition" not in ds
        assert "AcquisitionContextSequence" in ds and len(ds.AcquisitionContextSequence) == 0
        # PET Isotope C.8.9.2: F-18 FDG (PS3.16 CID 4020 / 4021)
        pharm = ds.RadiopharmaceuticalInformationSequence[0]
        assert (pharm.RadionuclideCodeSequence[0].CodeValue, pharm.RadionuclideCodeSequence[0].CodingSchemeDesignator
                ) == ("77004003", "SCT")
        assert pharm.RadiopharmaceuticalCodeSequence[0].CodeValue == "35321007"
        assert float(pharm.RadionuclideHalfLife) == pytest.approx(6586.2)
        assert float(pharm.RadionuclidePositronFraction) == pytest.approx(0.9673)


def test_the_ct_attenuation_series_and_the_pet_share_one_frame_of_reference(fdg) -> None:
    dcentvfy = require_binary("dcentvfy")
    _, datasets, files = fdg
    ct = [ds for ds in datasets if ds.SOPClassUID == CT_SOP]
    pet = _pet(datasets)
    assert ct and pet and len(ct) + len(pet) == len(datasets)
    assert {ds.Modality for ds in ct} == {"CT"} and {ds.SeriesNumber for ds in ct} == {1}
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 2
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    # both axial, centred on the same range: the PET fuses onto the CT
    for ds in datasets:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    ct_z = sorted(float(ds.ImagePositionPatient[2]) for ds in ct)
    pet_z = sorted(float(ds.ImagePositionPatient[2]) for ds in pet)
    assert abs(sum(ct_z) / len(ct_z) - sum(pet_z) / len(pet_z)) < 1.0
    # the CT is a low-dose attenuation scan of the same patient: same Patient's Weight and Size (study level)
    assert {(ds.PatientWeight, ds.PatientSize) for ds in datasets} == {(pet[0].PatientWeight, pet[0].PatientSize)}
    run = subprocess.run([dcentvfy, *map(str, files)], capture_output=True, text=True, timeout=60)
    assert [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("Error", "Warning"))] == []


def test_suv_inputs_are_consistent_and_give_a_physiologic_liver_suv(fdg) -> None:
    _, datasets, _ = fdg
    ds = _pet(datasets)[0]
    pharm = ds.RadiopharmaceuticalInformationSequence[0]
    injected = dt.datetime.strptime(pharm.RadiopharmaceuticalStartDateTime, "%Y%m%d%H%M%S")
    assert pharm.RadiopharmaceuticalStartTime == injected.strftime("%H%M%S")
    series_start = _dt(ds.SeriesDate, ds.SeriesTime)
    assert series_start <= _dt(ds.AcquisitionDate, ds.AcquisitionTime)
    uptake_min = (series_start - injected).total_seconds() / 60
    assert 55 <= uptake_min <= 75
    weight_kg, dose_bq = float(ds.PatientWeight), float(pharm.RadionuclideTotalDose)
    assert 40 <= weight_kg <= 160 and 1.4 <= float(ds.PatientSize) <= 2.1
    assert 185e6 <= dose_bq <= 555e6
    assert dose_bq / 1e6 / weight_kg == pytest.approx(3.7, abs=0.4) or dose_bq in (185e6, 555e6)
    decay = 2 ** (-(series_start - injected).total_seconds() / float(pharm.RadionuclideHalfLife))
    assert 0.6 < decay < 0.7
    # SUVbw as a workstation computes it, from the header alone
    suv = ds.pixel_array * float(ds.RescaleSlope) * weight_kg * 1000 / (dose_bq * decay)
    assert suv.max() == pytest.approx(ds.pixel_array.max() / SUV_SCALE, rel=0.01)
    # the liver (right upper abdomen, x ≈ -68 mm, y ≈ -5 mm) reads SUVmean ~2.4
    x0, y0 = (float(v) for v in ds.ImagePositionPatient[:2])
    spacing = float(ds.PixelSpacing[0])
    col, row = round((-68 - x0) / spacing), round((-5 - y0) / spacing)
    liver = suv[row - 4:row + 5, col - 4:col + 5]
    assert 1.8 <= float(liver.mean()) <= 3.2
    assert float(np.percentile(suv, 99.9)) < 20  # no bladder or brain at this level


def test_a_psma_study_names_ga68_psma11_and_shows_the_kidneys_and_salivary_glands(tmp_path) -> None:
    _, datasets, _ = _study(PSMA_EXAM, tmp_path)
    pet = _pet(datasets)
    pharm = pet[0].RadiopharmaceuticalInformationSequence[0]
    assert (pharm.RadionuclideCodeSequence[0].CodeValue, pharm.RadiopharmaceuticalCodeSequence[0].CodeValue) == (
        "35337001", "C118961")
    assert float(pharm.RadionuclideHalfLife) == pytest.approx(4062.6)
    assert 111e6 <= float(pharm.RadionuclideTotalDose) <= 259e6
    # the emission stack at a few levels (mm, LPS z) of the same phantom
    levels = {"brain": 615.0, "parotids": 560.0, "kidneys": 30.0, "bladder": -200.0}
    for tracer, expect in ((PSMA, {"brain": (0, 2), "parotids": (10, 40), "kidneys": (20, 60), "bladder": (30, 90)}),
                           (FDG, {"brain": (6, 15), "kidneys": (2, 40), "bladder": (20, 60)})):  # FDG: cerebellum at 560
        stack = EmissionStack(tracer, np.array(list(levels.values())), 192, 600 / 192, 5)
        for i, organ in enumerate(levels):
            if organ not in expect:
                continue
            lo, hi = expect[organ]
            assert lo <= float(stack.suv(i).max()) <= hi, (tracer.key, organ)


def test_pet_ct_files_pass_dciodvfy_without_errors_or_warnings(fdg) -> None:
    dciodvfy = require_binary("dciodvfy")
    _, datasets, files = fdg
    for path in (files[0], files[-1]):
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        problems = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("Error", "Warning"))]
        assert problems == [], path.name


def test_decay_to_the_series_start_matches_the_half_life() -> None:
    from generators.dicom.phantoms_pet import decay_to

    t0 = dt.datetime(2026, 1, 1, 8, 0)
    assert decay_to(FDG, t0, t0 + dt.timedelta(seconds=FDG.half_life_s)) == pytest.approx(0.5)
    assert decay_to(FDG, t0, t0 + dt.timedelta(minutes=60)) == pytest.approx(math.exp(-math.log(2) * 3600 / 6586.2))
