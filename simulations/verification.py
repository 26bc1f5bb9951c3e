"""Consistency verification: does everything a patient story actually sent tell the same story?

Compares the HL7 messages, the worklist item (as published and as the worklist SCP answered it),
the MPPS datasets and every DICOM file's header against the identity set minted for the order
(``order.json``): patient identity, accession, requested procedure / SPS ids, Study Instance UID,
modality, body part, laterality, description, procedure code and the performed procedure step (PPS ID,
MPPS SOP Instance UID and start date/time alike in MPPS and every image); and, when a VERIFY_PACS step ran,
the differences between what the PACS holds and what was sent (``pacs-verify.json``). Works from the files of
:mod:`simulations.artifacts` alone, so ``manage.py verify_run`` can re-check a run at any time.

Every DICOM file is checked, but the images of a series carry the same identity bytes: a file whose checked
elements (and transfer syntax) are byte for byte those of an image already checked gets that image's results
under its own name instead of another pydicom read (:class:`_ImageChecks`), which the checks cannot tell apart
since they read nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hl7
from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.values import convert_UI

from generators.terms import IMAGED_BY_SIDE, body_part_examined
from simulations.artifacts import PatientFiles
from simulations.transport.dimse.integrity import file_elements

_DICOM_TAGS = ["PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyInstanceUID",
               "Modality", "BodyPartExamined", "Laterality", "ImageLaterality", "StudyDescription",
               "RequestAttributesSequence", "ProcedureCodeSequence", "SOPInstanceUID", "SeriesInstanceUID",
               "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
               "ReferencedPerformedProcedureStepSequence", "SOPClassUID", "ReferencedRequestSequence",
               "CurrentRequestedProcedureEvidenceSequence"]

_SOP_INSTANCE_UID = 0x00080018
# What the checks of an image read: the elements above (pydicom adds Specific Character Set, which decodes them)
# but the two that differ between the images of one series and are not checked, only collected or not read.
_KEY_TAGS = frozenset({*(tag_for_keyword(keyword) for keyword in _DICOM_TAGS), 0x00080005}
                      - {_SOP_INSTANCE_UID, 0x0020000E})
_WALKED_TAGS = _KEY_TAGS | {_SOP_INSTANCE_UID}

# The document IODs a study carries beside its images (simulations.documents) and their Modality (0008,0060).
DOCUMENT_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.88.67": "SR",  # X-Ray Radiation Dose SR (PS3.3 A.35.8)
    "1.2.840.10008.5.1.4.1.1.88.68": "SR",  # Radiopharmaceutical Radiation Dose SR (A.35.14)
    "1.2.840.10008.5.1.4.1.1.88.11": "SR",  # Basic Text SR (A.35.1)
    "1.2.840.10008.5.1.4.1.1.88.59": "KO",  # Key Object Selection Document (A.35.4)
    "1.2.840.10008.5.1.4.1.1.104.1": "DOC",  # Encapsulated PDF (A.45.1)
}


@dataclass
class Verification:
    mismatches: list[dict[str, str]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    # Every comparison made, matching or not (the simulator page shows expected vs found for each).
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def expect(self, artifact: str, name: str, expected: Any, actual: Any) -> None:
        ok = str(expected or "") == str(actual or "")
        self.checks.append({"artifact": artifact, "field": name, "expected": str(expected or ""),
                            "actual": str(actual or ""), "ok": ok})
        if not ok:
            self.mismatches.append({"artifact": artifact, "field": name, "expected": str(expected or ""),
                                    "actual": str(actual or "")})

    def count(self, artifact: str, n: int = 1) -> None:
        self.checked[artifact] = self.checked.get(artifact, 0) + n

    def add(self, other: "Verification", artifact: str | None = None) -> None:
        """Take over what ``other`` found, its checks and mismatches named ``artifact`` if given."""
        rename = (lambda entry: entry) if artifact is None else (lambda entry: {**entry, "artifact": artifact})
        self.checks.extend(rename(entry) for entry in other.checks)
        self.mismatches.extend(rename(entry) for entry in other.mismatches)
        for name, n in other.checked.items():
            self.count(name, n)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "mismatches": self.mismatches[:200],
                "mismatch_count": len(self.mismatches)}

    def summary(self) -> str:
        if self.ok:
            return "consistent across " + ", ".join(f"{n} {a}" for a, n in sorted(self.checked.items()))
        first = self.mismatches[0]
        return (f"{len(self.mismatches)} mismatch(es); first: {first['artifact']} {first['field']} is "
                f"{first['actual']!r}, expected {first['expected']!r}")


def _name_parts(pn: str) -> list[str]:
    parts = (pn or "").split("^")
    return (parts + [""] * 5)[:3]


def _check_hl7(v: Verification, artifact: str, text: str, ident: dict, *, order_fields: bool) -> None:
    try:
        msg = hl7.parse(text)
    except Exception as exc:  # noqa: BLE001 - the hl7 package raises assorted errors on bad input
        v.mismatches.append({"artifact": artifact, "field": "message", "expected": "a parsable HL7 message",
                             "actual": f"unparsable ({exc})"})
        return
    v.count(artifact)

    def get(path: str) -> str:
        try:
            return str(msg[path])
        except (KeyError, IndexError):
            return ""

    v.expect(artifact, "PID-3.1 patient ID", ident["patient_id"], get("PID.F3.R1.C1"))
    family, given, middle = _name_parts(ident["patient_name"])
    v.expect(artifact, "PID-5.1 family name", family, get("PID.F5.R1.C1"))
    v.expect(artifact, "PID-5.2 given name", given, get("PID.F5.R1.C2"))
    v.expect(artifact, "PID-7 birth date", ident["birth_date"], get("PID.F7")[:8])
    v.expect(artifact, "PID-8 sex", ident["sex"], get("PID.F8"))
    if order_fields:
        v.expect(artifact, "OBR-4.1 procedure code", ident["procedure_code"], get("OBR.F4.R1.C1"))
        v.expect(artifact, "OBR-4.2 description", ident["description"], get("OBR.F4.R1.C2"))
        v.expect(artifact, "OBR-18 accession", ident["accession_number"], get("OBR.F18"))
        v.expect(artifact, "OBR-19 requested procedure ID", ident["requested_procedure_id"], get("OBR.F19"))
        if get("ZDS.F1.R1.C1") or artifact == "orm":
            v.expect(artifact, "ZDS-1.1 Study Instance UID", ident["study_instance_uid"], get("ZDS.F1.R1.C1"))
            v.expect(artifact, "ZDS-2 body part", ident["body_part"], get("ZDS.F2"))
            v.expect(artifact, "ZDS-3 laterality", ident["laterality"], get("ZDS.F3"))


def _get(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _first(ds: Dataset, sequence: str) -> Dataset | None:
    seq = ds.get(sequence)
    return seq[0] if seq else None


def _check_patient(v: Verification, artifact: str, ds: Dataset, ident: dict) -> None:
    v.expect(artifact, "PatientID", ident["patient_id"], _get(ds, "PatientID"))
    v.expect(artifact, "PatientName", ident["patient_name"], _get(ds, "PatientName"))
    if "PatientBirthDate" in ds:
        v.expect(artifact, "PatientBirthDate", ident["birth_date"], _get(ds, "PatientBirthDate"))
    if "PatientSex" in ds:
        v.expect(artifact, "PatientSex", ident["sex"], _get(ds, "PatientSex"))


def _check_worklist(v: Verification, artifact: str, ds: Dataset, ident: dict, *, partial: bool) -> None:
    v.count(artifact)
    _check_patient(v, artifact, ds, ident)
    for keyword, key in (("AccessionNumber", "accession_number"), ("StudyInstanceUID", "study_instance_uid"),
                         ("RequestedProcedureID", "requested_procedure_id"),
                         ("RequestedProcedureDescription", "description")):
        if not partial or keyword in ds:
            v.expect(artifact, keyword, ident[key], _get(ds, keyword))
    code = _first(ds, "RequestedProcedureCodeSequence")
    if code is not None or not partial:
        v.expect(artifact, "RequestedProcedureCodeSequence[0].CodeValue", ident["procedure_code"],
                 _get(code, "CodeValue") if code is not None else "")
    sps = _first(ds, "ScheduledProcedureStepSequence")
    if sps is not None or not partial:
        v.expect(artifact, "ScheduledProcedureStepSequence[0].Modality", ident["modality"],
                 _get(sps, "Modality") if sps is not None else "")
        if sps is not None and ("ScheduledProcedureStepID" in sps or not partial):
            v.expect(artifact, "ScheduledProcedureStepID", ident["sps_id"], _get(sps, "ScheduledProcedureStepID"))


def _check_mpps(v: Verification, artifact: str, ds: Dataset, ident: dict) -> None:
    v.count(artifact)
    if "PatientID" in ds:
        _check_patient(v, artifact, ds, ident)
    if "Modality" in ds:
        v.expect(artifact, "Modality", ident["modality"], _get(ds, "Modality"))
    ssa = _first(ds, "ScheduledStepAttributesSequence")
    if ssa is not None:
        v.expect(artifact, "ScheduledStepAttributes StudyInstanceUID", ident["study_instance_uid"],
                 _get(ssa, "StudyInstanceUID"))
        v.expect(artifact, "ScheduledStepAttributes AccessionNumber", ident["accession_number"],
                 _get(ssa, "AccessionNumber"))
        v.expect(artifact, "ScheduledStepAttributes RequestedProcedureID", ident["requested_procedure_id"],
                 _get(ssa, "RequestedProcedureID"))
    code = _first(ds, "ProcedureCodeSequence")
    if code is not None:
        v.expect(artifact, "ProcedureCodeSequence[0].CodeValue", ident["procedure_code"], _get(code, "CodeValue"))
    if ident.get("pps_id") and "PerformedProcedureStepID" in ds:
        v.expect(artifact, "PerformedProcedureStepID", ident["pps_id"], _get(ds, "PerformedProcedureStepID"))


def _pps_start(ds: Dataset | None) -> tuple[str, str] | None:
    """PPS start date and time (C.4.14 in MPPS, C.7.3.1 in images) as the sender wrote them."""
    if ds is None or "PerformedProcedureStepStartDate" not in ds:
        return None
    return _get(ds, "PerformedProcedureStepStartDate"), _get(ds, "PerformedProcedureStepStartTime")


def _check_performed_step(v: Verification, artifact: str, ds: Dataset, ident: dict,
                          mpps_start: tuple[str, str] | None) -> None:
    """The image names the performed procedure step MPPS reported: its PPS ID, its MPPS SOP Instance UID
    (Referenced Performed Procedure Step Sequence) and its start date/time (PS3.3 C.7.3.1, C.4.14)."""
    if ident.get("pps_id"):
        v.expect(artifact, "PerformedProcedureStepID", ident["pps_id"], _get(ds, "PerformedProcedureStepID"))
    if ident.get("mpps_uid") and mpps_start is not None:  # an MPPS was created: the images reference it
        ref = _first(ds, "ReferencedPerformedProcedureStepSequence")
        v.expect(artifact, "ReferencedPerformedProcedureStep SOP Instance UID", ident["mpps_uid"],
                 _get(ref, "ReferencedSOPInstanceUID") if ref is not None else "")
    if mpps_start is not None:
        v.expect(artifact, "PerformedProcedureStepStartDate/Time (as in MPPS)", "/".join(mpps_start),
                 "/".join(_pps_start(ds) or ("", "")))


class _ImageChecks:
    """The images of one study, each checked; an image whose checked elements are those of one checked before
    (same transfer syntax, same VRs and value bytes) is given that image's results under its own name."""

    def __init__(self, v: Verification, ident: dict, mpps_start: tuple[str, str] | None) -> None:
        self.v, self.ident, self.mpps_start = v, ident, mpps_start
        self._results: dict[tuple, Verification] = {}  # the checked elements' bytes -> what checking them found

    def check(self, path: Path) -> tuple[str, Dataset | None] | None:
        """Check one file of the study: its SOP Instance UID and its dataset if it is a document (else None),
        or None if unreadable."""
        artifact = f"dicom {path.name}"
        try:
            walked = file_elements(path, _WALKED_TAGS)
        except OSError:
            walked = None  # pydicom reports it below
        key = None
        if walked is not None:
            transfer_syntax, values = walked
            key = (transfer_syntax, *sorted((tag, *value) for tag, value in values.items() if tag != _SOP_INSTANCE_UID))
            found = self._results.get(key)
            vr, sop_instance = values.get(_SOP_INSTANCE_UID, (b"", b""))
            if found is not None and vr in (b"UI", b""):  # decoded as pydicom decodes a UI (implicit VR: UI too)
                self.v.add(found, artifact)
                return str(convert_UI(sop_instance, True)), None
        result = Verification()
        checked = _check_dicom_file(result, path, self.ident, self.mpps_start)
        self.v.add(result)
        if checked is not None and checked[1] is None and key is not None:
            self._results[key] = result
        return checked


