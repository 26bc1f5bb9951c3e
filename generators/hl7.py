"""HL7 v2 messages of the radiology chain: ADT^A04/A01, ORM^O01 (new/cancel), ORU^R01.

Builders are pure: an :class:`~generators.types.Order` (the identity set minted once), the sender /
receiver config, the message time and the control ID in; an ER7 string with ``\\r`` segment
terminators out. Nothing is inferred from text: every field comes from the order, its exam and
patient, or the report.

Standards followed (HL7 v2.5.1 chapters 2, 3, 4 and 7; 2.3.1 selectable with the same field
positions) and IHE RAD TF-2 (RAD-1 Patient Registration, RAD-4 Procedure Scheduled, RAD-13
Procedure Update, the ZDS segment). Decisions where the standards leave a choice:

* Every value that comes from data passes through :func:`escape` (HL7 2.5.1 §2.7.4): names,
  addresses, descriptions, IDs, the indication and the config names. Single-line data types (ST,
  components) get line breaks folded to spaces; report text is FT and keeps its line breaks as the
  ``\\.br\\`` formatting escape (§2.7.6), one OBX per report section (findings, impression).
* MSH-18 is ``UNICODE UTF-8`` (table 0211, 2.5.1) because names carry non-ASCII letters; for 2.3.1,
  whose table 0211 predates that value, it is ``UNICODE`` (the only Unicode value 2.3.1 defines).
  The bytes on the wire must be UTF-8 either way (the MLLP transport encodes the returned str).
* PID-19 carries the (always 9xx, never issued) SSN in both versions: 2.5.1 keeps PID-19 "for
  backward compatibility" and US receivers still read it there; PID-3 carries only the MRN, so a
  receiver that takes the first PID-3 repetition cannot pick the SSN by mistake.
* OBR-31 reason for study is CE ``icd10^text^I10``: table 0396 of 2.5.1 has no ICD-10-CM entry
  (``I10C`` appears only in later versions), ``I10`` (ICD-10) is the family it belongs to.
  OBR-13 repeats the indication as free text for receivers that only show OBR-13.
* OBR-4, OBR-24 and OBR-44 follow IHE RAD TF-2 RAD-4 (the order → worklist mapping of its ORM table) as
  dcm4chee-arc maps an order to a worklist item: OBR-4.1-3 the universal service (the primary procedure
  code, the exam description, its coding system); OBR-4.4-6, the CE alternate triplet, the **scheduled
  protocol** (Scheduled Protocol Code Sequence: the exam's protocol code in the simulator's private
  scheme ``99YEETER``, as the worklist and MPPS code it); OBR-24 diagnostic service section the **DICOM
  modality** (CT, MR, US, ...), which receivers copy into the SPS Modality (0008,0060) — HL7 table 0074
  codes such as ``NMR`` or ``RUS`` would end up in the worklist as modalities no modality knows; OBR-44
  the **requested procedure code** (Requested Procedure Code Sequence: code^meaning^scheme).
* ORM^O01 in 2.5.1 has no TQ1 segment in its structure, so priority and start time travel in the
  TQ fields ORC-7 and OBR-27 (``^^^start^^priority``) in both versions, as IHE RAD-4 does.
* ORC-5 order status (table 0038): ``SC`` (scheduled) for a new order (the order carries its
  scheduled procedure step), ``CA`` for a cancel, ``CM`` in the ORU.
* ZDS-1 is the Study Instance UID as IHE RAD TF-2 defines it (RP:
  ``uid^sending application^Application^DICOM``); ZDS-2..5 are the simulator's exam metadata
  (body part, laterality, estimated duration in minutes, series count). ZDS ends ORM and ORU.

:func:`validate` parses with hl7apy at ``VALIDATION_LEVEL.STRICT`` and runs its full validator; it
costs milliseconds per message and is never called by the builders.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from generators.reports import Report
from generators.terms import CareSetting, Modality
from generators.types import Code, Order, PersonName, Provider
from generators.vr import hl7_escape, hl7_escape_ft
from generators.worklist import protocol_code_item

Version = Literal["2.5.1", "2.3.1"]
VERSIONS: tuple[str, ...] = ("2.5.1", "2.3.1")
ENCODING_CHARACTERS = "^~\\&"

# Report section codes for OBX-3: the LOINC section codes DICOM PS3.20 uses for imaging reports.
FINDINGS_CODE = ("59776-5", "Procedure Findings", "LN")
IMPRESSION_CODE = ("19005-8", "Impression", "LN")
ICD10_CODING_SYSTEM = "I10"

# Where the patient is, by care setting (PV1-3 point of care).
_POINT_OF_CARE: dict[CareSetting, str] = {
    CareSetting.OUTPATIENT: "RAD",
    CareSetting.INPATIENT: "WARD",
    CareSetting.EMERGENCY: "ED",
}


class HL7ValidationError(ValueError):
    """A message failed strict hl7apy validation; ``str()`` lists hl7apy's reasons, one per line."""


