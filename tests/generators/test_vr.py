"""Hostile values (separators, control characters, over-long text) cleaned for their VR in one place."""

from __future__ import annotations

import dataclasses
import subprocess
from io import BytesIO
from pathlib import Path

import hl7
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from generators.dicom import write_study
from generators.hl7 import HL7Config, build_orm, validate
from generators.terms import Modality
from generators.types import Indication, PersonName
from generators.vr import clean_dataset, dicom_text, hl7_escape, hl7_escape_ft, plain, pn_component
from generators.worklist import build_worklist_item
from tests.conftest import require_binary
from tests.examples import FIXED_NOW, PATIENT, order_for

HOSTILE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    list("\\^=|&~\r\n\t\x00\x1b\x7f")), max_size=300)
CONTROLS = {chr(c) for c in range(32)} - {"\r", "\n", "\t"} | {"\x7f"}


def _roundtrip(ds: Dataset) -> Dataset:
    ds.SpecificCharacterSet = "ISO_IR 192"
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    return pydicom.dcmread(BytesIO(buffer.getvalue()), force=True)


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_a_long_string_never_splits_into_several_values_nor_keeps_control_characters(text: str) -> None:
    for vr, limit in (("LO", 64), ("SH", 16)):
        cleaned = dicom_text(text, vr)
        assert "\\" not in cleaned and len(cleaned) <= limit
        assert not (set(cleaned) & (CONTROLS | {"\r", "\n"}))
    ds = Dataset()
    ds.ReasonForTheRequestedProcedure = text
    ds.StationName = text
    read = _roundtrip(clean_dataset(ds))
    assert read["ReasonForTheRequestedProcedure"].VM <= 1 and read["StationName"].VM <= 1


@settings(max_examples=200, deadline=None)
@given(HOSTILE, HOSTILE)
def test_a_name_keeps_its_components_whatever_its_parts_contain(family: str, given_name: str) -> None:
    name = PersonName(family, given_name, "", "", "MD")
    ds = Dataset()
    ds.PatientName = name.dicom
    read = _roundtrip(clean_dataset(ds))
    assert read["PatientName"].VM == 1
    pn = read.PatientName
    assert pn.family_name == pn_component(family)[:64].strip() or len(name.dicom) > 64
    assert pn.components[0].count("^") <= 4 and "=" not in str(pn)


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_hl7_escaping_survives_a_parser_and_drops_only_control_characters(text: str) -> None:
    escaped = hl7_escape(text)
    assert not set(escaped) & {"|", "^", "&", "~", "\r", "\n"}  # one field, one repetition, one component
    message = hl7.parse(f"MSH|^~\\&|A|B|C|D|20260101||ADT^A04|1|P|2.5.1\rOBX|1|ST|X||{escaped}|END\r")
    assert message.unescape(str(message.segment("OBX")[5])) == plain(text)
    assert str(message.segment("OBX")[6]) == "END"
    ft = hl7_escape_ft(text)
    assert "\r" not in ft and "\n" not in ft and "|" not in ft


def test_text_vrs_keep_line_breaks_and_backslashes_but_lose_control_characters() -> None:
    assert dicom_text("a\\b\nc\x00d", "LT") == "a\\b\r\ncd"
    assert dicom_text("a\\b\nc\x00d", "LO") == "a/b cd"
    assert dicom_text("x" * 100, "LO") == "x" * 64
    assert dicom_text("helical ct-1", "CS") == "HELICAL CT_1"
    assert pn_component("O'BRIEN^SMITH=JONES\\X") == "O'BRIEN SMITH JONES X"


HOSTILE_INDICATION = Indication("Rule out fracture\\dislocation^left|wrist & hand~\x07 pain\r\nstat", "S62.90")
HOSTILE_PATIENT = dataclasses.replace(PATIENT, name=PersonName("DOE^SMITH", "JANE=J", "A\\B"))


def test_a_hostile_indication_and_name_stay_one_value_in_the_worklist_item() -> None:
    order = dataclasses.replace(order_for(Modality.MR), indication=HOSTILE_INDICATION, patient=HOSTILE_PATIENT)
    item = _roundtrip(build_worklist_item(order))
    assert item["ReasonForTheRequestedProcedure"].VM == 1
    assert item.ReasonForTheRequestedProcedure.startswith("Rule out fracture/dislocation^left|wrist")
    assert item.PatientName.components[0] == "DOE SMITH^JANE J^A B"


def test_a_hostile_indication_and_name_survive_the_hl7_order_intact() -> None:
    order = dataclasses.replace(order_for(Modality.MR), indication=HOSTILE_INDICATION, patient=HOSTILE_PATIENT)
    text = build_orm(order, config=HL7Config(), now=FIXED_NOW, control_id="C1")
    validate(text)
    message = hl7.parse(text)
    assert message.unescape(str(message.segment("OBR")[13])) == plain(HOSTILE_INDICATION.text)
    assert message.unescape(str(message.segment("PID")[5][0][0])) == "DOE^SMITH"


@pytest.mark.interop
def test_images_of_a_hostile_order_pass_dciodvfy_without_multiplicity_errors(tmp_path: Path) -> None:
    binary = require_binary("dciodvfy")
    order = dataclasses.replace(order_for(Modality.CT), indication=HOSTILE_INDICATION, patient=HOSTILE_PATIENT)
    result = write_study(order, tmp_path, seed=3, now=FIXED_NOW, max_instances_per_series=1, previews=False)
    path = sorted(result.study_dir.glob("*.dcm"))[1]
    out = subprocess.run([binary, str(path)], capture_output=True, text=True, check=False)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if line.startswith(("Error", "Warning")) and "DICOMDIR" not in line]
    assert problems == []
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.RequestAttributesSequence[0]["ReasonForTheRequestedProcedure"].VM == 1
