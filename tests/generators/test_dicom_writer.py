"""The template writer produces exactly the bytes pydicom would, and streams files that are complete."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from generators.dicom import iods, iter_study
from generators.dicom.pixels import series_pixels
from generators.dicom.writer import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    SeriesTemplate,
    encode_dataset_element,
    file_meta_bytes,
    pixel_element,
)
from generators.terms import Modality, Scene
from tests.examples import FIXED_NOW, order_for


def _pydicom_bytes(ds: pydicom.Dataset, sop_class: str, sop_uid: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_the_template_writer_encodes_exactly_what_pydicom_writes_for_the_same_dataset() -> None:
    order = order_for(Modality.MR)  # non-ASCII patient and referring names: ISO_IR 192 encoding
    spec = order.exam.series[0]
    pixels = series_pixels(order.exam, spec, 3, seed=1)
    ctx = iods.SeriesContext(spec, "2.25.1001", "2.25.1002", FIXED_NOW, pixels)
    series = iods.series_dataset(order, ctx, now=FIXED_NOW)
    template = SeriesTemplate(series, iods.DYNAMIC)
    arr = pixels.frame(1).copy()
    sop_uid = "2.25.123456789012345678901234567890123"  # odd length: exercises UI padding
    position = "\\".join(iods.decimal_string(v) for v in pixels.geometry.position(1))
    location = iods.decimal_string(pixels.geometry.location(1))
    ours = b"".join(bytes(b) for b in (
        file_meta_bytes(series.SOPClassUID, sop_uid, ExplicitVRLittleEndian),
        template.header({iods.SOP_INSTANCE_UID: sop_uid, iods.INSTANCE_NUMBER: "2",
                         iods.IMAGE_POSITION: position, iods.SLICE_LOCATION: location}),
        *pixel_element(arr, ExplicitVRLittleEndian, bits_stored=12, signed=False)))

    full = copy.deepcopy(series)
    full.SOPInstanceUID = sop_uid
    full.InstanceNumber = "2"
    full.ImagePositionPatient = position.split("\\")
    full.SliceLocation = location
    full.PixelData = arr.tobytes()
    full["PixelData"].VR = "OW"
    assert ours == _pydicom_bytes(full, series.SOPClassUID, sop_uid)

    back = pydicom.dcmread(io.BytesIO(ours))
    assert str(back.PatientName) == order.patient.name.dicom
    assert (back.pixel_array == arr.view("uint16")).all()


def test_a_pre_encoded_sequence_is_spliced_in_unchanged() -> None:
    order = order_for(Modality.NM)
    spec = order.exam.series[0]
    pixels = series_pixels(order.exam, spec, 2, seed=1)
    series = iods.series_dataset(order, iods.SeriesContext(spec, "2.25.1", "2.25.2", FIXED_NOW, pixels),
                                 now=FIXED_NOW)
    holder = iods.nm_detector_information(True, Scene.BONE)
    header = SeriesTemplate(series, iods.NM_DYNAMIC).header({
        iods.SOP_INSTANCE_UID: "2.25.9", iods.INSTANCE_NUMBER: "2",
        iods.DETECTOR_INFORMATION: encode_dataset_element(holder, iods.DETECTOR_INFORMATION)})
    back = pydicom.dcmread(io.BytesIO(file_meta_bytes(series.SOPClassUID, "2.25.9", ExplicitVRLittleEndian)
                                      + header))
    assert back.DetectorInformationSequence[0].ViewCodeSequence[0].CodeMeaning == "Posterior"
    assert back.InstanceNumber == 2 and back.PatientID == order.patient.mrn


def test_streamed_records_point_at_complete_files(tmp_path: Path) -> None:
    seen = []
    for record in iter_study(order_for(Modality.CT), tmp_path, seed=2, now=FIXED_NOW, max_instances_per_series=4,
                             on_instance=seen.append):
        assert record.path.stat().st_size == record.size  # already fully written when handed out
        ds = pydicom.dcmread(record.path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == record.sop_instance_uid
        assert ds.SeriesInstanceUID == record.series_instance_uid
        assert ds.InstanceNumber == record.instance_number and ds.SeriesNumber == record.series_number
    assert [r.instance_number for r in seen] == [1, 1, 2, 3, 4, 1, 2, 3, 4]


def test_stopping_the_stream_early_leaves_no_writer_behind(tmp_path: Path) -> None:
    stream = iter_study(order_for(Modality.CT), tmp_path, seed=2, now=FIXED_NOW, max_instances_per_series=5)
    first = next(stream)
    stream.close()
    assert first.path.exists()
    written = sorted(p.name for p in first.path.parent.glob("*.dcm"))
    assert written[0] == "001_0001.dcm" and len(written) < 11
    assert all(pydicom.dcmread(first.path.parent / name).SOPInstanceUID for name in written)