@dataclass(frozen=True, slots=True)
class HL7Config:
    """Sender / receiver identity (MSH-3..6), version (MSH-12) and processing ID (MSH-11)."""

    sending_application: str = "YEETER"
    sending_facility: str = "YEETER_HOSP"
    receiving_application: str = "RIS"
    receiving_facility: str = "YEETER_HOSP"
    version: Version = "2.5.1"
    processing_id: str = "P"

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"HL7 version must be one of {', '.join(VERSIONS)}, not {self.version!r}.")


# --- encoding helpers --------------------------------------------------------------------------------

def escape(value: object) -> str:
    """Escape HL7 delimiters in a single-line value (HL7 2.5.1 §2.7.4: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``).

    Line breaks have no place in ST/ID/component values and are folded to spaces; control characters
    are dropped. The cleaning is :func:`generators.vr.hl7_escape`, shared with the DICOM side.
    """
    return hl7_escape(value)


def escape_ft(text: str) -> str:
    """Escape formatted text (FT): delimiters as in :func:`escape`, line breaks as ``\\.br\\`` (§2.7.6)."""
    return hl7_escape_ft(text)


def _c(*components: object) -> str:
    """One field of escaped components, trailing empty components trimmed (§2.5.3)."""
    return "^".join(escape(c) for c in components).rstrip("^")


def _sub(*subcomponents: object) -> str:
    """One component of escaped subcomponents, trailing empty ones trimmed."""
    return "&".join(escape(s) for s in subcomponents).rstrip("&")


def _segment(name: str, fields: dict[int, str]) -> str:
    """A segment from already-encoded fields keyed by their sequence number (MSH counts MSH-1 as ``|``)."""
    first = 2 if name == "MSH" else 1
    last = max(fields)
    return name + "|" + "|".join(fields.get(i, "") for i in range(first, last + 1))


def _ts(moment: dt.datetime) -> str:
    """HL7 TS/DTM ``YYYYMMDDHHMMSS[+/-ZZZZ]`` (offset only when the datetime is aware)."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def _xpn(name: PersonName) -> str:
    """XPN ``family^given^middle^suffix^prefix^^L`` (name type L = legal, table 0200)."""
    return _c(name.family, name.given, name.middle, name.suffix, name.prefix, "", "L")


def _xcn(provider: Provider) -> str:
    """XCN ``id^family^given^middle^suffix^prefix``. ``PersonName.suffix`` (e.g. MD) goes to XCN-5 as it goes
    to the DICOM PN suffix; the IDs are NPI-shaped but not issued, so no XCN-9/13 claims an authority."""
    n = provider.name
    return _c(provider.id, n.family, n.given, n.middle, n.suffix, n.prefix)


def _procedure_ce(order: Order) -> str:
    """OBR-4 universal service ID (IHE RAD TF-2 RAD-4): CE-1..3 the primary procedure code, the exam
    description and its coding system (C4 = CPT); CE-4..6 the scheduled protocol (see the module docstring)."""
    primary: Code = order.procedure_code
    protocol = protocol_code_item(order.exam.id)
    return _c(primary.code, order.description, primary.scheme.value,
              protocol.CodeValue, order.exam.name, protocol.CodingSchemeDesignator)


def _procedure_code(order: Order) -> str:
    """OBR-44 procedure code (CE, HL7 2.5.1 §4.5.3.44; IHE RAD-4 Requested Procedure Code Sequence)."""
    code = order.procedure_code
    return _c(code.code, code.display, code.scheme.value)


def _tq(order: Order) -> str:
    """TQ ``^^^start^^priority`` (ORC-7 / OBR-27): scheduled start and table 0027 priority."""
    return _c("", "", "", _ts(order.scheduled_at), "", order.priority.value)


def _phone_xtn(phone: str) -> str:
    """XTN ``(NNN)NNN-NNNN^PRN^PH^^1^area^local`` (home number; 2.5.1 also reads XTN-5..7)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) != 10:
        return _c(phone, "PRN", "PH")
    formatted = f"({digits[:3]}){digits[3:6]}-{digits[6:]}"
    return _c(formatted, "PRN", "PH", "", "1", digits[:3], digits[3:])