def _check_dicom_file(v: Verification, path: Path, ident: dict,
                      mpps_start: tuple[str, str] | None = None) -> tuple[str, Dataset | None] | None:
    """Check one file of the study with pydicom: its SOP Instance UID and its dataset if it is a document (else
    None), or None if unreadable."""
    artifact = f"dicom {path.name}"
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_DICOM_TAGS)
    except (InvalidDicomError, OSError, ValueError) as exc:
        v.mismatches.append({"artifact": artifact, "field": "file", "expected": "a readable DICOM file",
                             "actual": str(exc)})
        return None
    if _get(ds, "SOPClassUID") in DOCUMENT_MODALITY:
        _check_document(v, artifact, ds, ident)
        return _get(ds, "SOPInstanceUID"), ds
    v.count("dicom")
    _check_patient(v, artifact, ds, ident)
    for keyword, key in (("AccessionNumber", "accession_number"), ("StudyInstanceUID", "study_instance_uid"),
                         ("StudyDescription", "description")):
        v.expect(artifact, keyword, ident[key], _get(ds, keyword))
    # a PET/CT order (PS3.3 A.21) sends its attenuation-correction series as CT images in the same study
    allowed = {ident["modality"], "CT"} if ident["modality"] == "PT" else {ident["modality"]}
    if _get(ds, "Modality") not in allowed:
        v.expect(artifact, "Modality", ident["modality"], _get(ds, "Modality"))
    v.expect(artifact, "BodyPartExamined", body_part_examined(ident["body_part"]), _get(ds, "BodyPartExamined"))
    side = ident["laterality"]
    lat, img_lat = _get(ds, "Laterality"), _get(ds, "ImageLaterality")
    if side in ("R", "L"):
        if (lat or img_lat) != side or (lat and img_lat and img_lat != side):
            v.expect(artifact, "Laterality/ImageLaterality", side, f"{lat}/{img_lat}")
    elif side == "B" or ident["body_part"] in IMAGED_BY_SIDE:
        # both sides: each series shows one side (Laterality R/L) or both (Image Laterality B)
        if lat not in ("", "R", "L") or img_lat not in ("", "B", "R", "L") or not (lat or img_lat):
            v.expect(artifact, "Laterality/ImageLaterality", "R/L per series or B", f"{lat}/{img_lat}")
    else:
        if lat or img_lat not in ("", "U"):
            v.expect(artifact, "Laterality/ImageLaterality", "none (unpaired body part)", f"{lat}/{img_lat}")
    request = _first(ds, "RequestAttributesSequence")
    if request is None:
        v.expect(artifact, "RequestAttributesSequence", "present", "")
    else:
        v.expect(artifact, "RequestAttributes RequestedProcedureID", ident["requested_procedure_id"],
                 _get(request, "RequestedProcedureID"))
        v.expect(artifact, "RequestAttributes ScheduledProcedureStepID", ident["sps_id"],
                 _get(request, "ScheduledProcedureStepID"))
        if "AccessionNumber" in request:
            v.expect(artifact, "RequestAttributes AccessionNumber", ident["accession_number"],
                     _get(request, "AccessionNumber"))
    code = _first(ds, "ProcedureCodeSequence")
    if code is not None:
        v.expect(artifact, "ProcedureCodeSequence[0].CodeValue", ident["procedure_code"], _get(code, "CodeValue"))
    _check_performed_step(v, artifact, ds, ident, mpps_start)
    return _get(ds, "SOPInstanceUID"), None


