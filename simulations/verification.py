"""Consistency verification: does everything a patient story actually sent tell the same story?

Compares the HL7 messages, the worklist item (as published and as the worklist SCP answered it),
the MPPS datasets and every DICOM file's header against the identity set minted for the order
(``order.json``): patient identity, accession, requested procedure / SPS ids, Study Instance UID,
modality, body part, laterality, description and procedure code; and, when a VERIFY_PACS step ran,
the differences between what the PACS holds and what was sent (``pacs-verify.json``). Works from the files of
:mod:`simulations.artifacts` alone, so ``manage.py verify_run`` can re-check a run at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hl7
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from simulations.artifacts import PatientFiles

_DICOM_TAGS = ["PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyInstanceUID",
               "Modality", "BodyPartExamined", "Laterality", "ImageLaterality", "StudyDescription",
               "RequestAttributesSequence", "ProcedureCodeSequence", "SOPInstanceUID", "SeriesInstanceUID"]


@dataclass
class Verification:
    mismatches: list[dict[str, str]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def expect(self, artifact: str, name: str, expected: Any, actual: Any) -> None:
        if str(expected or "") != str(actual or ""):
            self.mismatches.append({"artifact": artifact, "field": name, "expected": str(expected or ""),
                                    "actual": str(actual or "")})

    def count(self, artifact: str, n: int = 1) -> None:
        self.checked[artifact] = self.checked.get(artifact, 0) + n

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


def _check_dicom_file(v: Verification, path: Path, ident: dict) -> str | None:
    artifact = f"dicom {path.name}"
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_DICOM_TAGS)
    except (InvalidDicomError, OSError, ValueError) as exc:
        v.mismatches.append({"artifact": artifact, "field": "file", "expected": "a readable DICOM file",
                             "actual": str(exc)})
        return None
    v.count("dicom")
    _check_patient(v, artifact, ds, ident)
    for keyword, key in (("AccessionNumber", "accession_number"), ("StudyInstanceUID", "study_instance_uid"),
                         ("Modality", "modality"), ("BodyPartExamined", "body_part"),
                         ("StudyDescription", "description")):
        v.expect(artifact, keyword, ident[key], _get(ds, keyword))
    side = ident["laterality"]
    lat, img_lat = _get(ds, "Laterality"), _get(ds, "ImageLaterality")
    if side in ("R", "L"):
        if (lat or img_lat) != side or (lat and img_lat and img_lat != side):
            v.expect(artifact, "Laterality/ImageLaterality", side, f"{lat}/{img_lat}")
    elif side == "B":
        if lat not in ("", "B", "R", "L") or img_lat not in ("", "B", "R", "L"):
            v.expect(artifact, "Laterality/ImageLaterality", "B (or R/L per view)", f"{lat}/{img_lat}")
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
    return _get(ds, "SOPInstanceUID")


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
    for name in ("mpps-create.json", "mpps-set.json"):
        ds = files.read_dataset(name)
        if ds is not None:
            _check_mpps(v, name.removesuffix(".json"), ds, ident)
    sop_uids: set[str] = set()
    if study_dir is not None and study_dir.exists():
        for path in sorted(study_dir.glob("*.dcm")):
            uid = _check_dicom_file(v, path, ident)
            if uid:
                sop_uids.add(uid)
    pacs = files.read_json("pacs-verify.json")  # VERIFY_PACS: what the PACS answered, compared with what was sent
    if isinstance(pacs, dict):
        v.count("pacs")
        v.mismatches.extend(d for d in pacs.get("differences", []) if isinstance(d, dict))
    mpps_set = files.read_dataset("mpps-set.json")
    if mpps_set is not None and sop_uids:
        referenced = {item.ReferencedSOPInstanceUID for series in mpps_set.get("PerformedSeriesSequence", [])
                      for item in series.get("ReferencedImageSequence", [])}
        unknown = referenced - sop_uids
        if unknown:
            v.expect("mpps-set", "ReferencedImageSequence", "instances of the generated study",
                     f"{len(unknown)} unknown SOP Instance UID(s)")
    return v