# --- segments ----------------------------------------------------------------------------------------


def _msh(config: HL7Config, now: dt.datetime, message_type: tuple[str, str, str], control_id: str) -> str:
    charset = "UNICODE UTF-8" if config.version == "2.5.1" else "UNICODE"
    return _segment(
        "MSH",
        {
            2: ENCODING_CHARACTERS,
            3: _c(config.sending_application),
            4: _c(config.sending_facility),
            5: _c(config.receiving_application),
            6: _c(config.receiving_facility),
            7: _ts(now),
            9: _c(*message_type),
            10: _c(control_id),
            11: _c(config.processing_id),
            12: config.version,
            18: charset,
        },
    )


def _pid(order: Order) -> str:
    """PID (HL7 2.5.1 §3.4.2): MRN with assigning authority, name, birth date, sex, address, phone, SSN."""
    p = order.patient
    a = p.address
    return _segment(
        "PID",
        {
            1: "1",
            3: _c(p.mrn, "", "", p.issuer, "MR"),
            5: _xpn(p.name),
            7: p.birth_date.strftime("%Y%m%d"),
            8: _c(p.sex.value),
            11: _c(a.street, "", a.city, a.state, a.postal_code, a.country, "H"),
            13: _phone_xtn(p.phone),
            19: _c(p.ssn),
        },
    )


def _pv1(order: Order) -> str:
    """PV1 (§3.4.3): PV1-2 patient class from the care setting, PV1-3 location, PV1-8 referring doctor,
    PV1-19 visit number, PV1-44 admit time. PV1-10 hospital service is left empty: table 0069 is
    user-defined and its suggested values (CAR, MED, PUL, SUR, URO) have no radiology entry."""
    return _segment(
        "PV1",
        {
            1: "1",
            2: order.setting.patient_class,
            3: _c(_POINT_OF_CARE[order.setting], "", "", order.facility),
            8: _xcn(order.referring),
            19: _c(order.visit_number, "", "", order.facility, "VN"),
            44: _ts(order.ordered_at),
        },
    )


def _orc(order: Order, *, control: str, status: str, now: dt.datetime) -> str:
    """ORC (§4.5.1): ORC-1 control, ORC-2/3 placer/filler, ORC-5 status, ORC-7 timing, ORC-9 time,
    ORC-12 ordering provider."""
    return _segment(
        "ORC",
        {
            1: control,
            2: _c(order.placer_order_number),
            3: _c(order.filler_order_number),
            5: status,
            7: _tq(order),
            9: _ts(now),
            12: _xcn(order.referring),
        },
    )


def _reasons(order: Order) -> str:
    """OBR-31 Reason for Study (CWE, repeating, §4.5.3.31): the primary diagnosis, then the secondary one
    (an injury's external cause, a smoking history) as a second repetition."""
    return "~".join(_c(code, text, ICD10_CODING_SYSTEM) for code, text in order.indication.codes)


def _obr(order: Order, *, report: Report | None = None) -> str:
    """OBR (§4.5.3, §7.4.1) as IHE RAD TF-2 RAD-4 uses it: OBR-18 accession, OBR-19 requested procedure ID,
    OBR-20 scheduled procedure step ID; results fields when ``report`` is given."""
    fields = {
        1: "1",
        2: _c(order.placer_order_number),
        3: _c(order.filler_order_number),
        4: _procedure_ce(order),
        13: _c(order.indication.text),
        16: _xcn(order.referring),
        18: _c(order.accession_number),
        19: _c(order.requested_procedure_id),
        20: _c(order.sps_id),
        24: _c(order.modality.value),  # the DICOM modality (IHE RAD-4, module docstring)
        27: _tq(order),
        31: _reasons(order),
        36: _ts(order.scheduled_at),
        44: _procedure_code(order),
    }
    if report is not None:
        r = report.radiologist
        fields[7] = _ts(order.scheduled_at)
        fields[22] = _ts(report.signed_at)
        fields[25] = report.status
        # OBR-32 principal result interpreter: NDL whose first component is a CNN in subcomponents.
        fields[32] = _sub(r.id, r.name.family, r.name.given, r.name.middle, r.name.suffix, r.name.prefix)
    return _segment("OBR", fields)