def _check_document(v: Verification, artifact: str, ds: Dataset, ident: dict) -> None:
    """A document of the study (dose SR, KOS, text SR, PDF): the patient and study identity of the images,
    its IOD's Modality, the order it answers (Referenced Request Sequence, PS3.3 C.17.2.1) and the MPPS
    that acquired the images (Referenced Performed Procedure Step Sequence). Its evidence references are
    compared with the images afterwards (:func:`_check_evidence`)."""
    v.count("document")
    _check_patient(v, artifact, ds, ident)
    for keyword, key in (("AccessionNumber", "accession_number"), ("StudyInstanceUID", "study_instance_uid"),
                         ("StudyDescription", "description")):
        v.expect(artifact, keyword, ident[key], _get(ds, keyword))
    v.expect(artifact, "Modality (of the document IOD)", DOCUMENT_MODALITY[_get(ds, "SOPClassUID")],
             _get(ds, "Modality"))
    request = _first(ds, "ReferencedRequestSequence")
    if request is not None:
        for keyword, key in (("AccessionNumber", "accession_number"), ("StudyInstanceUID", "study_instance_uid"),
                             ("RequestedProcedureID", "requested_procedure_id")):
            v.expect(artifact, f"ReferencedRequest {keyword}", ident[key], _get(request, keyword))
    ref = _first(ds, "ReferencedPerformedProcedureStepSequence")
    if ref is not None:
        v.expect(artifact, "ReferencedPerformedProcedureStep SOP Instance UID", ident.get("mpps_uid", ""),
                 _get(ref, "ReferencedSOPInstanceUID"))


