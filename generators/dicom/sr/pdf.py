"""The signed report as an Encapsulated PDF (PS3.3 A.45.1, SOP Class 1.2.840.10008.5.1.4.1.1.104.1).

Modules: Patient, General Study, Patient Study, Encapsulated Document Series (C.24.1, Modality DOC),
General Equipment, SC Equipment (C.8.6.1, Conversion Type WSD: made on a workstation), Encapsulated
Document (C.24.2: Instance Number, Content Date/Time, Acquisition DateTime, Burned In Annotation YES —
the PDF names the patient —, Document Title, Concept Name Code Sequence (18748-4, LN, "Diagnostic
Imaging Report"), MIME Type, the PDF bytes padded to even length, Encapsulated Document Length), SOP
Common.

The PDF is a real one-page (or longer) document drawn with fpdf2: header with the facility, the patient
and the order's identifiers, the indication, findings, impression and the signature — the same text as
the ORU and the text SR (:func:`generators.reports.build_report`). A Unicode TrueType font is used when
the system has one (DejaVu Sans, Debian ``fonts-dejavu-core``); otherwise the PDF core font Helvetica
with characters outside Latin-1 folded to their base letters.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

from fpdf import FPDF
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from generators.dicom.sr.document import DocumentSeries, StudyContext, base_dataset
from generators.dicom_common import code_item, dicom_datetime
from generators.reports import Report
from generators.types import Order

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
DIAGNOSTIC_IMAGING_REPORT = ("18748-4", "LN", "Diagnostic Imaging Report")
UNICODE_FONTS = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                 Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"))
_FOLD = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ı": "i", "œ": "oe", "Œ": "OE"})


def _latin1(text: str) -> str:
    """``text`` in Latin-1 for a core PDF font: accents outside Latin-1 dropped, other characters as '?'."""
    out = []
    for ch in text.translate(_FOLD):
        try:
            ch.encode("latin-1")
            out.append(ch)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", ch).encode("latin-1", "ignore").decode("latin-1")
            out.append(base or "?")
    return "".join(out)


def _pn(name: str) -> str:
    family, _, rest = name.partition("^")
    given = " ".join(p for p in rest.split("^") if p)
    return f"{family}, {given}" if given else family


def render_report_pdf(order: Order, report: Report, *, unicode_fonts: tuple[Path, Path] | None = UNICODE_FONTS
                      ) -> bytes:
    """The report of ``order`` as PDF bytes (A4, one column)."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(report.signed_at)
    pdf.set_title(f"{order.exam.description} - {order.accession_number}")
    pdf.set_author(report.radiologist.name.dicom)
    pdf.set_creator("Yeeter radiology simulator")
    if unicode_fonts is not None and all(p.is_file() for p in unicode_fonts):
        pdf.add_font("Report", "", str(unicode_fonts[0]))
        pdf.add_font("Report", "B", str(unicode_fonts[1]))
        family, clean = "Report", (lambda s: s)
    else:
        family, clean = "Helvetica", _latin1
    pdf.add_page()
    patient = order.patient

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font(family, "B", 11)
        pdf.cell(0, 6, clean(text), new_x="LMARGIN", new_y="NEXT")

    def body(text: str) -> None:
        pdf.set_font(family, "", 10)
        pdf.multi_cell(0, 5, clean(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font(family, "B", 14)
    pdf.cell(0, 8, clean(order.facility), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "B", 12)
    pdf.cell(0, 7, clean(f"Radiology report: {order.exam.description}"), new_x="LMARGIN", new_y="NEXT")
    body("\n".join([
        f"Patient: {_pn(patient.name.dicom)}    MRN: {patient.mrn} ({patient.issuer})",
        f"Date of birth: {patient.birth_date.isoformat()}    Sex: {patient.sex.value}",
        f"Accession: {order.accession_number}    Order: {order.placer_order_number}",
        f"Procedure: {order.procedure_code.code} {order.procedure_code.display}",
        f"Referring physician: {_pn(order.referring.name.dicom)}",
    ]))
    heading("Indication")
    body(order.indication.text)
    heading("Findings")
    body(report.findings)
    heading("Impression")
    body(report.impression)
    pdf.ln(4)
    status = "Electronically signed" if report.status == "F" else "Preliminary, not signed"
    body(f"{status} by {_pn(report.radiologist.name.dicom)} on {report.signed_at:%Y-%m-%d %H:%M}")
    return bytes(pdf.output())


def build_encapsulated_pdf(order: Order, study: StudyContext, doc: DocumentSeries, report: Report, *,
                           now: dt.datetime, pdf_bytes: bytes | None = None) -> Dataset:
    """The report as an Encapsulated PDF instance in its own series (``doc``), created at ``now``."""
    data = pdf_bytes if pdf_bytes is not None else render_report_pdf(order, report)
    title = f"Radiology report {order.accession_number}"
    ds = base_dataset(order, study, doc, sop_class_uid=ENCAPSULATED_PDF, modality="DOC", now=now)
    ds.ConversionType = "WSD"
    ds.AcquisitionDateTime = dicom_datetime(report.signed_at)
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = Sequence([code_item(*DIAGNOSTIC_IMAGING_REPORT)])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(data)
    ds.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    return ds