def _obx(set_id: int, code: tuple[str, str, str], text: str, report: Report) -> str:
    """OBX (§7.4.2): one FT observation per report section, OBX-11 result status, OBX-16 observer."""
    return _segment(
        "OBX",
        {
            1: str(set_id),
            2: "FT",
            3: _c(*code),
            4: "1",
            5: escape_ft(text),
            11: report.status,
            14: _ts(report.signed_at),
            16: _xcn(report.radiologist),
        },
    )


def _zds(order: Order, config: HL7Config) -> str:
    """ZDS as IHE RAD TF-2 (RAD-4) defines it: ZDS-1 Study Instance UID as RP ``uid^application^Application^DICOM``;
    ZDS-2..5 body part, laterality, estimated duration (min) and series count (the simulator's exam metadata)."""
    exam = order.exam
    return _segment(
        "ZDS",
        {
            1: _c(order.study_instance_uid, config.sending_application, "Application", "DICOM"),
            2: _c(exam.body_part),
            3: _c(exam.laterality.value),
            4: str(exam.estimated_duration_min),
            5: str(len(exam.series)),
        },
    )


def _message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


# --- builders ----------------------------------------------------------------------------------------


def build_adt(order: Order, *, config: HL7Config, now: dt.datetime, control_id: str) -> str:
    """ADT^A04^ADT_A01 (register outpatient / emergency patient) or ADT^A01^ADT_A01 (inpatient admit).

    HL7 2.5.1 §3.3.1 / §3.3.4, IHE RAD-1 Patient Registration: MSH, EVN, PID, PV1.
    """
    trigger = "A01" if order.setting is CareSetting.INPATIENT else "A04"
    evn = _segment("EVN", {1: trigger, 2: _ts(now), 6: _ts(order.ordered_at)})
    return _message(
        _msh(config, now, ("ADT", trigger, "ADT_A01"), control_id),
        evn,
        _pid(order),
        _pv1(order),
    )


def build_orm(
    order: Order,
    *,
    config: HL7Config,
    now: dt.datetime,
    control_id: str,
    order_control: str = "NW",
) -> str:
    """ORM^O01^ORM_O01 new order (``order_control="NW"``) or cancel (``"CA"``).

    HL7 2.5.1 §4.4.1 / IHE RAD-4 Procedure Scheduled and RAD-13 Procedure Update (cancel):
    MSH, PID, PV1, ORC, OBR, ZDS.
    """
    statuses = {"NW": "SC", "CA": "CA"}
    if order_control not in statuses:
        raise ValueError(f"ORM order control must be NW or CA, not {order_control!r}.")
    return _message(
        _msh(config, now, ("ORM", "O01", "ORM_O01"), control_id),
        _pid(order),
        _pv1(order),
        _orc(order, control=order_control, status=statuses[order_control], now=now),
        _obr(order),
        _zds(order, config),
    )


def build_oru(order: Order, report: Report, *, config: HL7Config, now: dt.datetime, control_id: str) -> str:
    """ORU^R01^ORU_R01 final report: MSH, PID, PV1, ORC (RE), OBR (OBR-25 F), one FT OBX per report
    section (findings, impression; OBX-11 F), ZDS. HL7 2.5.1 §7.3.1."""
    return _message(
        _msh(config, now, ("ORU", "R01", "ORU_R01"), control_id),
        _pid(order),
        _pv1(order),
        _orc(order, control="RE", status="CM", now=now),
        _obr(order, report=report),
        _obx(1, FINDINGS_CODE, report.findings, report),
        _obx(2, IMPRESSION_CODE, report.impression, report),
        _zds(order, config),
    )


