"""Modality Worklist items: one C-FIND return dataset per scheduled procedure step.

Implements the Modality Worklist Information Model of DICOM PS3.4 K.6 (Table K.6-1 return keys)
with the return keys IHE RAD TF-2 RAD-5 "Query Modality Worklist" expects a modality to receive.
Every identity value comes from the :class:`~generators.types.Order` minted once per order; this
module never mints a Study Instance UID or an accession number.

The key lists below are the single statement of "what a worklist item carries":
:func:`build_worklist_item` fills them and :func:`query_dataset` asks for them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from generators.dicom_common import (
    SPECIFIC_CHARACTER_SET,
    catalog_code_item,
    code_item,
    dicom_date,
    dicom_time,
    patient_attributes,
)
from generators.terms import CodingScheme, Contrast, Sex
from generators.types import ExamInfo, Order, Provider
from generators.vr import MAX_LENGTH, clean_dataset, clip

# Private coding scheme of the catalog's series protocols (PS3.16 8.2: "99" prefix = private).
PROTOCOL_CODING_SCHEME = "99YEETER"

# Modality Worklist Information Model - FIND (PS3.4 K.6); also the "SOP class" of a .wl file.
MWL_FIND_SOP_CLASS_UID = "1.2.840.10008.5.1.4.31"

# PS3.4 Table K.6-1 (Scheduled Procedure Step module): keys inside the one item of
# ScheduledProcedureStepSequence. ScheduledProtocolCodeSequence is 1C (we always know it),
# RequestedContrastAgent 2C (present, empty without contrast).
SPS_KEYS: tuple[str, ...] = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledStationName",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProtocolCodeSequence",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepStatus",
    "PreMedication",
    "RequestedContrastAgent",
)

# PS3.4 Table K.6-1 top-level keys: Requested Procedure, Imaging Service Request, Visit
# Identification/Status/Relationship, Patient Identification/Demographic/Medical modules.
# Type 2 keys without a value in the simulator are returned empty, as the standard requires.
TOP_LEVEL_KEYS: tuple[str, ...] = (
    # Requested Procedure
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedureCodeSequence",
    "StudyInstanceUID",
    "ReferencedStudySequence",
    "RequestedProcedurePriority",
    "PatientTransportArrangements",
    "ReasonForTheRequestedProcedure",
    "ReasonForRequestedProcedureCodeSequence",
    # Imaging Service Request
    "AccessionNumber",
    "RequestingPhysician",
    "ReferringPhysicianName",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    # Visit
    "AdmissionID",
    "InstitutionName",
    "CurrentPatientLocation",
    "ReferencedPatientSequence",
    # Patient
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientWeight",
    "PatientSize",
    "ConfidentialityConstraintOnPatientDataDescription",
    "PatientState",
    "PregnancyStatus",
    "MedicalAlerts",
    "Allergies",
    "SpecialNeeds",
    # Scheduled Procedure Step
    "ScheduledProcedureStepSequence",
)

_SPS_KEY_SET = frozenset(SPS_KEYS)

# PS3.3 C.7.1.1 Pregnancy Status (0010,21C0) enumerated value 4: unknown.
_PREGNANCY_UNKNOWN = 4


def protocol_code_value(protocol_name: str) -> str:
    """Deterministic SH (max 16 chars) code value for a catalog protocol name.

    Names that fit are used as they are (what a technologist recognises on the console); longer
    ones keep an 11-character readable prefix, a hyphen and 4 hex digits of their SHA-1 (no HL7
    delimiter such as ``~``, so OBR-4.4 carries the same code as the worklist), so the same
    protocol always gets the same code in the worklist (ScheduledProtocolCodeSequence) and in
    MPPS (PerformedProtocolCodeSequence), and two long names sharing a prefix stay distinct.
    """
    if len(protocol_name) <= MAX_LENGTH["SH"]:
        return protocol_name
    digest = hashlib.sha1(protocol_name.encode("utf-8")).hexdigest()[:4].upper()
    return f"{protocol_name[:11]}-{digest}"


def protocol_code_item(protocol_name: str) -> Dataset:
    """A protocol code item: private scheme ``99YEETER``, the full protocol name in CodeMeaning.

    The same protocol gives the same item in the worklist and in MPPS.
    """
    return code_item(protocol_code_value(protocol_name), PROTOCOL_CODING_SCHEME, protocol_name)


def scheduled_protocol_items(exam: ExamInfo) -> list[Dataset]:
    """One ScheduledProtocolCodeSequence item per series protocol of ``exam``, in series order."""
    return [protocol_code_item(s.protocol_name) for s in exam.series]


def empty_element_value(keyword: str) -> Any:
    """The zero-length value of ``keyword``: an empty Sequence for SQ, None (empty) otherwise."""
    return Sequence() if dictionary_VR(keyword) == "SQ" else None


def _fill(ds: Dataset, keys: tuple[str, ...], values: dict[str, Any]) -> None:
    for keyword in keys:
        value = values.get(keyword)
        if value is None or value == "":
            value = empty_element_value(keyword)
        elif dictionary_VR(keyword) == "SQ":
            value = Sequence(value)
        setattr(ds, keyword, value)


def build_worklist_item(order: Order, *, performing: Provider | None = None) -> Dataset:
    """The Modality Worklist item of ``order`` (PS3.4 K.6 Table K.6-1; IHE RAD TF-2 RAD-5).

    One item per scheduled procedure step (one SPS per order, see
    :func:`generators.identity.mint_order`). All return keys of :data:`TOP_LEVEL_KEYS` and
    :data:`SPS_KEYS` are present; Type 2 keys without a value are zero length. ``performing``
    (else ``order.performing``) becomes ScheduledPerformingPhysicianName.
    """
    exam = order.exam
    patient = order.patient
    physician = performing or order.performing
    start = order.scheduled_at
    end = start + dt.timedelta(minutes=exam.estimated_duration_min)

    sps = Dataset()
    _fill(
        sps,
        SPS_KEYS,
        {
            "Modality": str(exam.modality),
            "ScheduledStationAETitle": order.station_ae_title,
            "ScheduledStationName": order.station_name,
            "ScheduledProcedureStepStartDate": dicom_date(start),
            "ScheduledProcedureStepStartTime": dicom_time(start),
            "ScheduledProcedureStepEndDate": dicom_date(end),
            "ScheduledProcedureStepEndTime": dicom_time(end),
            "ScheduledPerformingPhysicianName": physician.name.dicom if physician else "",
            "ScheduledProcedureStepDescription": clip(exam.description),
            "ScheduledProtocolCodeSequence": scheduled_protocol_items(exam),
            "ScheduledProcedureStepID": order.sps_id,
            "ScheduledProcedureStepStatus": "SCHEDULED",
            "RequestedContrastAgent": clip(exam.contrast_agent) if exam.contrast != Contrast.NONE else "",
        },
    )

    # I10C: the DICOM designator of ICD-10-CM (PS3.16 Table 8-1)
    reason = code_item(order.indication.icd10, CodingScheme.ICD10CM.value, order.indication.text)

    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    _fill(
        ds,
        TOP_LEVEL_KEYS,
        {
            "RequestedProcedureID": order.requested_procedure_id,
            "RequestedProcedureDescription": clip(exam.description),
            "RequestedProcedureCodeSequence": [catalog_code_item(order.procedure_code)],
            "StudyInstanceUID": order.study_instance_uid,
            "RequestedProcedurePriority": order.priority.dicom,
            "ReasonForTheRequestedProcedure": clip(order.indication.text),
            "ReasonForRequestedProcedureCodeSequence": [reason],
            "AccessionNumber": order.accession_number,
            "RequestingPhysician": order.referring.name.dicom,
            "ReferringPhysicianName": order.referring.name.dicom,
            "PlacerOrderNumberImagingServiceRequest": order.placer_order_number,
            "FillerOrderNumberImagingServiceRequest": order.filler_order_number,
            "AdmissionID": order.visit_number,
            "InstitutionName": clip(order.facility),
            **patient_attributes(patient),
            "PregnancyStatus": _PREGNANCY_UNKNOWN if patient.sex == Sex.FEMALE else None,
            "ScheduledProcedureStepSequence": [sps],
        },
    )
    return clean_dataset(ds)


def query_dataset(**keys: str) -> Dataset:
    """A typical modality MWL C-FIND identifier (PS3.4 K.6.1.2): every return key, universal.

    Keyword arguments are matching keys; those of the Scheduled Procedure Step module
    (:data:`SPS_KEYS`, e.g. ``Modality="MR"``, ``ScheduledStationAETitle="CT1"``,
    ``ScheduledProcedureStepStartDate="20261125-"``) go into the single item of
    ScheduledProcedureStepSequence as PS3.4 C.2.2.2.6 sequence matching requires; all others
    are top-level. An unknown keyword raises ``ValueError``.
    """
    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    sps = Dataset()
    _fill(sps, SPS_KEYS, {})
    _fill(ds, TOP_LEVEL_KEYS, {})
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    for keyword, value in keys.items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")
        setattr(sps if keyword in _SPS_KEY_SET else ds, keyword, value)
    return ds


def worklist_file_name(ds: Dataset) -> str:
    """``<AccessionNumber>.wl`` with characters unsafe in a file name replaced by ``_``."""
    accession = str(ds.get("AccessionNumber", "") or "")
    if not accession:
        raise ValueError("a worklist item needs an AccessionNumber to be written as <accession>.wl")
    return re.sub(r"[^A-Za-z0-9._-]", "_", accession) + ".wl"


def _file_instance_uid(ds: Dataset) -> str:
    # A worklist item is not a SOP instance, but the file meta (PS3.10 7.1) wants an instance
    # UID; derive it from the item's identity so rewriting the same item gives the same file.
    seed = f"{ds.get('StudyInstanceUID', '')}|{ds.get('AccessionNumber', '')}"
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, seed).int)


def write_worklist_file(ds: Dataset, folder: Path) -> Path:
    """Write ``ds`` as ``<folder>/<accession>.wl`` (PS3.10 file, Explicit VR Little Endian).

    This is the file layout dcmtk ``wlmscpfs`` and the Orthanc worklist plugin serve (the caller
    passes the called-AE-title folder). The bytes go to a hidden temporary file in the same
    folder which is then renamed over the target, so a server scanning ``*.wl`` never reads a
    half-written item.
    """
    folder = Path(folder)
    target = folder / worklist_file_name(ds)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MWL_FIND_SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = _file_instance_uid(ds)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    file_ds = Dataset()
    file_ds.update(ds)
    file_ds.file_meta = meta

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates 0600; a worklist server often runs as another user and must read it.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            file_ds.save_as(fh, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
