"""HL7 v2 builders: strict validation, field positions, escaping, determinism, validator strictness."""

from __future__ import annotations

import dataclasses
import itertools
import datetime as dt
import random
from collections.abc import Callable

import hl7
import pytest

from generators.hl7 import (
    HL7Config,
    HL7ValidationError,
    build_adt,
    build_orm,
    build_oru,
    escape,
    escape_ft,
    validate,
)
from generators.reports import Report, build_report
from generators.terms import CareSetting, Modality, Priority
from generators.types import Order
from generators.worklist import protocol_code_item
from tests.examples import EXAMS, FIXED_NOW, INDICATION, PATIENT, order_for

VERSIONS = ("2.5.1", "2.3.1")
NOW = FIXED_NOW + dt.timedelta(minutes=5)


def _control_ids():
    """Unique MSH-10 values for the messages of one test (runs draw theirs from the patient plan)."""
    return (f"T{n:07d}" for n in itertools.count(1))


def _report(order: Order, seed: int = 3) -> Report:
    return build_report(order, random.Random(seed), now=NOW)


def _messages(order: Order, config: HL7Config) -> dict[str, str]:
    """Every message type the simulator sends for ``order``."""
    ids = _control_ids()
    return {
        "ADT": build_adt(order, config=config, now=NOW, control_id=next(ids)),
        "ORM NW": build_orm(order, config=config, now=NOW, control_id=next(ids)),
        "ORM CA": build_orm(order, config=config, now=NOW, control_id=next(ids), order_control="CA"),
        "ORU": build_oru(order, _report(order), config=config, now=NOW, control_id=next(ids)),
    }


def _field(message: str, segment: str, position: int) -> str:
    """The raw (still escaped) ER7 text of one field, counting MSH-1 as the field separator."""
    for line in message.split("\r"):
        if line.startswith(segment + "|"):
            fields = line.split("|")
            return fields[position - 1] if segment == "MSH" else fields[position]
    raise AssertionError(f"no {segment} segment")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("modality", list(EXAMS))
def test_every_message_type_validates_strictly_and_parses_with_python_hl7(version: str, modality: Modality) -> None:
    order = order_for(modality)
    for kind, message in _messages(order, HL7Config(version=version)).items():
        validate(message)  # raises HL7ValidationError with hl7apy's reasons
        parsed = hl7.parse(message)
        assert str(parsed.segment("MSH")[12]) == version, kind
        assert message.endswith("\r") and "\n" not in message


def test_the_msh_carries_config_type_control_id_version_and_utf8() -> None:
    config = HL7Config("SIM", "SIM_FAC", "PACS", "PACS_FAC", "2.5.1", "T")
    order = order_for(Modality.CT)
    message = build_orm(order, config=config, now=NOW, control_id="CTRL0001")
    msh = hl7.parse(message).segment("MSH")
    assert [str(msh[i]) for i in (3, 4, 5, 6)] == ["SIM", "SIM_FAC", "PACS", "PACS_FAC"]
    assert str(msh[7]) == "20261125093500"
    assert str(msh[9]) == "ORM^O01^ORM_O01"
    assert str(msh[10]) == "CTRL0001"
    assert str(msh[11]) == "T"
    assert str(msh[18]) == "UNICODE UTF-8"
    old = build_orm(order, config=dataclasses.replace(config, version="2.3.1"), now=NOW, control_id="C")
    assert _field(old, "MSH", 18) == "UNICODE"  # table 0211 of 2.3.1 has no "UNICODE UTF-8"


def test_the_control_id_is_not_the_accession_and_is_unique_across_messages() -> None:
    ids = _control_ids()
    control_ids = []
    for modality in EXAMS:
        order = order_for(modality)
        report = _report(order)
        for version in VERSIONS:
            config = HL7Config(version=version)
            for message in (
                build_adt(order, config=config, now=NOW, control_id=next(ids)),
                build_orm(order, config=config, now=NOW, control_id=next(ids)),
                build_oru(order, report, config=config, now=NOW, control_id=next(ids)),
            ):
                control_id = _field(message, "MSH", 10)
                assert control_id != order.accession_number
                control_ids.append(control_id)
    assert len(set(control_ids)) == len(control_ids) == len(EXAMS) * 2 * 3
    assert all(len(c) <= 20 for c in control_ids)