# --- validation --------------------------------------------------------------------------------------
#
# hl7apy 1.3.5 is the strict reference, but three of its gaps would either reject valid messages or,
# worse, accept invalid ones. Each is handled narrowly:
#
# 1. ORM^O01's OBR/RQD/RQ1/RXO/ODS/ODT group is modelled as a 'choice' but validated like a
#    sequence, so every absent member is reported as a missing required child. HL7 2.5.1 §4.4.1
#    (and 2.3.1) make it a choice: exactly one member. Those errors are dropped only for a group that
#    holds exactly one member; an empty group or one with two members still fails.
# 2. With find_groups=True the parser silently DROPS every segment it cannot place in the message
#    structure (misplaced standard segments and all Z segments). validate() therefore checks that the
#    parsed tree holds exactly the input's standard segments in order, and checks Z segments on their
#    own (HL7 2.5.1 §2.8: Z segments are site-defined and may appear anywhere; hl7apy knows none).
# 3. OBX-5 (data type 'varies') is always parsed as ST with its 199-character limit, ignoring OBX-2.
#    For OBX-2 = FT or TX the value is checked with hl7apy's own FT / TX data type (65,536
#    characters, no component or subcomponent separators in a primitive type), then replaced by a
#    short stand-in value so the rest of the segment is still parsed and validated strictly.
#
# 4. Table 0396 (coding system) defines ``99zzz`` as a local coding system, but hl7apy knows only the listed
#    values; a table-0396 warning is dropped for a value of the form 99 + alphanumerics only.
# 5. IHE RAD TF-2 RAD-4 puts the DICOM modality into OBR-24 (module docstring), where hl7apy checks HL7 table
#    0074; the warning is dropped for OBR-24 values that are DICOM modalities the simulator sends only.
#
# On top of hl7apy, two IHE RAD TF-2 rules the simulator relies on: every ORM^O01 order carries an
# OBR (RAD-4/RAD-13), and ZDS-1 is a Study Instance UID reference ``uid^app^Application^DICOM``.

_ORM_CHOICE_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "2.5.1": ("ORM_O01_OBRRQDRQ1RXOODSODT_SUPPGRP", ("OBR", "RQD", "RQ1", "RXO", "ODS", "ODT")),
    "2.3.1": ("ORM_O01_CHOICE", ("OBR", "RQD", "RQ1", "ODS", "ODT", "RXO")),
}
_TEXT_VALUE_TYPES = ("FT", "TX")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")  # DICOM PS3.5 §9.1
_Z_NAME = re.compile(r"^Z[A-Z0-9]{2}$")
_LOCAL_CODING_SYSTEM = re.compile(r"^Warning: Value 99[A-Za-z0-9]+ not in table HL70396 in element ")
_OBR24_MODALITY = re.compile(r"^Warning: Value (?P<value>[A-Z]+) not in table HL70074 in element OBR\.OBR_24$")


def _walk(element: Any) -> Iterator[Any]:
    """Every element of a parsed message's group tree, depth first, in document order."""
    yield element
    if element.classname in ("Message", "Group"):
        for child in element.children:
            yield from _walk(child)


def _spurious_choice_errors(parsed: Any) -> set[str]:
    """hl7apy's "Missing required child" lines for ORM choice groups that hold exactly one member."""
    group_name, members = _ORM_CHOICE_GROUPS.get(parsed.version, ("", ()))
    ignore: set[str] = set()
    for element in _walk(parsed):
        if element.name == group_name:
            present = [m for m in members if element.children.get(m)]
            if len(present) == 1:
                ignore.update(f"Missing required child {group_name}.{m}" for m in members if m != present[0])
    return ignore


def _table_override(line: str) -> bool:
    """A table warning that the standards the simulator follows override (gaps 4 and 5)."""
    if _LOCAL_CODING_SYSTEM.match(line):
        return True
    match = _OBR24_MODALITY.match(line)
    return match is not None and match["value"] in {m.value for m in Modality}


def _check_obx_text(segment: str, problems: list[str]) -> str:
    """Validate an FT/TX OBX-5 as FT/TX and return the segment with a stand-in OBX-5 (gap 3)."""
    from hl7apy.base_datatypes import FT, TX
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException

    fields = segment.split("|")
    if len(fields) <= 5 or fields[2] not in _TEXT_VALUE_TYPES:
        return segment
    datatype = FT if fields[2] == "FT" else TX
    for repetition in fields[5].split("~"):
        if "^" in repetition or "&" in repetition:
            problems.append(f"Error: OBX-5 of type {fields[2]} contains an unescaped component separator")
        try:
            datatype(repetition, validation_level=VALIDATION_LEVEL.STRICT)
        except HL7apyException as exc:
            problems.append(f"Error: OBX-5 is not a valid {fields[2]}: {exc}")
    fields[5] = fields[2]
    return "|".join(fields)