def _evidence_uids(ds: Dataset) -> set[str]:
    return {str(sop.ReferencedSOPInstanceUID) for study in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
            for series in study.get("ReferencedSeriesSequence", []) for sop in series.get("ReferencedSOPSequence", [])}


def _check_evidence(v: Verification, path: Path, ds: Dataset, image_uids: set[str]) -> None:
    """The images a document cites (Current Requested Procedure Evidence, Table C.17-3) are images of the study."""
    unknown = _evidence_uids(ds) - image_uids
    if unknown:
        v.expect(f"dicom {path.name}", "CurrentRequestedProcedureEvidenceSequence", "instances of the generated study",
                 f"{len(unknown)} unknown SOP Instance UID(s)")


def verify_patient(files: PatientFiles, study_dir: Path | None) -> Verification:
    """Verify every artifact of one patient story against its ``order.json``."""
    v = Verification()
    ident = files.read_json("order.json")
    if ident is None:
        v.mismatches.append({"artifact": "order.json", "field": "file", "expected": "present", "actual": "missing"})
        return v
    for name, artifact, order_fields in (("adt.hl7", "adt", False), ("orm.hl7", "orm", True),
                                         ("oru.hl7", "oru", True), ("cancel.hl7", "cancel", True)):
        text = files.read_text(name)
        if text is not None:
            _check_hl7(v, artifact, text, ident, order_fields=order_fields)
    for name, partial in (("worklist.json", False), ("worklist-found.json", True)):
        ds = files.read_dataset(name)
        if ds is not None:
            _check_worklist(v, name.removesuffix(".json"), ds, ident, partial=partial)
    mpps_create, mpps_set = files.read_dataset("mpps-create.json"), files.read_dataset("mpps-set.json")
    for name, ds in (("mpps-create", mpps_create), ("mpps-set", mpps_set)):
        if ds is not None:
            _check_mpps(v, name, ds, ident)
    sop_uids: set[str] = set()
    documents: dict[str, tuple[Path, Dataset]] = {}  # SOP Instance UID -> file, dataset
    if study_dir is not None and study_dir.exists():
        images = _ImageChecks(v, ident, _pps_start(mpps_create))
        for path in sorted(study_dir.glob("*.dcm")):
            checked = images.check(path)
            if checked is None:
                continue
            uid, document = checked
            if document is not None:
                documents[uid] = (path, document)
            elif uid:
                sop_uids.add(uid)
    for path, document in documents.values():
        _check_evidence(v, path, document, sop_uids)
    pacs = files.read_json("pacs-verify.json")  # VERIFY_PACS: what the PACS answered, compared with what was sent
    if isinstance(pacs, dict):
        v.count("pacs")
        v.mismatches.extend(d for d in pacs.get("differences", []) if isinstance(d, dict))
    if mpps_set is not None and sop_uids:
        referenced = {item.ReferencedSOPInstanceUID for series in mpps_set.get("PerformedSeriesSequence", [])
                      for item in series.get("ReferencedImageSequence", [])}
        unknown = referenced - sop_uids
        if unknown:
            v.expect("mpps-set", "ReferencedImageSequence", "instances of the generated study",
                     f"{len(unknown)} unknown SOP Instance UID(s)")
        listed = {item.ReferencedSOPInstanceUID for series in mpps_set.get("PerformedSeriesSequence", [])
                  for item in series.get("ReferencedNonImageCompositeSOPInstanceSequence", [])}
        if listed - set(documents):
            v.expect("mpps-set", "ReferencedNonImageCompositeSOPInstanceSequence", "documents of the generated study",
                     f"{len(listed - set(documents))} unknown SOP Instance UID(s)")
    return v