def test_pid_fields_sit_at_their_hl7_positions() -> None:
    order = order_for(Modality.MR)
    message = build_orm(order, config=HL7Config(), now=NOW, control_id="C1")
    parsed = hl7.parse(message)
    pid = parsed.segment("PID")
    assert str(pid[3]) == "MRN0012345^^^YEETER_HOSP^MR"
    assert parsed.unescape(str(pid[5][0][0])) == PATIENT.name.family
    assert [str(pid[5][0][i]) for i in (1, 2)] == ["ZOË", "ANNE"]
    assert str(pid[7]) == "19680314"
    assert str(pid[8]) == "F"
    assert parsed.unescape(str(pid[11][0][0])) == PATIENT.address.street
    assert [str(pid[11][0][i]) for i in (2, 3, 4, 5)] == ["Springfield", "IL", "62701", "USA"]
    assert str(pid[13][0][0]) == "(217)555-0142"
    assert [str(pid[13][0][i]) for i in (5, 6)] == ["217", "5550142"]
    assert str(pid[19]) == PATIENT.ssn


def test_orm_order_fields_follow_hl7_and_ihe_rad_positions() -> None:
    order = order_for(Modality.MR)
    message = build_orm(order, config=HL7Config(), now=NOW, control_id="C1")
    parsed = hl7.parse(message)
    orc, obr = parsed.segment("ORC"), parsed.segment("OBR")
    assert str(orc[1]) == "NW" and str(orc[5]) == "SC"
    assert str(orc[2]) == order.placer_order_number and str(orc[3]) == order.filler_order_number
    assert str(orc[12][0][0]) == order.referring.id
    assert str(obr[2]) == order.placer_order_number and str(obr[3]) == order.filler_order_number
    assert [str(obr[4][0][i]) for i in range(3)] == ["73721", order.exam.description, "C4"]
    assert str(obr[4][0][5]) == "99YEETER"  # OBR-4.4-6: the scheduled protocol, not a LOINC alternate
    assert str(obr[16][0][0]) == order.referring.id and str(obr[16][0][1]) == order.referring.name.family
    assert str(obr[18]) == order.accession_number
    assert str(obr[19]) == order.requested_procedure_id
    assert str(obr[20]) == order.sps_id
    assert str(obr[24]) == "MR"
    assert str(obr[31][0][0]) == INDICATION.icd10 and str(obr[31][0][2]) == "I10"
    start = order.scheduled_at.strftime("%Y%m%d%H%M%S")
    assert str(obr[27]) == f"^^^{start}^^{order.priority.value}"
    assert str(orc[7]) == str(obr[27])


@pytest.mark.parametrize("priority", list(Priority))
def test_the_priority_goes_into_the_quantity_timing(priority: Priority) -> None:
    order = dataclasses.replace(order_for(Modality.CT), priority=priority)
    message = build_orm(order, config=HL7Config(version="2.3.1"), now=NOW, control_id="C1")
    assert _field(message, "OBR", 27).split("^")[5] == priority.value
    assert _field(message, "ORC", 7).split("^")[5] == priority.value


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("modality", list(EXAMS))
def test_the_order_maps_to_a_worklist_item_as_ihe_rad_4_and_dcm4chee_arc_map_it(version: str,
                                                                                  modality: Modality) -> None:
    """OBR-24 the DICOM modality, OBR-44 the requested procedure code, OBR-4.4-6 the scheduled protocol."""
    from hl7apy.parser import parse_message

    order = order_for(modality)
    message = build_orm(order, config=HL7Config(version=version), now=NOW, control_id="C")
    validate(message)
    obr = parse_message(message, find_groups=False).obr
    assert obr.obr_24.value == modality.value  # a DICOM modality, not an HL7 table 0074 code such as NMR
    code = order.exam.primary_code
    assert [obr.obr_44.ce_1.value, obr.obr_44.ce_2.value, obr.obr_44.ce_3.value] == [
        code.code, code.display, code.scheme.value]
    protocol = protocol_code_item(order.exam.id)
    assert [obr.obr_4.ce_1.value, obr.obr_4.ce_3.value] == [code.code, code.scheme.value]
    assert [obr.obr_4.ce_4.value, obr.obr_4.ce_5.value, obr.obr_4.ce_6.value] == [
        protocol.CodeValue, order.exam.name, "99YEETER"]
    assert "LN" not in obr.obr_4.value  # no LOINC alternate in the protocol's place


