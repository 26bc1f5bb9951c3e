"""Every document of one study in one call: what the runner hands to the sender after the images.

:func:`build_study_documents` makes the dose reports (the X-Ray Radiation Dose SR of a CT, DX, CR, MG, XA
or RF study and of a PET/CT's CT series; the Radiopharmaceutical Radiation Dose SR of a PET study), the key
object selection, the text SR and the PDF of the report, each in its own new series numbered after the protocol's
(:data:`SERIES_NUMBERS`), drawing all UIDs from ``rng`` (the patient's plan stream, never the image
generator's ``Random(pixel_seed)``, whose UIDs the images already use).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from generators.dicom.sr import dose, fluoro, kos, pdf, radiopharmaceutical, text
from generators.dicom.sr.document import DocumentSeries, StudyContext
from generators.reports import Report
from generators.terms import Modality
from generators.types import Order
from generators.uids import new_uid

# Series Number (0020,0011) and Series Description of each document; protocols number their series from 1.
SERIES_NUMBERS: dict[str, tuple[int, str]] = {
    "dose": (990, "Radiation Dose Report"),
    "kos": (991, "Key Images"),
    "text": (992, "Radiology Report"),
    "pdf": (993, "Radiology Report (PDF)"),
    "radiopharmaceutical": (994, "Radiopharmaceutical Dose Report"),
}

DoseBuilder = Callable[..., Dataset | None]

# What makes each study's dose reports: the modality's builders and the document kind each is filed under
# (a PET/CT sends both: the X-ray dose of its CT series and the radiopharmaceutical it was given).
_DOSE_BUILDERS: dict[Modality, list[tuple[str, DoseBuilder]]] = {}
for _modality in dose.DOSE_MODALITIES:
    _DOSE_BUILDERS.setdefault(_modality, []).append(("dose", dose.build_dose_sr))
for _modality in fluoro.FLUORO_MODALITIES:
    _DOSE_BUILDERS.setdefault(_modality, []).append(("dose", fluoro.build_fluoro_dose_sr))
for _modality in radiopharmaceutical.RADIOPHARMACEUTICAL_MODALITIES:
    _DOSE_BUILDERS.setdefault(_modality, []).append(
        ("radiopharmaceutical", radiopharmaceutical.build_radiopharmaceutical_dose_sr))
DOSE_REPORT_MODALITIES = frozenset(_DOSE_BUILDERS)


@dataclass(frozen=True, slots=True)
class StudyDocument:
    """One document made for a study: its kind (a key of :data:`SERIES_NUMBERS`), series and data set."""

    kind: str
    series: DocumentSeries
    dataset: Dataset

    @property
    def file_name(self) -> str:
        """``<series>_<instance>.dcm``, the study folder's naming (one instance per document series)."""
        return f"{self.series.number:03d}_0001.dcm"


def _series(kind: str, rng: random.Random) -> DocumentSeries:
    number, description = SERIES_NUMBERS[kind]
    return DocumentSeries(new_uid(rng), new_uid(rng), number, description)


def build_study_documents(order: Order, study: StudyContext, *, rng: random.Random, now: dt.datetime,
                          report: Report | None = None, key_images: bool = True, pdf_report: bool = True
                          ) -> list[StudyDocument]:
    """The documents of ``study``: dose report (:data:`DOSE_REPORT_MODALITIES`), KOS (``key_images``), and, when a
    ``report`` is given, the text SR citing the key images and (``pdf_report``) the PDF. Deterministic
    in ``rng``'s state."""
    documents = []
    for kind, build in _DOSE_BUILDERS.get(Modality(order.modality), []):
        doc = _series(kind, rng)
        made = build(order, study, doc, rng=rng, now=now)
        if made is not None:
            documents.append(StudyDocument(kind, doc, made))
    keys = kos.choose_key_images(study, rng=rng) if study.images else []
    if key_images and keys:
        doc = _series("kos", rng)
        documents.append(StudyDocument("kos", doc, kos.build_kos(order, study, doc, keys, now=now,
                                                                description="Key images of the study")))
    if report is not None:
        doc = _series("text", rng)
        documents.append(StudyDocument("text", doc, text.build_text_sr(order, study, doc, report, keys, now=now)))
        if pdf_report:
            doc = _series("pdf", rng)
            documents.append(StudyDocument("pdf", doc, pdf.build_encapsulated_pdf(order, study, doc, report,
                                                                                  now=now)))
    return documents
