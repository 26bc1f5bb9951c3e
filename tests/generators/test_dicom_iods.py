"""DICOM studies for every catalog modality: IOD conformance (dciodvfy), identity, geometry, determinism."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from generators.dicom import iter_study, phantoms_nm, phantoms_us, write_study
from generators.dicom.iods import collimator_for, image_type, radiopharmaceutical_for, transducer_for
from generators.terms import MODALITY_SCENES, Contrast, ContrastPhase, Laterality, Modality, Plane, Scene, Weighting
from generators.types import SeriesSpec
from tests.conftest import require_binary
from tests.examples import EXAMS, FIXED_NOW, order_for

CAP = 3  # instances per series: enough for geometry, small enough to validate every file quickly


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[Modality, tuple[object, object]]:
    out = {}
    for modality in EXAMS:
        order = order_for(modality)
        result = write_study(order, tmp_path_factory.mktemp(modality.value), seed=11, now=FIXED_NOW,
                             max_instances_per_series=CAP)
        out[modality] = (order, result)
    return out


def _files(result) -> list[Path]:
    return sorted(result.study_dir.glob("*.dcm"))


def _dciodvfy_errors(paths: list[Path]) -> list[str]:
    binary = require_binary("dciodvfy")
    errors = []
    for path in paths:
        proc = subprocess.run([binary, str(path)], capture_output=True, text=True, check=False)
        errors += [f"{path.name}: {line}" for line in (proc.stdout + proc.stderr).splitlines()
                   if line.startswith("Error")]
    return errors


@pytest.mark.interop
@pytest.mark.parametrize("modality", list(EXAMS))
def test_every_instance_of_each_modality_passes_dciodvfy_without_errors(studies, modality: Modality) -> None:
    _, result = studies[modality]
    files = _files(result)
    assert len(files) == result.instance_count > 0
    assert _dciodvfy_errors(files) == []


@pytest.mark.interop
@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless])
def test_compressed_ct_passes_dciodvfy_and_decodes_to_the_uncompressed_pixels(tmp_path: Path, syntax: str) -> None:
    order = order_for(Modality.CT)
    plain = write_study(order, tmp_path / "plain", seed=3, now=FIXED_NOW, max_instances_per_series=2)
    packed = write_study(order, tmp_path / "packed", seed=3, now=FIXED_NOW, max_instances_per_series=2,
                         transfer_syntax=syntax)
    files = _files(packed)
    assert _dciodvfy_errors(files) == []
    for a, b in zip(_files(plain), files, strict=True):
        ds_a, ds_b = pydicom.dcmread(a), pydicom.dcmread(b)
        assert ds_b.file_meta.TransferSyntaxUID == syntax
        assert ds_a.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds_b.SOPInstanceUID == ds_a.SOPInstanceUID
        assert np.array_equal(ds_a.pixel_array, ds_b.pixel_array)
    assert packed.bytes < plain.bytes


@pytest.mark.parametrize("modality", list(EXAMS))
def test_every_instance_carries_the_order_identity(studies, modality: Modality) -> None:
    order, result = studies[modality]
    exam = order.exam
    for path in _files(result):
        ds = pydicom.dcmread(path)
        assert ds.PatientID == order.patient.mrn
        assert str(ds.PatientName) == order.patient.name.dicom
        assert ds.PatientBirthDate == order.patient.birth_date.strftime("%Y%m%d")
        assert ds.PatientSex == order.patient.sex.value
        assert ds.PatientAge == "058Y"
        assert ds.SpecificCharacterSet == "ISO_IR 192"  # the example patient is O'BRIEN-NÚÑEZ^ZOË
        assert ds.AccessionNumber == order.accession_number
        assert ds.StudyInstanceUID == order.study_instance_uid
        assert ds.StudyID == order.requested_procedure_id
        assert ds.StudyDescription == exam.description
        # a PET/CT study sends its attenuation-correction CT (series 1) as CT images beside the PT series
        assert ds.Modality == ("CT" if exam.modality == Modality.PT and ds.SeriesNumber == 1 else exam.modality.value)
        assert ds.BodyPartExamined == exam.body_part
        assert ds.InstitutionName == order.facility
        assert str(ds.ReferringPhysicianName) == order.referring.name.dicom
        request = ds.RequestAttributesSequence[0]
        assert request.AccessionNumber == order.accession_number
        assert request.RequestedProcedureID == order.requested_procedure_id
        assert request.ScheduledProcedureStepID == order.sps_id
        assert request.RequestedProcedureCodeSequence[0].CodeValue == exam.primary_code.code
        spec = next(s for s in exam.series if s.number == ds.SeriesNumber)
        assert ds.SeriesDescription == spec.description
        assert ds.ProtocolName == spec.protocol_name
        assert path.name == f"{ds.SeriesNumber:03d}_{ds.InstanceNumber:04d}.dcm"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID


def test_laterality_follows_the_exam_and_the_view(studies) -> None:
    mr = pydicom.dcmread(_files(studies[Modality.MR][1])[0])
    cr = pydicom.dcmread(_files(studies[Modality.CR][1])[0])
    ct = pydicom.dcmread(_files(studies[Modality.CT][1])[0])
    assert mr.Laterality == "R"  # MRI KNEE RIGHT
    assert cr.Laterality == "L"  # XR WRIST LEFT
    assert "Laterality" not in ct  # abdomen is not a paired part
    sides = {pydicom.dcmread(p).ImageLaterality for p in _files(studies[Modality.MG][1])}
    assert sides == {"R", "L"}
    dx = pydicom.dcmread(_files(studies[Modality.DX][1])[0])
    assert dx.ImageLaterality == "U" and dx.ViewPosition == "PA"
    assert dx.PresentationIntentType == "FOR PRESENTATION" and dx.WindowWidth > 0


def test_mr_series_carry_sequence_parameters_of_their_weighting(studies) -> None:
    by_series = {}
    for path in _files(studies[Modality.MR][1]):
        ds = pydicom.dcmread(path)
        by_series.setdefault(ds.SeriesNumber, ds)
    pd_fs, t1, t2_fs = by_series[1], by_series[2], by_series[3]
    assert "FS" in pd_fs.ScanOptions and "FS" in t2_fs.ScanOptions and "FS" not in (t1.ScanOptions or [])
    assert t1.RepetitionTime < 1000 and t1.EchoTime < 20
    assert t2_fs.RepetitionTime > 2000 and t2_fs.EchoTime > 60
    assert 20 <= pd_fs.EchoTime <= 45
    assert t1.MagneticFieldStrength in (1.5, 3.0)
    assert abs(float(t1.ImagingFrequency) - 42.577478 * float(t1.MagneticFieldStrength)) < 0.01
    assert t2_fs.EchoTrainLength > 1 and t1.ScanningSequence == "SE"


def test_ct_series_have_rescale_contrast_and_role_specific_image_type(studies) -> None:
    order, result = studies[Modality.CT]
    series = {}
    for path in _files(result):
        ds = pydicom.dcmread(path)
        series.setdefault(ds.SeriesNumber, ds)
    assert list(series[1].ImageType)[:3] == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert list(series[2].ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert list(series[3].ImageType)[:2] == ["DERIVED", "SECONDARY"]
    ax = series[2]
    assert ax.RescaleIntercept == -1024 and ax.RescaleSlope == 1 and ax.RescaleType == "HU"
    assert ax.KVP == 120 and ax.ConvolutionKernel == "B30f" and ax.SliceThickness == 5.0
    assert ax.ContrastBolusAgent == order.exam.contrast_agent and ax.ContrastBolusRoute == "IV"
    assert float(ax.ContrastBolusVolume) == order.exam.contrast_volume_ml


@pytest.mark.parametrize("modality", [Modality.CT, Modality.MR])
def test_image_positions_step_by_the_spacing_along_the_normal(studies, modality: Modality) -> None:
    series: dict[int, list] = {}
    for path in _files(studies[modality][1]):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series.setdefault(ds.SeriesNumber, []).append(ds)
    checked = 0
    for instances in series.values():
        instances.sort(key=lambda d: d.InstanceNumber)
        assert len({d.FrameOfReferenceUID for d in instances}) == 1
        if len(instances) < 2:
            continue
        iop = np.array(instances[0].ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        spacing = float(instances[0].get("SpacingBetweenSlices", instances[0].SliceThickness))
        for a, b in zip(instances, instances[1:]):
            step = np.array(b.ImagePositionPatient, float) - np.array(a.ImagePositionPatient, float)
            assert np.allclose(step, spacing * normal, atol=1e-3)
        for d in instances:
            assert float(d.SliceLocation) == pytest.approx(float(np.dot(d.ImagePositionPatient, normal)), abs=1e-3)
        checked += 1
    assert checked >= 2
    frames = {d.FrameOfReferenceUID for instances in series.values() for d in instances}
    assert len(frames) == len(series)


def test_the_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    order = order_for(Modality.MR)

    def run(name: str, seed: int) -> list[bytes]:
        records = list(iter_study(order, tmp_path / name, seed=seed, now=FIXED_NOW, max_instances_per_series=2))
        return [r.path.read_bytes() for r in records]

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert first == again
    assert first != other
    ds_first = [pydicom.dcmread(p) for p in sorted((tmp_path / "a").rglob("*.dcm"))]
    ds_other = [pydicom.dcmread(p) for p in sorted((tmp_path / "c").rglob("*.dcm"))]
    assert {d.StudyInstanceUID for d in ds_first} == {d.StudyInstanceUID for d in ds_other} == {
        order.study_instance_uid}
    assert not {d.SOPInstanceUID for d in ds_first} & {d.SOPInstanceUID for d in ds_other}
    assert not {d.SeriesInstanceUID for d in ds_first} & {d.SeriesInstanceUID for d in ds_other}
    assert not np.array_equal(ds_first[0].pixel_array, ds_other[0].pixel_array)


def test_write_study_summarises_series_with_previews(studies) -> None:
    order, result = studies[Modality.CT]
    assert result.study_instance_uid == order.study_instance_uid
    assert [s.number for s in result.series] == [1, 2, 3]
    assert [s.instance_count for s in result.series] == [1, CAP, CAP]
    assert result.bytes == sum(p.stat().st_size for p in _files(result))
    for s in result.series:
        assert s.preview_path is not None and s.preview_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert s.modality == "CT" and s.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"


def test_only_post_contrast_series_carry_the_contrast_bolus_module_and_enhancement(tmp_path: Path) -> None:
    pre = SeriesSpec(1, "AX T1", "ABD_T1_PRE", 1, plane=Plane.AXIAL, sequence_name="GRE", weighting=Weighting.T1,
                     contrast_phase=ContrastPhase.NONCONTRAST)
    post = dataclasses.replace(pre, number=2, description="AX T1 POST", protocol_name="ABD_T1_POST",
                               contrast_phase=ContrastPhase.PORTAL_VENOUS)
    exam = dataclasses.replace(EXAMS[Modality.MR], body_part="ABDOMEN", laterality=Laterality.NONE,
                               contrast=Contrast.WITHOUT_THEN_WITH, contrast_agent="Gadobutrol 1 mmol/mL",
                               contrast_volume_ml=7.5, series=(pre, post))
    order = dataclasses.replace(order_for(Modality.MR), exam=exam)
    result = write_study(order, tmp_path, seed=1, now=FIXED_NOW)
    before, after = (pydicom.dcmread(p) for p in _files(result))
    assert "ContrastBolusAgent" not in before
    assert after.ContrastBolusAgent == "Gadobutrol 1 mmol/mL" and after.ContrastBolusRoute == "IV"
    assert float(after.ContrastBolusVolume) == 7.5
    ipp = [float(v) for v in after.ImagePositionPatient]
    ps = float(after.PixelSpacing[0])
    r, c = round((42 - ipp[1]) / ps), round((18 - ipp[0]) / ps)  # the aorta
    assert after.pixel_array[r - 2:r + 3, c - 2:c + 3].mean() > 3 * before.pixel_array[r - 2:r + 3, c - 2:c + 3].mean()


@pytest.mark.interop
def test_a_paired_part_on_dx_is_sided_by_image_laterality_only(tmp_path: Path) -> None:
    views = (SeriesSpec(1, "AP", "KNEE_AP", 1, view_position="AP", image_laterality=Laterality.RIGHT),
             SeriesSpec(2, "LATERAL", "KNEE_LAT", 1, view_position="RL"))
    exam = dataclasses.replace(EXAMS[Modality.DX], body_part="KNEE", laterality=Laterality.RIGHT, series=views)
    result = write_study(dataclasses.replace(order_for(Modality.DX), exam=exam), tmp_path, seed=1, now=FIXED_NOW)
    files = _files(result)
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.ImageLaterality == "R" and "Laterality" not in ds
    assert _dciodvfy_errors(files) == []


def _single_series_study(tmp_path: Path, modality: Modality, body_part: str, description: str, *,
                         scene: Scene = Scene.NONE, name: str | None = None,
                         laterality: Laterality = Laterality.NONE) -> list[Path]:
    exam = dataclasses.replace(EXAMS[modality], body_part=body_part, laterality=laterality,
                               name=name or EXAMS[modality].name,
                               series=(SeriesSpec(1, description, "X", 1, scene=scene),))
    order = dataclasses.replace(order_for(modality), exam=exam)
    return _files(write_study(order, tmp_path, seed=2, now=FIXED_NOW, max_instances_per_series=1))


@pytest.mark.interop
def test_ultrasound_names_the_transducer_its_scene_is_scanned_with(tmp_path: Path) -> None:
    cases = {  # (body part, curated scene) → (Transducer Type, Transducer Data, Image Type value 3)
        ("THYROID", Scene.THYROID): ("LINEAR", "L12-5", "SMALL PARTS"),
        ("CAROTID", Scene.CAROTID): ("LINEAR", "L9-3", "VASCULAR"),
        ("SCROTUM", Scene.TESTIS): ("LINEAR", "L12-5", "SCROTAL"),
        ("PELVISFEMALE", Scene.PELVIS_TV): ("ENDOCAV_CLA", "EC9-4", "ENDOCAVITARY"),
        ("PELVISFEMALE", Scene.PELVIS_TA): ("CURVED LINEAR", "C5-1", "PELVIC"),
        ("HEAD", Scene.HEAD_COR): ("SECTOR_PHASED", "P10-4", "NEONATAL HEAD"),
        ("GALLBLADDER", Scene.GALLBLADDER): ("CURVED LINEAR", "C5-1", "ABDOMINAL"),
    }
    files = []
    for (part, scene), (kind, model, application) in cases.items():
        side = Laterality.RIGHT if part in {"CAROTID"} else Laterality.NONE
        # one description for all: only the scene tells them apart (the two pelvic series of one body part)
        paths = _single_series_study(tmp_path / scene, Modality.US, part, "SWEEP", scene=scene, laterality=side)
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        assert (ds.TransducerType, ds.TransducerData, ds.ImageType[2]) == (kind, model, application), scene
        files += paths
    assert _dciodvfy_errors(files) == []


@pytest.mark.interop
def test_nm_studies_name_their_own_radiopharmaceutical_and_only_the_bone_scan_is_whole_body(tmp_path: Path) -> None:
    cases = {  # (body part, curated scene) → (tracer, CID 25 SNOMED CT code, route)
        ("CHEST", Scene.VQ_PERF): ("Tc-99m MAA", "85693008", "Intravenous"),
        ("CHEST", Scene.VQ_VENT): ("Tc-99m DTPA aerosol", "430276001", "Inhalation"),
        ("KIDNEY", Scene.RENAL): ("Tc-99m MAG3", "446536001", "Intravenous"),
        ("HEART", Scene.STRESS): ("Tc-99m sestamibi", "424299003", "Intravenous"),
        ("GALLBLADDER", Scene.HIDA): ("Tc-99m mebrofenin", "4832001", "Intravenous"),
        ("THYROID", Scene.THYROID): ("Tc-99m pertechnetate", "19495007", "Intravenous"),
        ("ABDOMEN", Scene.GASTRIC): ("Tc-99m sulfur colloid", "5931004", "Oral"),
        ("WHOLEBODY", Scene.BONE): ("Tc-99m MDP", "96390006", "Intravenous"),
    }
    files, doses = [], {}
    for (part, scene), (tracer, code, route) in cases.items():
        # one description for all: the two chest series differ only in their scene
        paths = _single_series_study(tmp_path / scene, Modality.NM, part, "STATIC", scene=scene)
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        pharm = ds.RadiopharmaceuticalInformationSequence[0]
        assert pharm.Radiopharmaceutical == tracer
        assert pharm.RadiopharmaceuticalCodeSequence[0].CodeValue == code
        assert pharm.RadiopharmaceuticalCodeSequence[0].CodingSchemeDesignator == "SCT"  # SRT is deprecated
        assert pharm.RadiopharmaceuticalRoute == route
        doses[tracer] = float(pharm.RadionuclideTotalDose)
        whole_body = scene == Scene.BONE
        assert ds.ImageType[2] == ("WHOLE BODY" if whole_body else "STATIC")
        assert ("WholeBodyTechnique" in ds) == ("ScanLength" in ds) == whole_body
        files += paths
    assert doses["Tc-99m sulfur colloid"] < doses["Tc-99m MAA"] < doses["Tc-99m MDP"]  # oral meal ≪ bone scan
    assert _dciodvfy_errors(files) == []


@pytest.mark.interop
def test_a_catalog_body_part_without_a_defined_term_is_sent_as_its_defined_term_without_laterality(
        tmp_path: Path) -> None:
    files = []
    for modality, part, term in ((Modality.CT, "SINUS", "HEAD"), (Modality.US, "PELVISFEMALE", "PELVIS")):
        paths = _single_series_study(tmp_path / part, modality, part, "AX" if modality == Modality.CT else "SWEEP",
                                     scene=Scene.PELVIS_TA if modality == Modality.US else Scene.NONE)
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        assert ds.BodyPartExamined == term and "Laterality" not in ds and "ImageLaterality" not in ds
        files += paths
    assert _dciodvfy_errors(files) == []


@pytest.mark.interop
def test_a_bilateral_study_carries_image_laterality_b_and_its_per_side_series_r_or_l(tmp_path: Path) -> None:
    exam = dataclasses.replace(EXAMS[Modality.US], body_part="KIDNEY", laterality=Laterality.BILATERAL, series=(
        SeriesSpec(1, "RIGHT KIDNEY", "R", 1, image_laterality=Laterality.RIGHT, scene=Scene.KIDNEY),
        SeriesSpec(2, "LEFT KIDNEY", "L", 1, image_laterality=Laterality.LEFT, scene=Scene.KIDNEY_LEFT),
        SeriesSpec(3, "BOTH KIDNEYS", "B", 1, scene=Scene.KIDNEY)))
    order = dataclasses.replace(order_for(Modality.US), exam=exam)
    files = _files(write_study(order, tmp_path, seed=2, now=FIXED_NOW, max_instances_per_series=1))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    assert [(ds.get("Laterality"), ds.get("ImageLaterality")) for ds in headers] == [
        ("R", None), ("L", None), (None, "B")]
    assert _dciodvfy_errors(files) == []


def test_a_sideless_series_of_a_both_sided_part_shows_both_and_a_carotid_series_its_side(
        tmp_path: Path) -> None:
    # the testes and the carotids are always covered on both sides: a series naming no side shows both
    # (Image Laterality B), not an unknown side (an empty Laterality, which dciodvfy warns about)
    both = pydicom.dcmread(_single_series_study(tmp_path / "scrotum", Modality.US, "SCROTUM", "SWEEP",
                                                scene=Scene.TESTIS)[0], stop_before_pixels=True)
    assert both.ImageLaterality == "B" and "Laterality" not in both
    exam = dataclasses.replace(EXAMS[Modality.US], body_part="CAROTID", series=(
        SeriesSpec(1, "RIGHT CAROTID", "R", 1, image_laterality=Laterality.RIGHT, scene=Scene.CAROTID),))
    order = dataclasses.replace(order_for(Modality.US), exam=exam)
    carotid = _files(write_study(order, tmp_path / "carotid", seed=2, now=FIXED_NOW, max_instances_per_series=1))
    assert pydicom.dcmread(carotid[0], stop_before_pixels=True).Laterality == "R"


def test_image_type_value_3_is_a_defined_term_of_the_modality(studies) -> None:
    ct = {pydicom.dcmread(p).SeriesNumber: pydicom.dcmread(p) for p in _files(studies[Modality.CT][1])}
    assert list(ct[3].ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]  # a reformat: CT knows AXIAL/LOCALIZER only
    assert image_type(Modality.MR, SeriesSpec(1, "LOC", "LOC", 1, weighting=Weighting.LOCALIZER))[2] == "OTHER"
    assert image_type(Modality.MR, SeriesSpec(1, "ADC", "ADC", 1, weighting=Weighting.ADC))[2:] == [
        "DIFFUSION MAP", "ADC"]


def test_mammography_codes_its_view_and_sends_no_view_position(studies) -> None:
    for path in _files(studies[Modality.MG][1]):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert "ViewPosition" not in ds
        assert ds.ViewCodeSequence[0].CodingSchemeDesignator == "SCT"


@pytest.mark.interop
def test_a_thyroid_pinhole_series_names_its_pinhole_collimator(tmp_path: Path) -> None:
    # the same description: the scene alone chooses the collimator
    pinhole = _single_series_study(tmp_path / "pinhole", Modality.NM, "THYROID", "ANTERIOR", scene=Scene.PINHOLE)
    planar = _single_series_study(tmp_path / "planar", Modality.NM, "THYROID", "ANTERIOR", scene=Scene.THYROID)
    for paths, (grid, kind) in ((pinhole, ("PINHOLE", "PINH")), (planar, ("LEHR", "PARA"))):
        detector = pydicom.dcmread(paths[0], stop_before_pixels=True).DetectorInformationSequence[0]
        assert (detector.CollimatorGridName, detector.CollimatorType) == (grid, kind)
    assert _dciodvfy_errors(pinhole + planar) == []


def test_every_scene_of_a_modality_has_its_pixels_and_its_tracer_collimator_or_transducer() -> None:
    for scene in MODALITY_SCENES[Modality.NM]:
        assert radiopharmaceutical_for(scene).name.startswith("Tc-99m") and collimator_for(scene).kind
        if scene != Scene.BONE:  # the bone scan is the whole-body sweep of phantoms.nm_bone_scan
            assert phantoms_nm.uptake(scene, 64, 0).max() > 1
    for scene in MODALITY_SCENES[Modality.US]:
        assert transducer_for(scene).model
        assert phantoms_us.ultrasound(scene, 48, 64, seed=1, frame=0).max() > 0
    assert {collimator_for(s).grid_name for s in (Scene.THYROID, Scene.PINHOLE)} == {"LEHR", "PINHOLE"}
    with pytest.raises(ValueError, match="'kidney' is not an NM scene; use one of bone, heart"):
        radiopharmaceutical_for(Scene.KIDNEY)
    with pytest.raises(ValueError, match="no scene is not a US scene; use one of abdomen"):
        transducer_for(Scene.NONE)


@pytest.mark.parametrize(("modality", "scene", "message"), [
    (Modality.NM, Scene.NONE, "an NM series needs a scene (what it shows): one of bone, heart"),
    (Modality.US, Scene.BONE, "'bone' is not a US scene; use one of abdomen, gallbladder"),
    (Modality.CT, Scene.KIDNEY, "a scene ('kidney') applies to NM and US series only; leave it blank for CT"),
])
def test_a_series_whose_scene_does_not_fit_its_modality_is_refused_before_anything_is_written(
        tmp_path: Path, modality: Modality, scene: Scene, message: str) -> None:
    exam = dataclasses.replace(EXAMS[modality], series=(SeriesSpec(1, "PINHOLE", "X", 1, scene=scene),))
    with pytest.raises(ValueError, match="^" + re.escape(f"exam {exam.id}, series 1 (PINHOLE): {message}")):
        write_study(dataclasses.replace(order_for(modality), exam=exam), tmp_path, seed=2, now=FIXED_NOW)
    assert list(tmp_path.iterdir()) == []


def test_images_reference_the_mpps_instance_only_when_an_mpps_was_created(tmp_path: Path) -> None:
    order = order_for(Modality.DX)
    started = FIXED_NOW.replace(minute=0)
    with_mpps = write_study(order, tmp_path / "a", seed=2, now=FIXED_NOW, pps_started_at=started, previews=False)
    without = write_study(order, tmp_path / "b", seed=2, now=FIXED_NOW, previews=False)
    ds = pydicom.dcmread(_files(with_mpps)[0], stop_before_pixels=True)
    assert ds.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID == order.mpps_uid
    assert ds.PerformedProcedureStepID == order.pps_id
    assert (ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime) == ("20261125", "090000")
    bare = pydicom.dcmread(_files(without)[0], stop_before_pixels=True)
    assert "ReferencedPerformedProcedureStepSequence" not in bare and bare.PerformedProcedureStepID == order.pps_id