def test_validation_still_rejects_an_obr_24_that_is_neither_a_dicom_modality_nor_in_table_0074() -> None:
    message = build_orm(order_for(Modality.CT), config=HL7Config(), now=NOW, control_id="C")
    fields = message.split("\r")
    obr = next(i for i, seg in enumerate(fields) if seg.startswith("OBR|"))
    parts = fields[obr].split("|")
    parts[24] = "XX"
    fields[obr] = "|".join(parts)
    with pytest.raises(HL7ValidationError, match="HL70074"):
        validate("\r".join(fields))


def test_zds_carries_the_study_instance_uid_as_ihe_defines_it_and_the_exam_metadata() -> None:
    order = order_for(Modality.MR)
    for message in (
        build_orm(order, config=HL7Config(sending_application="SIMX"), now=NOW, control_id="C"),
        build_oru(order, _report(order), config=HL7Config(sending_application="SIMX"), now=NOW, control_id="C"),
    ):
        zds = hl7.parse(message).segment("ZDS")
        assert [str(zds[1][0][i]) for i in range(4)] == [order.study_instance_uid, "SIMX", "Application", "DICOM"]
        assert str(zds[2]) == "KNEE" and str(zds[3]) == "R"
        assert str(zds[4]) == "35" and str(zds[5]) == "3"


def test_cancel_uses_order_control_ca_with_the_same_identifiers() -> None:
    order = order_for(Modality.CT)
    new = build_orm(order, config=HL7Config(), now=NOW, control_id="C1")
    cancel = build_orm(order, config=HL7Config(), now=NOW, control_id="C2", order_control="CA")
    assert _field(cancel, "ORC", 1) == "CA" and _field(cancel, "ORC", 5) == "CA"
    assert _field(new, "ORC", 1) == "NW"
    assert _field(cancel, "OBR", 18) == _field(new, "OBR", 18) == order.accession_number
    with pytest.raises(ValueError, match="NW or CA"):
        build_orm(order, config=HL7Config(), now=NOW, control_id="C3", order_control="XO")


@pytest.mark.parametrize(
    ("setting", "patient_class", "trigger"),
    [(CareSetting.OUTPATIENT, "O", "A04"), (CareSetting.EMERGENCY, "E", "A04"), (CareSetting.INPATIENT, "I", "A01")],
)
def test_the_care_setting_drives_pv1_2_and_the_adt_trigger(
    setting: CareSetting, patient_class: str, trigger: str
) -> None:
    order = dataclasses.replace(order_for(Modality.CT), setting=setting)
    for version in VERSIONS:
        config = HL7Config(version=version)
        adt = build_adt(order, config=config, now=NOW, control_id="C1")
        validate(adt)
        assert _field(adt, "MSH", 9) == f"ADT^{trigger}^ADT_A01"
        assert _field(adt, "EVN", 1) == trigger
        for message in (adt, build_orm(order, config=config, now=NOW, control_id="C2")):
            assert _field(message, "PV1", 2) == patient_class
            assert _field(message, "PV1", 19).split("^")[0] == order.visit_number
            assert _field(message, "PV1", 8).split("^")[0] == order.referring.id


def test_oru_carries_one_final_ft_obx_per_report_section() -> None:
    order = order_for(Modality.MR)
    report = _report(order)
    message = build_oru(order, report, config=HL7Config(), now=NOW, control_id="C1")
    parsed = hl7.parse(message)
    obr = parsed.segment("OBR")
    assert str(obr[25]) == "F" and str(obr[18]) == order.accession_number
    assert str(obr[22]) == NOW.strftime("%Y%m%d%H%M%S")
    assert str(obr[32][0][0]).split("&")[:2] == [report.radiologist.id, report.radiologist.name.family]
    findings, impression = parsed.segments("OBX")
    assert str(findings[2]) == str(impression[2]) == "FT"
    assert str(findings[3]).startswith("59776-5^") and str(impression[3]).startswith("19005-8^")
    assert str(findings[11]) == str(impression[11]) == "F"
    # FT line breaks are \.br\ escapes (python-hl7 turns them back into \r)
    assert "\\.br\\" in str(findings[5])
    assert parsed.unescape(str(findings[5])) == report.findings.replace("\n", "\r")
    assert parsed.unescape(str(impression[5])) == report.impression.replace("\n", "\r")
    assert _field(message, "ORC", 1) == "RE"


