"""The signed report as a Basic Text SR (PS3.3 A.35.1, SOP Class 1.2.840.10008.5.1.4.1.1.88.11), TID 2000.

Modules: Patient, General Study, Patient Study, SR Document Series (C.17.1, Modality SR), General
Equipment, SR Document General (C.17.2: Completion Flag COMPLETE, Verification Flag VERIFIED with the
signing radiologist in Verifying Observer Sequence, Referenced Request Sequence, Performed Procedure
Code Sequence, Current Requested Procedure Evidence Sequence for the images cited), SR Document
Content (C.17.3) and SOP Common.

TID 2000 Basic Diagnostic Imaging Report: root (18748-4, LN, "Diagnostic Imaging Report"); TID 1001
observation context (a person observer, TID 1003: the radiologist); section containers from CID 7001
(Indications for Procedure, Current Procedure Descriptions, Findings, Impressions) each holding TID 2002
Report Narrative TEXT items (CID 7002: Procedure Description, Finding, Impression, Recommendation); the
findings cite images with IMAGE items of purpose (121080, DCM, "Best illustration of finding") (CID
7003). The text is the report the ORU carries (:func:`generators.reports.build_report`), line for line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence as Seq

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from generators.dicom.sr import items as sr
from generators.dicom.sr.document import (
    DocumentSeries,
    ImageRef,
    StudyContext,
    attach_content,
    base_dataset,
    sr_document_general,
)
from generators.dicom_common import dicom_datetime
from generators.reports import Report
from generators.types import Order
from generators.vr import clip

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
DIAGNOSTIC_IMAGING_REPORT = ("18748-4", "LN", "Diagnostic Imaging Report")
OBSERVER_TYPE = ("121005", "DCM", "Observer Type")
PERSON = ("121006", "DCM", "Person")
PERSON_OBSERVER_NAME = ("121008", "DCM", "Person Observer Name")
INDICATIONS = ("121109", "DCM", "Indications for Procedure")
FINDINGS = ("121070", "DCM", "Findings")
FINDING = ("121071", "DCM", "Finding")
IMPRESSIONS = ("121072", "DCM", "Impressions")
IMPRESSION = ("121073", "DCM", "Impression")
RECOMMENDATION = ("121074", "DCM", "Recommendation")
PROCEDURE_DESCRIPTIONS = ("121064", "DCM", "Current Procedure Descriptions")
PROCEDURE_DESCRIPTION = ("121065", "DCM", "Procedure Description")
BEST_ILLUSTRATION = ("121080", "DCM", "Best illustration of finding")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def build_text_sr(order: Order, study: StudyContext, doc: DocumentSeries, report: Report,
                  references: Seq[tuple[str, ImageRef]], *, now: dt.datetime) -> Dataset:
    """``report`` as a verified Basic Text SR citing ``references`` (key images) under its findings."""
    radiologist = report.radiologist.name.dicom
    findings, impressions = _lines(report.findings), _lines(report.impression)
    ds = base_dataset(order, study, doc, sop_class_uid=BASIC_TEXT_SR, modality="SR", now=now,
                      texts=[radiologist, *findings, *impressions])
    verifying = None
    if report.status == "F":
        verifying = Dataset()
        verifying.VerifyingObserverName = radiologist
        verifying.VerifyingObserverIdentificationCodeSequence = Sequence([])
        verifying.VerifyingOrganization = clip(order.facility)
        verifying.VerificationDateTime = dicom_datetime(report.signed_at)
    sr_document_general(ds, order, references=references, verifying=verifying)
    technique = [line.removeprefix("TECHNIQUE:").strip() for line in findings if line.startswith("TECHNIQUE:")]
    # the section words of the ORU text become the SR's section containers
    finding_items = [sr.text(sr.CONTAINS, FINDING, line) for line in findings
                     if not line.startswith("TECHNIQUE:") and line != "FINDINGS:"]
    finding_items += [sr.image(sr.CONTAINS, BEST_ILLUSTRATION, ref.sop_class_uid, ref.sop_instance_uid)
                      for _, ref in references]
    content = [
        sr.code_item(sr.HAS_OBS_CONTEXT, OBSERVER_TYPE, PERSON),
        sr.pname(sr.HAS_OBS_CONTEXT, PERSON_OBSERVER_NAME, radiologist),
        sr.container(sr.CONTAINS, INDICATIONS, [sr.text(sr.CONTAINS, INDICATIONS, order.indication.text)]),
        *([sr.container(sr.CONTAINS, PROCEDURE_DESCRIPTIONS,
                        [sr.text(sr.CONTAINS, PROCEDURE_DESCRIPTION, line) for line in technique])]
          if technique else []),
        sr.container(sr.CONTAINS, FINDINGS, finding_items),
        sr.container(sr.CONTAINS, IMPRESSIONS, [
            sr.text(sr.CONTAINS, RECOMMENDATION, line.removeprefix("Recommendation:").strip())
            if line.startswith("Recommendation:") else sr.text(sr.CONTAINS, IMPRESSION, line)
            for line in impressions]),
    ]
    attach_content(ds, DIAGNOSTIC_IMAGING_REPORT, content, template="2000")
    return ds
