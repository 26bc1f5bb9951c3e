"""What every non-image object of a study shares: the input records, the Patient/Study modules and Part 10.

The identity set comes only from the :class:`~generators.types.Order` (the same Patient, Study Instance
UID, accession and Study ID as the images); the study-level values the images carry (Study Date/Time,
Patient's Age, the procedure code, the admitting diagnosis) are written by the same function as the
images' (:func:`generators.dicom_common.set_study`, with the same study time), so ``dcentvfy`` finds one
patient and one study entity across images and documents.

Modules written here (PS3.3): Patient (C.7.1.1), General Study (C.7.2.1), Patient Study (C.7.2.2),
General Equipment (C.7.5.1), Enhanced General Equipment (C.7.5.2, required by the X-Ray Radiation
Dose SR), SOP Common (C.12.1), and the request and evidence references of the SR Document General
module (C.17.2: Referenced Request Sequence, Current Requested Procedure Evidence Sequence with the
Hierarchical SOP Instance Reference macro, Table C.17-3).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from generators.dicom import iods
from generators.dicom.sr import items
from generators.records import InstanceRecord
from generators.dicom.writer import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from generators.dicom_common import (
    SPECIFIC_CHARACTER_SET,
    catalog_code_item,
    dicom_date,
    dicom_time,
    order_texts,
    set_requested_procedure,
    set_study,
)
from generators.terms import Modality
from generators.types import Order, SeriesSpec
from generators.vr import clip

SOFTWARE_VERSION = "yeeter 0.1"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One stored instance of the study (SOP Class and Instance UID)."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class AcquiredSeries:
    """One series the study generator wrote: its protocol, UID, acquisition time and instances."""

    spec: SeriesSpec
    series_instance_uid: str
    acquired_at: dt.datetime
    instances: tuple[ImageRef, ...]


@dataclass(frozen=True, slots=True)
class StudyContext:
    """The images of one study as the documents about it need them.

    ``started_at`` is the ``now`` the images were written with (their Study Date/Time); ``mpps_uid`` the
    MPPS SOP Instance UID of the procedure step that acquired them, when there is one.
    """

    started_at: dt.datetime
    series: tuple[AcquiredSeries, ...]
    mpps_uid: str | None = None
    manufacturer_model: str | None = None

    @property
    def images(self) -> list[tuple[str, ImageRef]]:
        """(Series Instance UID, instance) of every image, in series order."""
        return [(s.series_instance_uid, ref) for s in self.series for ref in s.instances]


@dataclass(frozen=True, slots=True)
class DocumentSeries:
    """Where a document goes: its own new series (number and UID) and its SOP Instance UID."""

    series_instance_uid: str
    sop_instance_uid: str
    number: int
    description: str = ""


def series_interval(order: Order) -> dt.timedelta:
    """Time between series starts as :func:`generators.dicom.study.write_study` spaces them."""
    exam = order.exam
    return dt.timedelta(minutes=max(1, round(exam.estimated_duration_min / max(len(exam.series), 1))))


def study_context(order: Order, records: Iterable[InstanceRecord], *, started_at: dt.datetime,
                  mpps_uid: str | None = None, manufacturer_model: str | None = None) -> StudyContext:
    """A :class:`StudyContext` from the study generator's :class:`~generators.dicom.study.InstanceRecord` s.

    Each record carries its series number and UIDs; acquisition times follow the generator's spacing
    (series *i* of the protocol starts at ``started_at + i * series_interval``).
    """
    by_number: dict[int, list[InstanceRecord]] = {}
    for record in records:
        by_number.setdefault(record.series_number, []).append(record)
    series = []
    for index, spec in enumerate(order.exam.series):
        written = sorted(by_number.get(spec.number, []), key=lambda r: r.instance_number)
        if not written:
            continue
        series.append(AcquiredSeries(
            spec=spec, series_instance_uid=written[0].series_instance_uid,
            acquired_at=started_at + index * series_interval(order),
            instances=tuple(ImageRef(r.sop_class_uid, r.sop_instance_uid) for r in written),
        ))
    return StudyContext(started_at, tuple(series), mpps_uid, manufacturer_model)


def model_name(order: Order, study: StudyContext) -> str:
    """The modality's model name as its images carry it (Manufacturer's Model Name, Type 1 for a dose SR)."""
    modality = Modality(order.modality)
    return study.manufacturer_model or iods.DEFAULT_MODELS.get(modality) or f"Yeeter {modality.value}"


def device_uid(order: Order) -> str:
    """A stable UID of the modality (Device UID, Device Observer UID): the same station gives the same UID."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, f"yeeter-device:{order.station_ae_title}").int)


def device_serial(order: Order) -> str:
    return f"SN{uuid.uuid5(uuid.NAMESPACE_OID, order.station_ae_title).int % 10**8:08d}"