def test_delimiters_in_names_addresses_indication_and_report_text_round_trip() -> None:
    tricky = "A|B^C&D~E\\F"
    patient = dataclasses.replace(
        PATIENT,
        name=dataclasses.replace(PATIENT.name, given=tricky),
        address=dataclasses.replace(PATIENT.address, city=tricky),
    )
    order = order_for(Modality.MR, patient=patient)
    order = dataclasses.replace(order, indication=dataclasses.replace(order.indication, text=tricky))
    report = dataclasses.replace(_report(order), impression=f"Line one {tricky}\nLine two")
    for version in VERSIONS:
        message = build_oru(order, report, config=HL7Config(version=version), now=NOW, control_id="C1")
        validate(message)
        parsed = hl7.parse(message)
        pid, obr, obx = parsed.segment("PID"), parsed.segment("OBR"), parsed.segments("OBX")[1]
        assert parsed.unescape(str(pid[5][0][0])) == "O'BRIEN-NÚÑEZ"
        assert parsed.unescape(str(pid[5][0][1])) == tricky
        assert parsed.unescape(str(pid[11][0][2])) == tricky
        assert parsed.unescape(str(obr[13])) == tricky
        assert parsed.unescape(str(obr[31][0][1])) == tricky
        assert parsed.unescape(str(obx[5])) == f"Line one {tricky}\rLine two"
        assert len(pid) == 20  # no delimiter leaked: PID still ends at PID-19


def test_the_example_patient_and_indication_are_escaped_exactly() -> None:
    message = build_orm(order_for(Modality.MR), config=HL7Config(), now=NOW, control_id="C1")
    assert _field(message, "PID", 11).startswith("12 Main St\\S\\Apt 3 \\T\\ 4^")
    assert _field(message, "OBR", 13) == "Right knee pain\\F\\locking, evaluate for meniscal tear"
    assert escape("a\\b") == "a\\E\\b" and escape("x~y") == "x\\R\\y" and escape("one\ntwo") == "one two"
    assert escape_ft("one\r\ntwo|") == "one\\.br\\two\\F\\"


@pytest.mark.parametrize("build", ["ADT", "ORM NW", "ORM CA", "ORU"])
def test_the_same_inputs_give_a_byte_identical_message(build: str) -> None:
    first = _messages(order_for(Modality.CT), HL7Config())[build]
    again = _messages(order_for(Modality.CT), HL7Config())[build]
    assert first.encode() == again.encode()
    other_now = build_adt(order_for(Modality.CT), config=HL7Config(), now=NOW + dt.timedelta(seconds=1), control_id="Y")
    assert other_now != _messages(order_for(Modality.CT), HL7Config())["ADT"]


def test_aware_timestamps_carry_their_utc_offset() -> None:
    aware = NOW.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    message = build_adt(order_for(Modality.DX), config=HL7Config(), now=aware, control_id="C1")
    assert _field(message, "MSH", 7) == "20261125093500-0500"
    validate(message)


def test_the_config_rejects_an_unsupported_version() -> None:
    with pytest.raises(ValueError, match="2.5.1, 2.3.1"):
        HL7Config(version="2.4")  # type: ignore[arg-type]


# --- the validator is strict: each workaround is narrow and real errors still fail -------------------

Mutation = Callable[[list[str]], list[str]]


def _orm_segments(version: str) -> list[str]:
    return build_orm(order_for(Modality.MR), config=HL7Config(version=version), now=NOW, control_id="C1").split("\r")


def _without(name: str) -> Mutation:
    return lambda segments: [s for s in segments if not s.startswith(name + "|")]


def _insert_after(name: str, new: str) -> Mutation:
    def mutate(segments: list[str]) -> list[str]:
        index = next(i for i, s in enumerate(segments) if s.startswith(name + "|"))
        return [*segments[: index + 1], new, *segments[index + 1 :]]

    return mutate


