"""Worklist items (PS3.4 K.6 / IHE RAD-5): return keys, identity, character set, .wl files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pydicom
import pytest

from generators.terms import CodingScheme, Modality
from generators.worklist import (
    MWL_FIND_SOP_CLASS_UID,
    PROTOCOL_CODING_SCHEME,
    SPS_KEYS,
    TOP_LEVEL_KEYS,
    build_worklist_item,
    protocol_code_value,
    query_dataset,
    write_worklist_file,
)
from generators.types import Code, PersonName, Provider
from tests.examples import EXAMS, order_for

ALL_MODALITIES = list(EXAMS)

# PS3.4 Table K.6-1 return keys of Type 1 (must carry a value in every item).
TYPE_1_TOP = ("PatientName", "PatientID", "RequestedProcedureID", "StudyInstanceUID", "RequestedProcedureDescription")
TYPE_1_SPS = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
)


@pytest.mark.parametrize("modality", ALL_MODALITIES)
def test_it_carries_every_return_key_of_table_k6_1(modality: Modality) -> None:
    ds = build_worklist_item(order_for(modality))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    for keyword in TOP_LEVEL_KEYS:
        assert keyword in ds, keyword
    assert len(ds.ScheduledProcedureStepSequence) == 1
    sps = ds.ScheduledProcedureStepSequence[0]
    for keyword in SPS_KEYS:
        assert keyword in sps, keyword
    for keyword in TYPE_1_TOP:
        assert ds[keyword].value, keyword
    for keyword in TYPE_1_SPS:
        assert sps[keyword].value, keyword
    assert sps.ScheduledProcedureStepStatus == "SCHEDULED"


@pytest.mark.parametrize("modality", ALL_MODALITIES)
def test_it_carries_the_identity_of_the_order(modality: Modality) -> None:
    order = order_for(modality)
    ds = build_worklist_item(order)
    sps = ds.ScheduledProcedureStepSequence[0]
    assert ds.StudyInstanceUID == order.study_instance_uid
    assert ds.AccessionNumber == order.accession_number
    assert ds.PatientID == order.patient.mrn
    assert ds.IssuerOfPatientID == order.patient.issuer
    assert ds.RequestedProcedureID == order.requested_procedure_id
    assert ds.AdmissionID == order.visit_number
    assert ds.RequestedProcedurePriority == order.priority.dicom
    assert ds.ReferringPhysicianName == order.referring.name.dicom
    assert sps.Modality == modality.value
    assert sps.ScheduledProcedureStepID == order.sps_id
    assert sps.ScheduledStationAETitle == order.station_ae_title
    assert sps.ScheduledProcedureStepDescription == order.exam.description
    assert sps.ScheduledProcedureStepStartDate == order.scheduled_at.strftime("%Y%m%d")
    assert sps.ScheduledProcedureStepStartTime == order.scheduled_at.strftime("%H%M%S")


def test_the_requested_procedure_code_is_the_primary_cpt_code() -> None:
    order = order_for(Modality.MR)
    (code,) = build_worklist_item(order).RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("73721", "C4")
    assert code.CodeMeaning == order.exam.primary_code.display


def test_code_meanings_longer_than_lo_are_clipped_to_64_characters() -> None:
    base = order_for(Modality.US)
    long_code = Code("76700", CodingScheme.CPT, "Ultrasound, abdominal, real time with image documentation; complete")
    order = replace(base, exam=replace(base.exam, codes=(long_code,)))
    assert len(order.exam.primary_code.display) > 64
    (code,) = build_worklist_item(order).RequestedProcedureCodeSequence
    assert len(code.CodeMeaning) <= 64
    assert order.exam.primary_code.display.startswith(code.CodeMeaning)


def test_there_is_one_protocol_code_per_series_with_the_full_name_as_meaning() -> None:
    order = order_for(Modality.CT)
    codes = build_worklist_item(order).ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence
    assert [c.CodeMeaning for c in codes] == [s.protocol_name for s in order.exam.series]
    assert {c.CodingSchemeDesignator for c in codes} == {PROTOCOL_CODING_SCHEME}


def test_long_protocol_names_get_distinct_deterministic_sh_code_values() -> None:
    a = "BRAIN_AX_T2_FLAIR_FATSAT_3MM"
    b = "BRAIN_AX_T2_FLAIR_FATSAT_5MM"
    assert len(protocol_code_value(a)) <= 16
    assert protocol_code_value(a) == protocol_code_value(a)
    assert protocol_code_value(a) != protocol_code_value(b)
    assert protocol_code_value("KNEE_SAG_PD_FS") == "KNEE_SAG_PD_FS"


def test_a_long_protocol_code_survives_hl7_unchanged() -> None:
    """OBR-4.4 carries the code: it must need no HL7 escaping, or the order and worklist disagree."""
    from generators.vr import hl7_escape

    code = protocol_code_value("US-ABD-APPENDIX-PEDS")
    assert len(code) <= 16 and hl7_escape(code) == code


def test_contrast_exams_name_the_requested_contrast_agent() -> None:
    ct = build_worklist_item(order_for(Modality.CT)).ScheduledProcedureStepSequence[0]
    mr = build_worklist_item(order_for(Modality.MR)).ScheduledProcedureStepSequence[0]
    assert ct.RequestedContrastAgent == "Iohexol 350 mgI/mL"
    assert mr.RequestedContrastAgent in (None, "")


def test_the_performing_physician_given_becomes_the_scheduled_performing_physician() -> None:
    performer = Provider("1112223334", PersonName("ÅSTRÖM", "LINNÉA", suffix="MD"))
    sps = build_worklist_item(order_for(Modality.MR), performing=performer).ScheduledProcedureStepSequence[0]
    assert str(sps.ScheduledPerformingPhysicianName) == "ÅSTRÖM^LINNÉA^^^MD"


def test_a_wl_file_round_trips_the_non_ascii_patient_name(tmp_path: Path) -> None:
    order = order_for(Modality.MR)
    path = write_worklist_file(build_worklist_item(order), tmp_path)
    assert path == tmp_path / f"{order.accession_number}.wl"
    assert path.stat().st_mode & 0o044 == 0o044  # readable by a worklist server running as another user
    back = pydicom.dcmread(path)
    assert str(back.PatientName) == "O'BRIEN-NÚÑEZ^ZOË^ANNE"
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.file_meta.MediaStorageSOPClassUID == MWL_FIND_SOP_CLASS_UID
    assert back.StudyInstanceUID == order.study_instance_uid
    # The UTF-8 bytes are really on disk (not an ASCII-folded name).
    assert "O'BRIEN-NÚÑEZ".encode() in path.read_bytes()


def test_rewriting_an_item_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    ds = build_worklist_item(order_for(Modality.DX))
    first = write_worklist_file(ds, tmp_path)
    ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus = "ARRIVED"
    second = write_worklist_file(ds, tmp_path)
    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    assert pydicom.dcmread(second).ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "ARRIVED"


def test_a_failed_write_leaves_neither_a_wl_nor_a_temporary_file(tmp_path: Path) -> None:
    ds = build_worklist_item(order_for(Modality.DX))
    with pytest.warns(UserWarning, match="VR US"):
        ds.PregnancyStatus = 70000  # US cannot encode it: the write fails half way
    with pytest.raises(OSError):  # what pydicom raises for an unencodable element
        write_worklist_file(ds, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_item_without_accession_number_cannot_be_written(tmp_path: Path) -> None:
    ds = build_worklist_item(order_for(Modality.DX))
    ds.AccessionNumber = ""
    with pytest.raises(ValueError, match="AccessionNumber"):
        write_worklist_file(ds, tmp_path)


def test_query_dataset_asks_for_every_return_key_and_puts_sps_keys_in_the_item() -> None:
    query = query_dataset(PatientID="MRN0012345", Modality="MR", ScheduledProcedureStepStartDate="20261125-")
    sps = query.ScheduledProcedureStepSequence[0]
    assert query.PatientID == "MRN0012345"
    assert sps.Modality == "MR"
    assert sps.ScheduledProcedureStepStartDate == "20261125-"
    assert "Modality" not in query
    for keyword in TOP_LEVEL_KEYS:
        assert keyword in query
    for keyword in SPS_KEYS:
        assert keyword in sps
    # Everything not given is a zero-length (universal) key.
    assert query.AccessionNumber in (None, "")
    assert len(query.RequestedProcedureCodeSequence) == 0


def test_query_dataset_rejects_unknown_keywords() -> None:
    with pytest.raises(ValueError, match="not a DICOM keyword"):
        query_dataset(PatientIdentifier="X")


def test_the_item_is_a_valid_c_find_identifier_after_encoding(tmp_path: Path) -> None:
    # Explicit VR encoding checks every value fits its VR (e.g. SH lengths of code values).
    ds = build_worklist_item(order_for(Modality.MG))
    path = write_worklist_file(ds, tmp_path)
    back = pydicom.dcmread(path)
    for elem in back.iterall():
        if elem.VR in ("SH", "AE", "CS"):
            assert all(len(str(v)) <= 16 for v in (elem.value if elem.VM > 1 else [elem.value]) if v), elem
        if elem.VR == "LO":
            assert elem.value is None or len(str(elem.value)) <= 64, elem
