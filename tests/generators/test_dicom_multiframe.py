"""Multi-frame images: XA (PS3.3 A.14) and RF (A.16) runs, US Multi-frame (A.7) cine loops beside the stills.

Each run is checked for its IOD's modules, for timing that adds up (Cine C.7.6.5: Number of Frames × Frame
Time is the run's duration; a Frame Time Vector starts at 0 and has one value per frame; the Frame Increment
Pointer names what is present), for the moving phantom (the bolus fills the vessels, the bladder fills), and
against dicom3tools' dciodvfy with no error and no warning.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.tag import Tag
from pydicom.uid import (
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
    XRayRadiofluoroscopicImageStorage,
)

from generators.dicom import write_study
from generators.dicom.iods_xray_mf import run_timing
from generators.terms import Modality, Scene
from generators.types import SeriesSpec
from tests.conftest import require_binary
from tests.examples import EXAMS, FIXED_NOW, order_for

FRAME_TIME, FRAME_TIME_VECTOR = Tag(0x0018, 0x1063), Tag(0x0018, 0x1065)


def _write(tmp_path: Path, exam, **kwargs):
    order = dataclasses.replace(order_for(exam.modality), exam=exam)
    return write_study(order, tmp_path, seed=5, now=FIXED_NOW, **kwargs)


def _read(result) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(result.study_dir.glob("*.dcm"))]


def _validator_lines(path: Path) -> list[str]:
    proc = subprocess.run([require_binary("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("Error", "Warning"))]


@pytest.fixture(scope="module")
def xa(tmp_path_factory: pytest.TempPathFactory):
    return _read(_write(tmp_path_factory.mktemp("xa"), EXAMS[Modality.XA]))


@pytest.fixture(scope="module")
def rf(tmp_path_factory: pytest.TempPathFactory):
    return _read(_write(tmp_path_factory.mktemp("rf"), EXAMS[Modality.RF]))


def test_xa_runs_carry_the_cine_multiframe_xray_and_positioner_modules(xa) -> None:
    assert len(xa) == 2
    for ds in xa:
        assert ds.SOPClassUID == XRayAngiographicImageStorage and ds.Modality == "XA"
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]  # X-Ray Image C.8.7.1.1.1
        assert ds.PixelIntensityRelationship == "LIN" and ds.BitsAllocated == ds.BitsStored == 8
        # X-Ray Acquisition C.8.7.2
        assert ds.KVP == "80" and ds.RadiationSetting == "SC" and ds.XRayTubeCurrent > 0 and ds.ExposureTime > 0
        assert ds.IntensifierSize and ds.ImagerPixelSpacing
        # XA Positioner C.8.7.5: a multi-frame image needs Positioner Motion (2C)
        assert ds.PositionerMotion == "STATIC"
        # Contrast/Bolus C.7.6.4: iodinated, intra-arterial
        assert ds.ContrastBolusAgent == "Iohexol 300 mgI/mL" and ds.ContrastBolusRoute == "Intra-arterial"
        assert ds.CineRate == ds.RecommendedDisplayFrameRate == 3
    assert [(ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle) for ds in xa] == [(0, 0), (90, 0)]


def test_rf_runs_carry_the_xrf_modules_with_oral_barium_and_a_general_radiation_setting(rf) -> None:
    assert len(rf) == 2  # two runs of one series
    for ds in rf:
        assert ds.SOPClassUID == XRayRadiofluoroscopicImageStorage and ds.Modality == "RF"
        assert ds.RadiationSetting == "GR" and ds.RadiationMode == "PULSED"
        assert ds.ContrastBolusAgent.startswith("Barium") and ds.ContrastBolusRoute == "Oral"
        assert ds.DistanceSourceToDetector and "PositionerPrimaryAngle" not in ds
        assert ds.BodyPartExamined == "ESOPHAGUS"
    assert rf[0].SOPInstanceUID != rf[1].SOPInstanceUID and rf[0].InstanceNumber == 1 and rf[1].InstanceNumber == 2


def test_a_constant_rate_run_lasts_number_of_frames_times_frame_time(rf) -> None:
    for ds in rf:
        assert ds.NumberOfFrames == 5 and ds.FrameIncrementPointer == FRAME_TIME
        assert "FrameTimeVector" not in ds
        assert float(ds.FrameTime) == pytest.approx(1000 / ds.CineRate, abs=1e-3)
        assert float(ds.EffectiveDuration) * 1000 == pytest.approx(ds.NumberOfFrames * float(ds.FrameTime), abs=1)
        assert ds.pixel_array.shape == (5, ds.Rows, ds.Columns)
        assert (ds.StartTrim, ds.StopTrim) == (1, 5)


def test_a_cerebral_dsa_run_slows_for_the_venous_phase_with_a_frame_time_vector(xa) -> None:
    run = xa[0]  # 6 frames: 4 arterial at 3 f/s, 2 venous at 1 f/s
    assert run.FrameIncrementPointer == FRAME_TIME_VECTOR and "FrameTime" not in run
    vector = [float(v) for v in run.FrameTimeVector]
    assert len(vector) == run.NumberOfFrames == 6
    assert vector[0] == 0  # C.7.6.5.1.2: the first frame has no predecessor
    assert vector[1:] == pytest.approx([333.3333] * 3 + [1000.0] * 2)
    assert float(run.EffectiveDuration) * 1000 == pytest.approx(sum(vector) + vector[-1], abs=1)
    # too short for two phases: a constant rate
    assert run_timing(EXAMS[Modality.XA], EXAMS[Modality.XA].series[1]).frame_time_vector_ms is None


def test_the_bolus_fills_the_vessels_and_then_washes_out(xa) -> None:
    frames = xa[0].pixel_array.astype(np.int16)
    darkened = [int(((frames[0] - f) > 25).sum()) for f in frames]
    assert darkened[0] == 0 and darkened[1] < darkened[2] < darkened[3]
    assert darkened[3] > 500  # the arterial tree is opaque at its peak
    assert darkened[-1] < max(darkened)  # washout in the venous phase


def test_the_barium_bolus_travels_down_the_oesophagus(rf) -> None:
    frames = rf[0].pixel_array.astype(np.float32)
    background = frames.max(axis=0)
    rows_of_bolus = [np.nonzero(((background - f) > 40).sum(axis=1) > 3)[0] for f in frames]
    centres = [float(r.mean()) for r in rows_of_bolus if r.size]
    assert len(centres) >= 3 and centres == sorted(centres)  # moving towards the feet (down the screen)


@pytest.mark.interop
@pytest.mark.parametrize("modality", [Modality.XA, Modality.RF])
def test_xa_and_rf_runs_pass_dciodvfy_without_errors_or_warnings(tmp_path: Path, modality: Modality) -> None:
    result = _write(tmp_path, EXAMS[modality], max_instances_per_series=1)
    for path in sorted(result.study_dir.glob("*.dcm")):
        assert _validator_lines(path) == []


def _us_with_cine(frames: int = 4):
    stills = EXAMS[Modality.US]
    cine = SeriesSpec(2, "ABDOMEN CINE", "US_ABD_CINE", 1, frames=frames, scene=Scene.ABDOMEN)
    return dataclasses.replace(stills, series=(*stills.series, cine))


@pytest.mark.interop
def test_a_us_cine_loop_is_a_us_multiframe_image_beside_the_still_frames(tmp_path: Path) -> None:
    result = _write(tmp_path, _us_with_cine(), max_instances_per_series=2)
    datasets = {p.name: pydicom.dcmread(p) for p in sorted(result.study_dir.glob("*.dcm"))}
    stills = [ds for name, ds in datasets.items() if name.startswith("001_")]
    (cine,) = [ds for name, ds in datasets.items() if name.startswith("002_")]
    assert {ds.SOPClassUID for ds in stills} == {UltrasoundImageStorage}
    assert all("NumberOfFrames" not in ds for ds in stills)
    assert cine.SOPClassUID == UltrasoundMultiFrameImageStorage
    assert cine.NumberOfFrames == 4 and cine.FrameIncrementPointer == FRAME_TIME
    assert float(cine.FrameTime) == pytest.approx(33.3333) and cine.CineRate == 30
    assert float(cine.EffectiveDuration) == pytest.approx(4 * 33.3333 / 1000, abs=1e-3)
    # the same US Image and US Region Calibration modules as the stills, on the same study
    region, still_region = cine.SequenceOfUltrasoundRegions[0], stills[0].SequenceOfUltrasoundRegions[0]
    assert (region.PhysicalDeltaX, region.PhysicalUnitsXDirection) == (still_region.PhysicalDeltaX, 3)
    assert cine.TransducerData == stills[0].TransducerData and cine.StudyInstanceUID == stills[0].StudyInstanceUID
    assert cine.pixel_array.shape == (4, cine.Rows, cine.Columns)
    for name in ("001_0001.dcm", "002_0001.dcm"):
        assert _validator_lines(result.study_dir / name) == []


def test_a_run_compressed_with_rle_decodes_to_the_same_frames(tmp_path: Path) -> None:
    plain = _read(_write(tmp_path / "plain", EXAMS[Modality.RF], max_instances_per_series=1))[0]
    rle = _read(_write(tmp_path / "rle", EXAMS[Modality.RF], max_instances_per_series=1,
                       transfer_syntax=RLELossless))[0]
    assert rle.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(rle.pixel_array, plain.pixel_array) and rle.pixel_array.shape[0] == 5


def test_a_run_is_previewed_as_a_strip_of_frames_from_first_to_last(tmp_path: Path) -> None:
    result = _write(tmp_path, EXAMS[Modality.XA], max_instances_per_series=1)
    preview = result.series[0].preview_path
    assert preview is not None and preview.exists()
    with Image.open(preview) as image:
        width, height = image.size
        strip = np.asarray(image.convert("L"), dtype=np.int16)
    assert width == 4 * height  # four 512 x 512 frames side by side, scaled to 768 wide
    quarters = np.split(strip, 4, axis=1)
    assert np.abs(quarters[0] - quarters[2]).mean() > 1  # the contrast moved between the shown frames
