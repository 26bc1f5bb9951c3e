"""The built-in receivers as a small RIS: an HL7 order becomes a Modality Worklist item (IHE RAD-4 -> RAD-5).

:func:`order_action` reads an ORM^O01 (HL7 v2.5.1 or 2.3.1, from Yeeter or any sender) and says
what the worklist must do, as dcm4chee-arc's HL7 order service does it (its default Order Control
map): ORC-1 ``NW`` creates the item, ``XO`` replaces it, ``CA``/``OC`` remove it, ``DC``/``OD``
discontinue it; ``SC`` with ORC-5 ``IP``/``CM``/``DC``/``CA`` moves its status. The item is built
field by field as IHE RAD TF-2 Appendix B maps an order to MWL attributes (dcm4chee-arc's
``hl7-order2dcm.xsl`` as the reference implementation):

====================================================  =============================================
MWL attribute (PS3.4 Table K.6-1)                     HL7 field
====================================================  =============================================
PatientName / PatientID / IssuerOfPatientID           PID-5 (XPN -> PN) / PID-3.1 / PID-3.4.1
PatientBirthDate / PatientSex                         PID-7 (date part) / PID-8
AdmissionID / CurrentPatientLocation                  PV1-19.1 / PV1-3.1
ReferringPhysicianName                                PV1-8 (XCN -> PN)
RequestingPhysician                                   OBR-16, else ORC-12 (XCN -> PN)
Placer / Filler Order Number Imaging Service Request  ORC-2.1 / ORC-3.1 (else OBR-2.1 / OBR-3.1)
AccessionNumber                                       OBR-18
RequestedProcedureID                                  OBR-19
RequestedProcedureCodeSequence                        OBR-44 (CE), else OBR-4.1-3
RequestedProcedureDescription                         OBR-4.2 (the order text; else OBR-44.2)
RequestedProcedurePriority                            TQ1-9, else OBR-27.6 / ORC-7.6 (S STAT, A HIGH, R ROUTINE)
ReasonForTheRequestedProcedure (+ code sequence)      OBR-31 (CE), else OBR-13
StudyInstanceUID                                      ZDS-1.1 (minted when the order has no ZDS)
> Modality                                            OBR-24 (a DICOM modality; HL7 table 0074 sections
                                                      with one DICOM meaning, NMR/RUS/NMS, are translated)
> ScheduledProcedureStepID                            OBR-20
> ScheduledProcedureStepStartDate/Time                TQ1-7, else OBR-27.4 / ORC-7.4, else OBR-36
> ScheduledProcedureStepDescription                   OBR-4.2
> ScheduledProtocolCodeSequence                       OBR-4.4-6 (dcm4chee-arc's default)
> ScheduledStationAETitle                             the RIS's configuration per modality (no HL7 field)
> ScheduledProcedureStepStatus                        SCHEDULED
====================================================  =============================================

Every return key of :data:`generators.worklist.TOP_LEVEL_KEYS` / ``SPS_KEYS`` is present (zero
length when the order has no value), as the worklist SCP answers them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import hl7
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from generators.dicom_common import SPECIFIC_CHARACTER_SET, code_item, dicom_date, dicom_time
from generators.terms import Modality
from generators.vr import MAX_LENGTH, clip
from generators.worklist import SPS_KEYS, TOP_LEVEL_KEYS
from generators.worklist import _fill  # the one way a worklist item's key lists are filled

Operation = Literal["create", "replace", "remove", "status", "ignore"]

# dcm4chee-arc's default Order Control (Order Status) map: ORC-1 [ORC-5] -> what happens to the item.
_ORDER_CONTROL: dict[tuple[str, str], tuple[Operation, str]] = {
    ("NW", ""): ("create", "SCHEDULED"),
    ("XO", ""): ("replace", "SCHEDULED"),
    ("CA", ""): ("remove", "DISCONTINUED"),
    ("OC", ""): ("remove", "DISCONTINUED"),
    ("DC", ""): ("status", "DISCONTINUED"),
    ("OD", ""): ("status", "DISCONTINUED"),
    ("SC", "IP"): ("status", "IN PROGRESS"),
    ("SC", "CM"): ("status", "COMPLETED"),
    ("SC", "DC"): ("status", "DISCONTINUED"),
    ("SC", "CA"): ("remove", "DISCONTINUED"),
}
# HL7 table 0074 sections that name exactly one DICOM modality (RX could be CR, DX or MG: not guessed).
_SECTION_MODALITY = {"NMR": "MR", "RUS": "US", "NMS": "NM", "CT": "CT", "MR": "MR", "US": "US", "NM": "NM"}
_PRIORITY = {"S": "STAT", "A": "HIGH", "R": "ROUTINE", "P": "ROUTINE", "T": "HIGH"}
_SEX = {"M": "M", "F": "F", "O": "O"}
_SH = MAX_LENGTH["SH"]


class OrderError(ValueError):
    """The message is not an order the RIS can schedule; the text names the field."""


@dataclass(frozen=True)
class OrderAction:
    """What an order asks of the worklist: ``operation`` on the item of ``accession_number``."""

    operation: Operation
    status: str
    accession_number: str
    item: Dataset | None  # the worklist item for create/replace
    modality: str = ""
    scheduled_at: dt.datetime | None = None


def _get(msg: hl7.Message, path: str) -> str:
    """The unescaped value at ``path`` (``"OBR.F4.R1.C2"``), empty when the message has none."""
    try:
        return str(msg[path]).strip()
    except (KeyError, IndexError, ValueError):
        return ""


def _has(msg: hl7.Message, segment: str) -> bool:
    try:
        msg.segment(segment)
    except KeyError:
        return False
    return True


def _pn(family: str, given: str, middle: str, prefix: str, suffix: str) -> str:
    """DICOM PN (PS3.5 6.2.1) ``family^given^middle^prefix^suffix`` without trailing empty components."""
    return "^".join((family, given, middle, prefix, suffix)).rstrip("^")


def _xpn(msg: hl7.Message, field: str) -> str:
    # XPN: family (FN.1) ^ given ^ middle ^ suffix ^ prefix; DICOM orders prefix before suffix.
    return _pn(_get(msg, f"{field}.R1.C1.S1") or _get(msg, f"{field}.R1.C1"), _get(msg, f"{field}.R1.C2"),
               _get(msg, f"{field}.R1.C3"), _get(msg, f"{field}.R1.C5"), _get(msg, f"{field}.R1.C4"))


def _xcn(msg: hl7.Message, field: str) -> str:
    # XCN: id ^ family ^ given ^ middle ^ suffix ^ prefix.
    return _pn(_get(msg, f"{field}.R1.C2.S1") or _get(msg, f"{field}.R1.C2"), _get(msg, f"{field}.R1.C3"),
               _get(msg, f"{field}.R1.C4"), _get(msg, f"{field}.R1.C6"), _get(msg, f"{field}.R1.C5"))


def _code(value: str, meaning: str, scheme: str) -> Dataset | None:
    if not value:
        return None
    # "L": a local code (HL7 table 0396)
    return code_item(clip(value, "SH"), clip(scheme or "L", "SH"), meaning or value)


def _ts(text: str) -> dt.datetime | None:
    """HL7 TS/DTM (``YYYYMMDD[HHMM[SS]]`` and an optional zone) as a naive local datetime."""
    digits = text.split("+")[0].split("-")[0].split(".")[0]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return dt.datetime.strptime(digits, fmt)
        except ValueError:
            continue
    return None


def _modality(section: str) -> str:
    if section in {m.value for m in Modality} or section in ("OT", "XA", "RF", "PT", "SR"):
        return section
    return _SECTION_MODALITY.get(section, section[:_SH])


def order_action(text: str, *, station_ae_titles: dict[str, str] | None = None) -> OrderAction | None:
    """What the ORM^O01 ``text`` asks of the worklist; None for other messages (ADT, ORU: not orders).

    Raises :class:`OrderError` naming the field when an order cannot be scheduled (no accession
    number in OBR-18, an order control code the RIS does not handle).
    """
    try:
        msg = hl7.parse(text)
    except Exception as exc:  # noqa: BLE001 - python-hl7 raises assorted errors on bad input
        raise OrderError(f"unreadable HL7 message: {exc}") from None
    if _get(msg, "MSH.F9.R1.C1") != "ORM" or _get(msg, "MSH.F9.R1.C2") != "O01":
        return None
    if not _has(msg, "OBR"):
        raise OrderError("ORM^O01 without an OBR segment: nothing to schedule (IHE RAD-4)")
    control, status = _get(msg, "ORC.F1"), _get(msg, "ORC.F5")
    mapped = _ORDER_CONTROL.get((control, status)) or _ORDER_CONTROL.get((control, ""))
    if mapped is None:
        raise OrderError(f"ORC-1 order control {control!r} (ORC-5 {status!r}) is not one the RIS handles")
    operation, new_status = mapped
    accession = _get(msg, "OBR.F18")
    if not accession:
        raise OrderError("OBR-18 accession number is empty: the RIS cannot schedule an order without it")
    if len(accession) > _SH:
        raise OrderError(f"OBR-18 accession number {accession!r} is longer than 16 characters (DICOM SH)")
    if operation not in ("create", "replace"):
        return OrderAction(operation, new_status, accession, None)
    item, modality, start = _worklist_item(msg, station_ae_titles or {})
    return OrderAction(operation, new_status, accession, item, modality, start)


def _worklist_item(msg: hl7.Message, stations: dict[str, str]) -> tuple[Dataset, str, dt.datetime | None]:
    start = next((t for t in (_ts(_get(msg, p)) for p in ("TQ1.F7.R1.C1", "OBR.F27.R1.C4", "ORC.F7.R1.C4",
                                                           "OBR.F36")) if t is not None), None)
    modality = _modality(_get(msg, "OBR.F24"))
    requested = (_code(_get(msg, "OBR.F44.R1.C1"), _get(msg, "OBR.F44.R1.C2"), _get(msg, "OBR.F44.R1.C3"))
                 or _code(_get(msg, "OBR.F4.R1.C1"), _get(msg, "OBR.F4.R1.C2"), _get(msg, "OBR.F4.R1.C3")))
    # The order's text (OBR-4.2) is the Requested Procedure Description, as the catalog's description is both;
    # OBR-44.2 is the code's display name and goes with the code (Requested Procedure Code Sequence).
    description = _get(msg, "OBR.F4.R1.C2") or _get(msg, "OBR.F44.R1.C2")
    protocol = _code(_get(msg, "OBR.F4.R1.C4"), _get(msg, "OBR.F4.R1.C5"), _get(msg, "OBR.F4.R1.C6"))
    reason = _code(_get(msg, "OBR.F31.R1.C1"), _get(msg, "OBR.F31.R1.C2"), _get(msg, "OBR.F31.R1.C3"))
    priority = _get(msg, "TQ1.F9.R1.C1") or _get(msg, "OBR.F27.R1.C6") or _get(msg, "ORC.F7.R1.C6")

    sps_values = {
        "Modality": modality,
        "ScheduledStationAETitle": stations.get(modality, stations.get("*", "")),
        "ScheduledProcedureStepStartDate": dicom_date(start) if start else "",
        "ScheduledProcedureStepStartTime": dicom_time(start) if start else "",
        "ScheduledProcedureStepDescription": clip(_get(msg, "OBR.F4.R1.C2")),
        "ScheduledProtocolCodeSequence": [protocol] if protocol else None,
        "ScheduledProcedureStepID": clip(_get(msg, "OBR.F20"), "SH"),
        "ScheduledProcedureStepStatus": "SCHEDULED",
    }
    top_values = {
        "RequestedProcedureID": clip(_get(msg, "OBR.F19"), "SH"),
        "RequestedProcedureDescription": clip(description),
        "RequestedProcedureCodeSequence": [requested] if requested else None,
        "StudyInstanceUID": _get(msg, "ZDS.F1.R1.C1") or generate_uid(),  # the RIS mints it when nobody did
        "RequestedProcedurePriority": _PRIORITY.get(priority, ""),
        "ReasonForTheRequestedProcedure": clip(_get(msg, "OBR.F31.R1.C2") or _get(msg, "OBR.F13")),
        "ReasonForRequestedProcedureCodeSequence": [reason] if reason else None,
        "AccessionNumber": _get(msg, "OBR.F18"),
        "RequestingPhysician": _xcn(msg, "OBR.F16") or _xcn(msg, "ORC.F12"),
        "ReferringPhysicianName": _xcn(msg, "PV1.F8"),
        "PlacerOrderNumberImagingServiceRequest": clip(_get(msg, "ORC.F2.R1.C1") or _get(msg, "OBR.F2.R1.C1")),
        "FillerOrderNumberImagingServiceRequest": clip(_get(msg, "ORC.F3.R1.C1") or _get(msg, "OBR.F3.R1.C1")),
        "AdmissionID": clip(_get(msg, "PV1.F19.R1.C1")),
        "CurrentPatientLocation": clip(_get(msg, "PV1.F3.R1.C1")),
        "PatientName": _xpn(msg, "PID.F5"),
        "PatientID": clip(_get(msg, "PID.F3.R1.C1")),
        "IssuerOfPatientID": clip(_get(msg, "PID.F3.R1.C4.S1") or _get(msg, "PID.F3.R1.C4")),
        "PatientBirthDate": _get(msg, "PID.F7")[:8],
        "PatientSex": _SEX.get(_get(msg, "PID.F8"), ""),
    }
    sps = Dataset()
    _fill(sps, SPS_KEYS, sps_values)
    ds = Dataset()
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    _fill(ds, TOP_LEVEL_KEYS, {**top_values, "ScheduledProcedureStepSequence": [sps]})
    return ds, modality, start


__all__ = ["OrderAction", "OrderError", "order_action"]
