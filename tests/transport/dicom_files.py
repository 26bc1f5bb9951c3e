"""Small valid CT Image files (PS3.3 A.3) for the DIMSE tests and the C-STORE benchmark, and a dcmtk storescp launcher.

Written with plain pydicom so the transport tests do not depend on the image generators: the
bytes matter here, not anatomy. Pixel values are a seeded ramp plus noise so that a corrupted
or truncated transfer cannot go unnoticed.
"""

from __future__ import annotations

import datetime as dt
import random
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom.dsutils import split_dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    UID,
)

from generators.uids import new_uid
from tests.dcmtk import dcmtk_server

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def ct_dataset(
    *,
    rng: random.Random,
    study_uid: str,
    series_uid: str,
    instance_number: int,
    rows: int = 64,
    columns: int = 64,
    patient_id: str = "YT000001",
) -> Dataset:
    """One CT Image instance with the Type 1/2 attributes dciodvfy expects and uint16 pixels."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = new_uid(rng)
    when = dt.datetime(2026, 11, 25, 9, 30, 0)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = "A2611250000001"
    ds.Modality = "CT"
    ds.Manufacturer = "YEETER"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StudyDescription = "CT ABDOMEN PELVIS W CONTRAST"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.PatientName = "TEST^TRANSPORT"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = "5"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.PatientPosition = "FFS"
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.ImagePositionPatient = [-160.0, -160.0, -5.0 * instance_number]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = study_uid + ".1" if len(study_uid) < 62 else study_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = -5.0 * instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [320.0 / rows, 320.0 / columns]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    gen = np.random.default_rng(rng.getrandbits(32))
    ramp = np.add.outer(np.arange(rows), np.arange(columns)).astype(np.uint16) * 4
    pixels = (ramp + gen.integers(0, 200, size=(rows, columns), dtype=np.uint16)).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def write_ct_series(
    directory: Path,
    *,
    count: int,
    rows: int = 64,
    columns: int = 64,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 1,
    study_uid: str | None = None,
) -> list[Path]:
    """Write ``count`` CT instances of one series as DICOM files (PS3.10) and return their paths.

    ``transfer_syntax`` may be Explicit/Implicit VR Little Endian or RLE Lossless (encoded with
    pydicom's own RLE encoder).
    """
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    study = study_uid or new_uid(rng)
    series = new_uid(rng)
    paths: list[Path] = []
    for number in range(1, count + 1):
        ds = ct_dataset(rng=rng, study_uid=study, series_uid=series, instance_number=number, rows=rows, columns=columns)
        paths.append(write_file(directory / f"CT{number:05d}.dcm", ds, transfer_syntax=transfer_syntax))
    return paths


def write_file(path: Path, ds: Dataset, *, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a PS3.10 file in ``transfer_syntax`` (RLE Lossless compresses the pixels)."""
    ts = UID(transfer_syntax)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    if ts == RLELossless:
        # keeps our UIDs; sets the meta Transfer Syntax UID
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True, implicit_vr=ts.is_implicit_VR, little_endian=True)
    return path


@contextmanager
def storescp(
    binary: str, directory: Path, port: int, *, aet: str = "STORESCP", extra: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """dcmtk ``storescp +B`` (bit-preserving) writing to ``directory``, started with TCP_NODELAY=1 and stopped after."""
    directory.mkdir(parents=True, exist_ok=True)
    with dcmtk_server([binary, "-aet", aet, "-od", str(directory), "+B", *extra, str(port)], port) as process:
        yield process


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a PS3.10 file: everything after the File Meta group."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]
