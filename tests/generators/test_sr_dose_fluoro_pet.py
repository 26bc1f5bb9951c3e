"""The dose reports of fluoroscopy-guided (XA, RF) and PET studies, beside the images they describe.

XA/RF: an X-Ray Radiation Dose SR (TID 10001) with the fluoroscopy and acquisition totals and one irradiation
event per recorded run and per fluoroscopy period; PET: a Radiopharmaceutical Radiation Dose SR (TID 10021).
Each is checked by dciodvfy, dsrdump and dcentvfy, row by row against the mandatory rows of its templates, its
codes against pydicom's copy of the PS3.16 concept dictionary, and its values against the image headers.
"""

from __future__ import annotations

import datetime as dt
import random
import subprocess
from decimal import Decimal
from pathlib import Path

import pydicom
import pytest
from pydicom.sr._concepts_dict import concepts

from generators.dicom.sr import dose, fluoro, radiopharmaceutical
from generators.dicom.sr import items as sr
from generators.dicom.sr.bundle import SERIES_NUMBERS, build_study_documents
from generators.dicom.sr.document import DocumentSeries, StudyContext, series_interval
from generators.terms import Modality
from generators.uids import new_uid
from tests.conftest import require_binary
from tests.examples import FIXED_NOW, order_for
from tests.generators.test_sr_objects import _DCENTVFY_ARTEFACT, LATER, Written, _fake_study, _write
from tests.generators.test_sr_objects import _REQUIRED as XRAY_REQUIRED
from tests.generators.test_sr_objects import _missing_mandatory as missing_mandatory

# a PET/CT sends two: the X-ray dose of its CT series, the radiopharmaceutical it was given
CASES = [(Modality.XA, "dose"), (Modality.RF, "dose"), (Modality.PT, "dose"), (Modality.PT, "radiopharmaceutical")]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[Modality, Written]:
    return {m: _write(order_for(m), tmp_path_factory.mktemp(m.value)) for m in (Modality.XA, Modality.RF, Modality.PT)}


def _problems(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("Error", "Warning"))]


@pytest.mark.interop
@pytest.mark.parametrize(("modality", "kind"), CASES)
def test_each_dose_report_passes_dciodvfy_with_no_error_and_no_warning(written, modality, kind) -> None:
    proc = subprocess.run([require_binary("dciodvfy"), str(written[modality].objects[kind])], capture_output=True,
                          text=True, check=False)
    assert _problems(proc) == []
    iod = {"dose": "XRayRadiationDoseSR", "radiopharmaceutical": "RadiopharmaceuticalRadiationDoseSR"}[kind]
    assert iod in proc.stdout + proc.stderr  # dciodvfy checked it as that IOD


