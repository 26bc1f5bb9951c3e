"""The non-image documents of a study in a run: what ``GENERATE_DICOM`` writes beside the images.

The documents themselves are built by :mod:`generators.dicom.sr` (see its "Wiring" section); this module
decides which ones a step asks for (:class:`DocumentChoice`), and writes them into the study folder in the
same pixel-pool job as the images (:func:`write_study_with_documents`), so that everything downstream
takes them as part of the study with no change of its own:

* ``SEND_DICOM`` sends every ``<series>_<instance>.dcm`` of the folder in one association, images first
  (series 990-994 sort after the protocol's);
* ``STORAGE_COMMIT`` asks for what was stored, documents included;
* ``MPPS_COMPLETED`` lists a document series with its instance in Referenced Non-Image Composite SOP
  Instance Sequence (PS3.3 C.4.15, PS3.4 F.7.2.2.2), never in Referenced Image Sequence;
* the end-of-patient verification reads each document's identity like an image's
  (:func:`simulations.verification.verify_patient`).

The dose report is on by default for every ionising-radiation study (``dose_sr: false`` turns it off): the
X-Ray Radiation Dose SR of a CT, DX, CR, MG, XA or RF study and of a PET/CT's CT series (series 990), the
Radiopharmaceutical Radiation Dose SR of a PET study (series 994);
the key object selection, the basic text SR and the Encapsulated PDF are opt-in step fields. The text SR
and the PDF carry the same :class:`~generators.reports.Report` the ORU^R01 carries: the runner builds it
once per patient and hands it here and to ``SEND_REPORT``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from generators.dicom import SeriesRecord, StudyResult, write_study
from generators.dicom.sr import SERIES_NUMBERS, build_study_documents, study_context, write_part10
from generators.dicom.sr.document import series_interval
from generators.records import InstanceRecord
from generators.reports import Report
from generators.types import Order
from simulations.transport.dimse.store import read_instance

# Modality (0008,0060) of the document IODs: SR (dose, text), KO (key objects), DOC (encapsulated PDF).
DOCUMENT_MODALITIES = frozenset({"SR", "KO", "DOC"})
DOCUMENT_SERIES_NUMBERS = frozenset(number for number, _ in SERIES_NUMBERS.values())

# GENERATE_DICOM step field -> document kinds (keys of generators.dicom.sr.SERIES_NUMBERS), with its default:
# ``dose_sr`` is the study's dose report, whichever IOD its modality sends (X-ray or radiopharmaceutical).
STEP_FIELDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "dose_sr": (("dose", "radiopharmaceutical"), True),
    "key_images": (("kos",), False),
    "text_report": (("text",), False),
    "pdf_report": (("pdf",), False),
}


@dataclass(frozen=True, slots=True)
class DocumentChoice:
    """Which documents a ``GENERATE_DICOM`` step makes (the dose report only for the modalities that send one:
    :data:`generators.dicom.sr.bundle.DOSE_REPORT_MODALITIES`)."""

    dose_sr: bool = True
    key_images: bool = False
    text_report: bool = False
    pdf_report: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DocumentChoice:
        return cls(**{name: bool(params.get(name, default)) for name, (_, default) in STEP_FIELDS.items()})

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for name, (kinds, _) in STEP_FIELDS.items() if getattr(self, name) for kind in kinds)

    @property
    def needs_report(self) -> bool:
        return self.text_report or self.pdf_report


def is_document_series(record: SeriesRecord) -> bool:
    """A series of the study that holds a document, not images."""
    return record.modality in DOCUMENT_MODALITIES and record.number in DOCUMENT_SERIES_NUMBERS


def documents_time(order: Order, now: dt.datetime) -> dt.datetime:
    """When the documents are made: as the last series of the protocol ends (the images' series start at
    ``now + i * series_interval``), so a report or a dose summary is never dated before its images."""
    return now + len(order.exam.series) * series_interval(order)


def document_seed(pixel_seed: int, study_instance_uid: str) -> str:
    """The documents' own stream: drawn from the plan (the pixel seed) and the study, never
    ``Random(pixel_seed)`` itself, which is the image generator's UID stream."""
    return f"{pixel_seed}/documents/{study_instance_uid}"


def pdf_file_name(series_number: int) -> str:
    """The PDF of an Encapsulated PDF document, beside it in the study folder (the page links to it)."""
    return f"{series_number:03d}_0001.pdf"


def _write_atomically(data: bytes, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_study_with_documents(order: Order, out_dir: Path, *, seed: int, now: dt.datetime,
                               documents: DocumentChoice, report: Report | None, doc_seed: str,
                               **study_options: Any) -> StudyResult:
    """:func:`~generators.dicom.write_study`, then the documents ``documents`` asks for, written beside the
    images as ``<series>_0001.dcm`` (series 990-994); returns the study with their series appended.

    Runs in the pixel pool (picklable arguments only). ``report`` is needed for the text SR and the PDF.
    """
    records: list[InstanceRecord] = []
    result = write_study(order, out_dir, seed=seed, now=now, on_instance=records.append, **study_options)
    kinds = documents.kinds
    if not kinds or not records:
        return result
    pps_started_at = study_options.get("pps_started_at")
    study = study_context(order, records, started_at=now,
                          mpps_uid=order.mpps_uid if order.mpps_uid and pps_started_at is not None else None,
                          manufacturer_model=study_options.get("manufacturer_model"))
    made = build_study_documents(order, study, rng=random.Random(doc_seed), now=documents_time(order, now),
                                 report=report if documents.needs_report else None,
                                 key_images=documents.key_images, pdf_report=documents.pdf_report)
    series, instances = list(result.series), list(result.instances)
    count, size = result.instance_count, result.bytes
    for document in made:
        if document.kind not in kinds:
            continue  # drawn all the same, so a document's UIDs do not depend on which others were asked for
        path = write_part10(document.dataset, result.study_dir / document.file_name)
        if document.kind == "pdf":
            data = bytes(document.dataset.EncapsulatedDocument)[:int(document.dataset.EncapsulatedDocumentLength)]
            _write_atomically(data,
                              result.study_dir / pdf_file_name(document.series.number))
        series.append(SeriesRecord(document.series.number, document.series.series_instance_uid,
                                   document.series.description, str(document.dataset.Modality), 1,
                                   str(document.dataset.SOPClassUID), None))
        instances.append(_document_record(path, document.series, result.study_instance_uid))
        count += 1
        size += instances[-1].size
    return replace(result, series=series, instance_count=count, bytes=size, instances=tuple(instances))


def _document_record(path: Path, series, study_instance_uid: str) -> InstanceRecord:
    """The instance record of a document written with pydicom (its File Meta read back: a few hundred bytes)."""
    meta = read_instance(path)
    return replace(meta, series_instance_uid=series.series_instance_uid, series_number=series.number,
                   instance_number=1, size=path.stat().st_size)
