"""integrity.file_elements: the raw values verification compares, and None for every file it cannot vouch for."""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from simulations.transport.dimse.integrity import file_elements
from tests.transport.dicom_files import ct_dataset, write_file

PATIENT_ID, SOP_INSTANCE, PIXEL_DATA = 0x00100020, 0x00080018, 0x7FE00010


def _ct(tmp_path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    ds = ct_dataset(rng=random.Random(1), study_uid="2.25.1", series_uid="2.25.2", instance_number=1)
    return write_file(tmp_path / "ct.dcm", ds, transfer_syntax=transfer_syntax)


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
def test_it_returns_the_wanted_elements_as_encoded(tmp_path: Path, transfer_syntax: str) -> None:
    path = _ct(tmp_path, transfer_syntax)
    walked = file_elements(path, frozenset({PATIENT_ID, SOP_INSTANCE, PIXEL_DATA}))
    assert walked is not None
    ts, values = walked
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ts == transfer_syntax
    assert set(values) == {PATIENT_ID, SOP_INSTANCE}  # the walk stops before Pixel Data
    vr = b"" if transfer_syntax == ImplicitVRLittleEndian else b"LO"
    assert values[PATIENT_ID] == (vr, ds.PatientID.encode().ljust(len(values[PATIENT_ID][1]), b" "))
    assert values[SOP_INSTANCE][1].rstrip(b"\x00").decode() == ds.SOPInstanceUID


def test_a_file_cut_inside_an_element_before_its_pixels_is_left_to_pydicom(tmp_path: Path) -> None:
    path = _ct(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\x10\x00\x20\x00LO") + 9])  # inside the value of Patient ID
    assert file_elements(path, frozenset({PATIENT_ID})) is None


def test_a_file_cut_in_its_pixel_data_is_read_as_far_as_pydicom_reads_it(tmp_path: Path) -> None:
    path = _ct(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    assert file_elements(path, frozenset({PATIENT_ID})) is not None


@pytest.mark.parametrize("content", [b"", b"not a DICOM file", b"\x00" * 128 + b"DIC", b"\x00" * 200])
def test_what_is_no_dicom_file_is_left_to_pydicom(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    assert file_elements(path, frozenset({PATIENT_ID})) is None


def test_a_transfer_syntax_the_walk_does_not_read_is_left_to_pydicom(tmp_path: Path) -> None:
    path = _ct(tmp_path)
    data = path.read_bytes()
    # the File Meta names big endian (same length as explicit little endian's UID)
    path.write_bytes(data.replace(ExplicitVRLittleEndian.encode() + b"\x00", ExplicitVRBigEndian.encode() + b"\x00", 1))
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    assert file_elements(path, frozenset({PATIENT_ID})) is None


def test_an_unknown_vr_is_left_to_pydicom(tmp_path: Path) -> None:
    path = _ct(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b"\x10\x00\x20\x00LO")  # Patient ID, explicit VR
    data[at + 4 : at + 6] = b"QQ"
    path.write_bytes(bytes(data))
    assert file_elements(path, frozenset({PATIENT_ID})) is None