@pytest.mark.interop
@pytest.mark.parametrize(("modality", "kind"), CASES)
def test_dsrdump_accepts_the_content_tree_under_the_iods_relationship_constraints(written, modality, kind) -> None:
    proc = subprocess.run([require_binary("dsrdump"), str(written[modality].objects[kind])], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    tolerated = ("does not support this Specific Character Set", "Check for template constraints not yet supported")
    assert [line for line in proc.stderr.splitlines() if line and not any(t in line for t in tolerated)] == []


@pytest.mark.interop
@pytest.mark.parametrize(("modality", "_kind"), CASES)
def test_dcentvfy_finds_one_patient_and_one_study_across_images_and_dose_report(written, modality, _kind) -> None:
    w = written[modality]
    files = sorted(w.folder.glob("*.dcm"))
    proc = subprocess.run([require_binary("dcentvfy"), *map(str, files)], capture_output=True, text=True,
                          check=False)
    assert [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip() and _DCENTVFY_ARTEFACT not in line] == []


# Mandatory rows (requirement M, and MC whose condition these reports meet) by the concept of their parent:
# TID 10011-10013 as for a CT (the PET/CT's CT), TID 10001 (root), 10002 + 10004 (accumulated, fluoroscopy and
# acquisition), 10003 + 10003b (each event; Fluoro Mode and Pulse Rate only for a fluoroscopy event), TID 10021
# (root) and 10022 (the administration).
_REQUIRED: dict[str, set[str]] = {
    **{key: rows for key, rows in XRAY_REQUIRED.items() if key not in ("113702", "113706")},
    "113701/10001": {"121058", "121005", "121012", "113705", "113702", "113706", "113854"},
    "113702": {"113764", "113726", "113728", "113730", "113727", "113729", "113855", "113722", "113725", "113780"},
    "113706": {"113764", "113769", "111526", "113721", "123014", "122130", "113738", "113780"},
    "113500/10021": {"121058", "113502"},
    "113502": {"349358000", "113503", "123003", "113507", "410675002"},
}
_FLUOROSCOPY_ONLY = {"113732", "113791"}


def _fluoroscopy_rows(key: str, item: pydicom.Dataset) -> set[str]:
    return _FLUOROSCOPY_ONLY if key == "113706" and _event_type(item) == fluoro.FLUOROSCOPY[0] else set()


def _missing_mandatory(ds: pydicom.Dataset) -> list[tuple[str, set[str]]]:
    return missing_mandatory(ds, _REQUIRED, _fluoroscopy_rows)


def _event_type(event: pydicom.Dataset) -> str:
    return next(i.ConceptCodeSequence[0].CodeValue for i in event.ContentSequence
                if sr.concept_of(i)[:2] == dose.IRRADIATION_EVENT_TYPE[:2])


@pytest.mark.parametrize(("modality", "kind"), CASES)
def test_each_report_has_every_mandatory_row_of_its_templates(written, modality, kind) -> None:
    ds = pydicom.dcmread(written[modality].objects[kind])
    assert _missing_mandatory(ds) == []
    # the check itself notices a missing row
    parent = next(i for i in ds.ContentSequence if i.ValueType == "CONTAINER")
    dropped = next(i for i in parent.ContentSequence if sr.concept_of(i)[0] in _REQUIRED[sr.concept_of(parent)[0]])
    parent.ContentSequence = [i for i in parent.ContentSequence if i is not dropped]
    assert _missing_mandatory(ds) == [(sr.concept_of(parent)[0], {sr.concept_of(dropped)[0]})]


def _known_meaning(code: pydicom.Dataset) -> str | None:
    for by_code in concepts.get(code.CodingSchemeDesignator, {}).values():
        if code.CodeValue in by_code:
            return by_code[code.CodeValue][0]
    return None


@pytest.mark.parametrize(("modality", "kind"), CASES)
def test_every_dcm_code_is_the_ps3_16_code_with_its_meaning(written, modality, kind) -> None:
    """pydicom ships the PS3.16 DCM concept list: every DCM code written is in it, with the same meaning."""
    ds = pydicom.dcmread(written[modality].objects[kind])
    written_codes = [seq[0] for item in sr.walk(ds) for name in ("ConceptNameCodeSequence", "ConceptCodeSequence")
                     if (seq := item.get(name))]
    dcm = [c for c in written_codes if c.CodingSchemeDesignator == "DCM"]
    assert len(dcm) > 5
    assert [(c.CodeValue, c.CodeMeaning) for c in dcm if _known_meaning(c) != c.CodeMeaning] == []


def _num(item: pydicom.Dataset, concept: sr.CodeTriple) -> Decimal:
    values = [Decimal(str(c.MeasuredValueSequence[0].NumericValue)) for c in item.ContentSequence
              if c.ValueType == "NUM" and sr.concept_of(c)[:2] == concept[:2]]
    assert len(values) == 1, concept
    return values[0]


def _events(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    return [i for i in ds.ContentSequence if sr.concept_of(i)[:2] == dose.IRRADIATION_EVENT[:2]]


def _images(w: Written) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(w.folder / f"{s.spec.number:03d}_{i + 1:04d}.dcm", stop_before_pixels=True)
            for s in w.study.series for i in range(len(s.instances))]


@pytest.mark.parametrize("modality", [Modality.XA, Modality.RF])
def test_each_run_is_an_acquisition_event_with_the_technique_of_its_image(written, modality) -> None:
    w = written[modality]
    events = _events(pydicom.dcmread(w.objects["dose"]))
    runs = [e for e in events if _event_type(e) == dose.STATIONARY[0]]
    images = _images(w)
    assert len(runs) == len(images) >= 2
    for event, image in zip(runs, images, strict=True):
        assert _num(event, dose.KVP) == Decimal(str(image.KVP))
        assert _num(event, dose.TUBE_CURRENT) == image.XRayTubeCurrent
        assert _num(event, dose.EXPOSURE_TIME) == image.ExposureTime
        assert _num(event, fluoro.PULSE_WIDTH) == Decimal(str(image.AveragePulseWidth))
        assert _num(event, fluoro.NUMBER_OF_PULSES) == image.NumberOfFrames
        assert _num(event, fluoro.IRRADIATION_DURATION) == Decimal(str(image.EffectiveDuration))
        if modality == Modality.XA:
            assert _num(event, fluoro.PRIMARY_ANGLE) == Decimal(str(image.PositionerPrimaryAngle))
            assert _num(event, fluoro.SECONDARY_ANGLE) == Decimal(str(image.PositionerSecondaryAngle))
        else:
            assert _num(event, fluoro.COLUMN_ANGULATION) == Decimal(str(image.ColumnAngulation))
        region = next(i for i in event.ContentSequence if sr.concept_of(i)[:2] == dose.TARGET_REGION[:2])
        assert region.ConceptCodeSequence[0].CodeValue == image.AnatomicRegionSequence[0].CodeValue
    # the first run of each series starts when its images say it was acquired
    starts = {e.ContentSequence[2].DateTime for e in runs}
    for image in images:
        assert image.AcquisitionDate + image.AcquisitionTime[:6] in starts


@pytest.mark.parametrize("modality", [Modality.XA, Modality.RF])
def test_each_view_has_one_pulsed_fluoroscopy_event(written, modality) -> None:
    w = written[modality]
    screens = [e for e in _events(pydicom.dcmread(w.objects["dose"])) if _event_type(e) == fluoro.FLUOROSCOPY[0]]
    assert len(screens) == len(w.study.series)
    for event in screens:
        rate, pulses = _num(event, fluoro.PULSE_RATE), _num(event, fluoro.NUMBER_OF_PULSES)
        seconds = _num(event, fluoro.IRRADIATION_DURATION)
        assert abs(rate * seconds - pulses) <= 1
        assert _num(event, dose.EXPOSURE_TIME) == pulses * _num(event, fluoro.PULSE_WIDTH)
        assert 10 < seconds < 600
    if modality == Modality.RF:  # its runs are stored fluoroscopy: the same pulses as the screening
        (image, *_) = _images(w)
        assert {_num(e, fluoro.PULSE_RATE) for e in screens} == {Decimal(image.CineRate)}
        assert {_num(e, fluoro.PULSE_WIDTH) for e in screens} == {Decimal(str(image.AveragePulseWidth))}
        assert {_num(e, dose.TUBE_CURRENT) for e in screens} == {Decimal(image.XRayTubeCurrent)}


@pytest.mark.parametrize("modality", [Modality.XA, Modality.RF])
def test_the_accumulated_totals_are_the_sums_of_the_events(written, modality) -> None:
    w = written[modality]
    ds = pydicom.dcmread(w.objects["dose"])
    totals = next(i for i in ds.ContentSequence if sr.concept_of(i)[:2] == dose.ACCUMULATED_XRAY[:2])
    events = _events(ds)
    screens = [e for e in events if _event_type(e) == fluoro.FLUOROSCOPY[0]]
    runs = [e for e in events if e not in screens]

    def total(group, concept):
        return sum((_num(e, concept) for e in group), Decimal(0))

    assert _num(totals, fluoro.FLUORO_DAP_TOTAL) == total(screens, dose.DAP)
    assert _num(totals, fluoro.FLUORO_DOSE_RP_TOTAL) == total(screens, dose.DOSE_RP)
    assert _num(totals, fluoro.TOTAL_FLUORO_TIME) == total(screens, fluoro.IRRADIATION_DURATION)
    assert _num(totals, fluoro.ACQUISITION_DAP_TOTAL) == total(runs, dose.DAP)
    assert _num(totals, fluoro.ACQUISITION_DOSE_RP_TOTAL) == total(runs, dose.DOSE_RP)
    assert _num(totals, fluoro.TOTAL_ACQUISITION_TIME) == total(runs, fluoro.IRRADIATION_DURATION)
    assert _num(totals, dose.DAP_TOTAL) == total(events, dose.DAP)
    assert _num(totals, dose.DOSE_RP_TOTAL) == total(events, dose.DOSE_RP)
    assert _num(totals, dose.TOTAL_FRAMES) == sum(image.NumberOfFrames for image in _images(w))


def test_cerebral_angiography_doses_are_near_the_reference_levels() -> None:
    """Cerebral DSA about 0.15 Gy.cm2 a frame, pulsed fluoroscopy about 0.7 Gy.cm2 a minute; the air kerma at the
    interventional reference point is 5-10 mGy per Gy.cm2 of DAP for a neuro field (PS3.16 CID 10025)."""
    order = order_for(Modality.XA)
    study = _fake_study(order)
    per_frame, per_minute, ratios = [], [], []
    for seed in range(30):
        for event in fluoro.fluoro_events(order, study, rng=random.Random(seed)):
            gy_cm2 = float(event.dap_gy_m2) * 1e4
            ratios.append(float(event.dose_rp_gy) * 1000 / gy_cm2)
            if event.fluoroscopy:
                per_minute.append(gy_cm2 / float(event.technique.duration_s) * 60)
            else:
                per_frame.append(gy_cm2 / event.technique.pulses)
    assert 0.08 < sum(per_frame) / len(per_frame) < 0.25
    assert 0.3 < sum(per_minute) / len(per_minute) < 1.5
    assert all(5 < r < 10 for r in ratios)


def test_the_radiopharmaceutical_report_tells_what_the_pet_images_record(written) -> None:
    w = written[Modality.PT]
    ds = pydicom.dcmread(w.objects["radiopharmaceutical"])
    assert ds.SOPClassUID == radiopharmaceutical.RADIOPHARMACEUTICAL_RADIATION_DOSE_SR and ds.Modality == "SR"
    assert ds.SeriesNumber == 994 and ds.ContentTemplateSequence[0].TemplateIdentifier == "10021"
    pet = [i for i in _images(w) if i.Modality == "PT"]
    assert pet
    (event,) = [i for i in ds.ContentSequence if sr.concept_of(i)[:2] == radiopharmaceutical.ADMINISTRATION[:2]]
    items = {sr.concept_of(i)[0]: i for i in event.ContentSequence}
    agent = items[radiopharmaceutical.AGENT[0]]
    nuclide, half_life = agent.ContentSequence
    for image in pet:
        given = image.RadiopharmaceuticalInformationSequence[0]
        assert agent.ConceptCodeSequence[0].CodeValue == given.RadiopharmaceuticalCodeSequence[0].CodeValue
        assert nuclide.ConceptCodeSequence[0].CodeValue == given.RadionuclideCodeSequence[0].CodeValue
        assert Decimal(str(half_life.MeasuredValueSequence[0].NumericValue)) == Decimal(str(given.RadionuclideHalfLife))
        activity = items[radiopharmaceutical.ADMINISTERED_ACTIVITY[0]].MeasuredValueSequence[0]
        assert activity.MeasurementUnitsCodeSequence[0].CodeValue == "MBq"
        assert Decimal(str(activity.NumericValue)) * 1_000_000 == Decimal(str(given.RadionuclideTotalDose))  # Bq
        assert items[radiopharmaceutical.START[0]].DateTime == given.RadiopharmaceuticalStartDateTime
        assert items[radiopharmaceutical.STOP[0]].DateTime == given.RadiopharmaceuticalStopDateTime
        route = items[radiopharmaceutical.ROUTE[0]].ConceptCodeSequence[0]
        assert route.CodeValue == given.AdministrationRouteCodeSequence[0].CodeValue
    assert items[radiopharmaceutical.START[0]].DateTime < items[radiopharmaceutical.STOP[0]].DateTime


def test_the_pet_ct_x_ray_report_covers_its_ct_series_alone(written) -> None:
    """One CT irradiation event (the low-dose attenuation CT over the PET's range), the CT images as evidence."""
    w = written[Modality.PT]
    ds = pydicom.dcmread(w.objects["dose"])
    assert ds.SOPClassUID == dose.XRAY_RADIATION_DOSE_SR and ds.ContentTemplateSequence[0].TemplateIdentifier == "10011"
    ct_images = [i for i in _images(w) if i.Modality == "CT"]
    (event,) = [i for i in ds.ContentSequence if sr.concept_of(i)[:2] == dose.CT_ACQUISITION[:2]]
    assert dose.numeric_values(event, dose.KVP) == [Decimal(str(ct_images[0].KVP))]
    (ctdivol,) = dose.numeric_values(event, dose.MEAN_CTDIVOL)
    assert Decimal("1") < ctdivol < Decimal("6")
    (length,) = dose.numeric_values(event, dose.SCANNING_LENGTH)
    assert Decimal("1000") < length < Decimal("1250")  # the 78815 range, skull base to mid-thigh (1120 mm)
    evidence = {sop.ReferencedSOPInstanceUID for study in ds.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    assert evidence == {i.SOPInstanceUID for i in ct_images}


def test_each_modality_files_its_dose_report_under_its_own_series() -> None:
    for modality, kinds in [(Modality.XA, ["dose"]), (Modality.RF, ["dose"]), (Modality.CT, ["dose"]),
                            (Modality.PT, ["dose", "radiopharmaceutical"])]:
        order = order_for(modality)
        documents = build_study_documents(order, _fake_study(order), rng=random.Random(2), now=LATER,
                                          key_images=False)
        assert [(d.kind, d.dataset.SeriesNumber) for d in documents] == [(k, SERIES_NUMBERS[k][0]) for k in kinds]
    assert build_study_documents(order_for(Modality.NM), _fake_study(order_for(Modality.NM)), rng=random.Random(2),
                                 now=LATER, key_images=False) == []


def _doc(rng: random.Random) -> DocumentSeries:
    return DocumentSeries(new_uid(rng), new_uid(rng), 990, "Dose")


def test_a_report_for_the_wrong_study_is_refused_with_a_reason() -> None:
    rng = random.Random(1)
    ct = order_for(Modality.CT)
    with pytest.raises(ValueError, match="not fluoroscopy-guided"):
        fluoro.build_fluoro_dose_sr(ct, _fake_study(ct), _doc(rng), rng=rng, now=LATER)
    with pytest.raises(ValueError, match="no radiopharmaceutical administration"):
        radiopharmaceutical.build_radiopharmaceutical_dose_sr(ct, _fake_study(ct), _doc(rng), rng=rng, now=LATER)
    xa = order_for(Modality.XA)
    with pytest.raises(ValueError, match="at least one acquired run"):
        fluoro.build_fluoro_dose_sr(xa, StudyContext(FIXED_NOW, ()), _doc(rng), rng=rng, now=LATER)
    pt = order_for(Modality.PT)
    only_ct = StudyContext(FIXED_NOW, tuple(s for s in _fake_study(pt).series if s.spec.kvp is not None))
    with pytest.raises(ValueError, match="needs the study's PET series"):
        radiopharmaceutical.build_radiopharmaceutical_dose_sr(pt, only_ct, _doc(rng), rng=rng, now=LATER)


def test_the_same_seed_gives_the_same_reports(tmp_path: Path) -> None:
    for modality, kind in CASES:
        a = _write(order_for(modality), tmp_path / f"a{modality.value}", seed=9)
        b = _write(order_for(modality), tmp_path / f"b{modality.value}", seed=9)
        assert pydicom.dcmread(a.objects[kind]) == pydicom.dcmread(b.objects[kind])


def test_each_event_happens_while_its_view_is_acquired(written) -> None:
    """From the series' acquisition time, before the next series of the protocol starts."""
    for modality in (Modality.XA, Modality.RF):
        w = written[modality]
        interval = series_interval(w.order)
        by_protocol = {s.spec.protocol_name: s.acquired_at for s in w.study.series}
        events = _events(pydicom.dcmread(w.objects["dose"]))
        assert len(events) == len(w.images) + len(w.study.series)
        for event in events:
            items = {sr.concept_of(i)[0]: i for i in event.ContentSequence}
            started = dt.datetime.strptime(items[dose.DATETIME_STARTED[0]].DateTime, "%Y%m%d%H%M%S")
            series_start = by_protocol[items[dose.ACQUISITION_PROTOCOL[0]].TextValue]
            assert series_start <= started < series_start + interval