def _check_z_segment(segment: str, problems: list[str]) -> None:
    """Z segments are site-defined (HL7 2.5.1 §2.8), so hl7apy has no structure for them (in STRICT it
    even refuses components in their fields); the one the simulator sends, ZDS, is checked against
    its IHE RAD TF-2 definition and the simulator's extension instead."""
    fields = segment.split("|")
    if not _Z_NAME.match(fields[0]):
        problems.append(f"Error: {fields[0]!r} is not a valid Z segment name")
        return
    if fields[0] != "ZDS":
        return
    uid_ref = fields[1].split("^") if len(fields) > 1 else []
    uid_ok = len(uid_ref) == 4 and bool(_UID.match(uid_ref[0])) and len(uid_ref[0]) <= 64
    if not uid_ok or uid_ref[2:] != ["Application", "DICOM"]:
        problems.append("Error: ZDS-1 is not a Study Instance UID reference uid^application^Application^DICOM")
    if len(fields) > 3 and fields[3] not in ("", "R", "L", "B"):
        problems.append(f"Error: ZDS-3 laterality {fields[3]!r} is not R, L, B or empty")
    for position in (4, 5):
        if len(fields) > position and fields[position] and not fields[position].isdigit():
            problems.append(f"Error: ZDS-{position} {fields[position]!r} is not a whole number")


def validate(message: str) -> None:
    """Validate ``message`` with hl7apy at its strictest level; raise :class:`HL7ValidationError` if invalid.

    Parses with ``VALIDATION_LEVEL.STRICT`` and ``find_groups=True`` (segments must sit in the
    groups of the message structure named in MSH-9.3), then runs hl7apy's validator and treats every
    error *and* warning as a failure: cardinalities, unknown or misplaced segments, data types, and
    coded values against hl7apy's HL7 tables. hl7apy's known gaps (see the comment above) are
    closed narrowly, and the IHE RAD rules the simulator relies on are checked. The exception's text
    lists every reason, one per line. Costs a few milliseconds: never called by the builders.
    """
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message
    from hl7apy.validation import Validator

    segments = [s for s in message.split("\r") if s]
    if not segments or not segments[0].startswith("MSH|"):
        raise HL7ValidationError("Error: the message does not start with an MSH segment")
    problems: list[str] = []
    standard: list[str] = []
    z_segments: list[str] = []
    for segment in segments:
        if segment.startswith("Z"):
            z_segments.append(segment)
        elif segment.startswith("OBX|"):
            standard.append(_check_obx_text(segment, problems))
        else:
            standard.append(segment)
    try:
        parsed = parse_message(
            "\r".join(standard) + "\r", validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
        )
    except HL7apyException as exc:
        problems.append(f"Error: hl7apy cannot parse the message strictly: {exc}")
        raise HL7ValidationError("\n".join(problems)) from exc

    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.txt"
        try:
            Validator.validate(parsed, report_file=str(report_path))
        except HL7apyException:
            pass  # hl7apy raises only the first error; the report file lists them all
        report = [line for line in report_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ignore = _spurious_choice_errors(parsed)
    problems.extend(line for line in report if line.removeprefix("Error: ") not in ignore
                    and not _table_override(line))

    placed = [e.name for e in _walk(parsed) if e.classname == "Segment"]
    expected = [s[:3] for s in standard]
    if placed != expected:
        problems.append(
            f"Error: segments {expected} do not fit the {parsed.name} structure (hl7apy placed only {placed})"
        )
    if parsed.name == "ORM_O01":
        for element in _walk(parsed):
            if element.name == "ORM_O01_ORDER" and not any(e.name == "OBR" for e in _walk(element)):
                problems.append("Error: an ORM^O01 order has no OBR segment (IHE RAD TF-2 RAD-4/RAD-13)")
    for segment in z_segments:
        _check_z_segment(segment, problems)
    if problems:
        raise HL7ValidationError("\n".join(problems))