def base_dataset(order: Order, study: StudyContext, doc: DocumentSeries, *, sop_class_uid: str,
                 modality: str, now: dt.datetime, texts: Iterable[str] = ()) -> Dataset:
    """Patient, General Study, Patient Study, General + Enhanced General Equipment, SOP Common, the
    series identifiers of a document created at ``now`` in its own series ``doc``, and its Instance
    Number and Content Date/Time. ``texts`` is the free text the document carries besides the order's
    (UTF-8, ISO_IR 192, is declared when any of it is not ASCII)."""
    ds = Dataset()
    carried = [*order_texts(order), doc.description, *texts]
    if any(not t.isascii() for t in carried):
        ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.InstanceCreationDate, ds.InstanceCreationTime = dicom_date(now), dicom_time(now)
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = doc.sop_instance_uid
    # General Study / Patient Study: exactly what the images of the study carry
    set_study(ds, order, started_at=study.started_at)
    ds.Modality = modality
    ds.Manufacturer = iods.MANUFACTURER
    if doc.description:
        ds.SeriesDescription = clip(doc.description)
    ds.ManufacturerModelName = model_name(order, study)
    iods.patient_body_size(ds, order)
    ds.DeviceSerialNumber = device_serial(order)
    ds.SoftwareVersions = SOFTWARE_VERSION
    ds.SeriesInstanceUID = doc.series_instance_uid
    ds.SeriesNumber = doc.number
    ds.SeriesDate, ds.SeriesTime = dicom_date(now), dicom_time(now)
    ds.ReferencedPerformedProcedureStepSequence = Sequence(_pps_reference(study))
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = dicom_date(now), dicom_time(now)
    return ds


def sr_document_general(ds: Dataset, order: Order, *, references: Seq[tuple[str, ImageRef]],
                        verifying: Dataset | None = None) -> Dataset:
    """The rest of the SR Document General module (C.17.2): a complete document answering the order,
    VERIFIED when ``verifying`` (a Verifying Observer Sequence item) is given, with the instances it
    references as evidence (Type 1C: required when the content references instances)."""
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED" if verifying is not None else "UNVERIFIED"
    if verifying is not None:
        ds.VerifyingObserverSequence = Sequence([verifying])
    ds.ReferencedRequestSequence = Sequence([referenced_request(order)])
    ds.PerformedProcedureCodeSequence = Sequence([catalog_code_item(order.procedure_code)])
    if references:
        ds.CurrentRequestedProcedureEvidenceSequence = evidence(order, references)
    return ds


def _pps_reference(study: StudyContext) -> list[Dataset]:
    if study.mpps_uid is None:
        return []
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class
    ref.ReferencedSOPInstanceUID = study.mpps_uid
    return [ref]


def referenced_request(order: Order) -> Dataset:
    """Referenced Request Sequence item (C.17.2.1 / Table C.17-2): the order the document answers."""
    item = Dataset()
    item.StudyInstanceUID = order.study_instance_uid
    item.ReferencedStudySequence = Sequence([])
    set_requested_procedure(item, order)
    item.PlacerOrderNumberImagingServiceRequest = clip(order.placer_order_number)
    item.FillerOrderNumberImagingServiceRequest = clip(order.filler_order_number)
    return item


def evidence(order: Order, references: Seq[tuple[str, ImageRef]]) -> Sequence:
    """Hierarchical SOP Instance Reference macro (Table C.17-3) of ``references``, grouped by series."""
    by_series: dict[str, list[ImageRef]] = {}
    for series_uid, ref in references:
        by_series.setdefault(series_uid, []).append(ref)
    study = Dataset()
    study.StudyInstanceUID = order.study_instance_uid
    series_items = []
    for series_uid, refs in by_series.items():
        series = Dataset()
        series.SeriesInstanceUID = series_uid
        sops = []
        for ref in refs:
            sop = Dataset()
            sop.ReferencedSOPClassUID = ref.sop_class_uid
            sop.ReferencedSOPInstanceUID = ref.sop_instance_uid
            sops.append(sop)
        series.ReferencedSOPSequence = Sequence(sops)
        series_items.append(series)
    study.ReferencedSeriesSequence = Sequence(series_items)
    return Sequence([study])


def attach_content(ds: Dataset, title: tuple[str, str, str], content: list[Dataset], *, template: str) -> Dataset:
    """The SR Document Content module (C.17.3): the root CONTAINER ``title`` of template ``template``
    (Content Template Sequence, DCMR) with ``content`` as its children, written into ``ds`` itself."""
    root = items.container(None, title, content, template=template)
    for element in root:
        ds[element.tag] = element
    return ds


def with_file_meta(ds: Dataset) -> Dataset:
    """Attach the File Meta Information (PS3.10 §7.1) for Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    return ds


def write_part10(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a PS3.10 file at ``path`` atomically (a temporary name in the folder, then rename)."""
    path = Path(path)
    with_file_meta(ds)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fp:
            dcmwrite(fp, ds, enforce_file_format=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