def _replace(old: str, new: str) -> Mutation:
    return lambda segments: [s.replace(old, new) for s in segments]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (_without("OBR"), "has no OBR"),  # the choice-group workaround must not hide a missing OBR
        (_insert_after("OBR", "ODS|D||REGULAR"), "Missing required child"),  # two members of the choice
        (_without("PID"), "Missing required child ORM_O01_PATIENT.PID"),
        (_insert_after("ORC", "EVN|A04|20261125"), "do not fit"),  # a segment the structure does not allow
        (_replace("|F|||12 Main", "|Q|||12 Main"), "not in table"),  # PID-8 sex outside table 0001
        (_replace("|NW|", "|ZZ|"), "not in table"),  # ORC-1 outside table 0119
        (_replace("^Application^DICOM", "^Application^DCM"), "ZDS-1"),  # IHE Study Instance UID reference
        (_replace("2.25.", "2.025."), "ZDS-1"),  # not a valid UID
    ],
)
def test_validation_still_fails_for_real_errors(version: str, mutation: Mutation, reason: str) -> None:
    segments = _orm_segments(version)
    validate("\r".join(segments))  # the unmutated message is valid
    with pytest.raises(HL7ValidationError, match=reason):
        validate("\r".join(mutation(segments)))


def test_validation_checks_report_text_as_ft_not_as_199_character_st() -> None:
    order = order_for(Modality.CT)
    long_report = dataclasses.replace(_report(order), findings="Lorem ipsum dolor sit amet. " * 40)
    message = build_oru(order, long_report, config=HL7Config(), now=NOW, control_id="C1")
    assert len(_field(message, "OBX", 5)) > 1000
    validate(message)
    broken = message.replace("Lorem ipsum", "Lorem^ipsum", 1)
    with pytest.raises(HL7ValidationError, match="unescaped component separator"):
        validate(broken)
    as_st = message.replace("|FT|59776-5", "|ST|59776-5")
    with pytest.raises(HL7ValidationError, match="max length"):
        validate(as_st)


def test_validation_rejects_a_message_without_msh() -> None:
    message = _messages(order_for(Modality.CT), HL7Config())["ADT"]
    with pytest.raises(HL7ValidationError, match="MSH"):
        validate(message.split("\r", 1)[1])


def test_generated_patients_with_any_name_validate_and_round_trip_in_every_message() -> None:
    from generators.identity import mint_order
    from generators.patients import generate_patient

    rng = random.Random(77)
    ids = _control_ids()
    exams = list(EXAMS.values())
    for i in range(14):
        exam = exams[i % len(exams)]
        patient = generate_patient(rng, today=FIXED_NOW.date(), sex=exam.required_sex, min_age=exam.min_age)
        order = mint_order(exam=exam, patient=patient, indication=INDICATION, rng=rng, now=FIXED_NOW)
        report = build_report(order, rng, now=NOW)
        config = HL7Config(version=VERSIONS[i % 2])
        for message in (
            build_adt(order, config=config, now=NOW, control_id=next(ids)),
            build_orm(order, config=config, now=NOW, control_id=next(ids)),
            build_oru(order, report, config=config, now=NOW, control_id=next(ids)),
        ):
            validate(message)
            parsed = hl7.parse(message)
            name = parsed.segment("PID")[5][0]
            assert [parsed.unescape(str(name[i])) for i in range(3)] == [
                patient.name.family, patient.name.given, patient.name.middle
            ]
            assert parsed.unescape(str(parsed.segment("PID")[11][0][0])) == patient.address.street


def test_obr_31_carries_the_secondary_diagnosis_as_a_second_repetition() -> None:
    """An injury's external cause (ICD-10-CM chapter 20) travels beside the injury in OBR-31."""
    from generators.types import Indication

    trauma = Indication("Head injury, motor vehicle collision", "S09.90XA", secondary_icd10="V43.52XA",
                        secondary_text="Car driver injured in collision with other car in traffic accident")
    order = dataclasses.replace(order_for(Modality.CT), indication=trauma)
    obr = hl7.parse(build_orm(order, config=HL7Config(), now=NOW, control_id="C1")).segment("OBR")
    reasons = [[str(rep[i]) for i in range(3)] for rep in obr[31]]
    assert reasons == [["S09.90XA", "Head injury, motor vehicle collision", "I10"],
                       ["V43.52XA", "Car driver injured in collision with other car in traffic accident", "I10"]]
    # no secondary code: one repetition, as before
    plain = hl7.parse(build_orm(order_for(Modality.CT), config=HL7Config(), now=NOW, control_id="C1")).segment("OBR")
    assert len(plain[31]) == 1
