from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from exams.catalog_io import CatalogError, dump_catalog, load_catalog
from exams.models import ExamSpec, Indication, ProcedureCode, SeriesProtocol
from tests.exams.documents import mutated, small_catalog
from tests.examples import EXAMS  # one per modality; small_catalog adds the left knee

SMALL = len(small_catalog()["exams"])  # one example exam per modality and the left knee

pytestmark = pytest.mark.django_db


def test_it_loads_exams_codes_series_and_indications():
    result = load_catalog(small_catalog())
    assert result.exams_created == SMALL and result.exams_updated == 0
    knee = ExamSpec.objects.get(id="MR-KNEE-RIGHT-WO")
    assert [c.code for c in knee.codes.all()] == ["73721", "36489-5"]
    assert [s.description for s in knee.series.all()] == ["SAG PD FS", "COR T1", "AX T2 FS"]
    assert Indication.objects.count() == 6


def test_loading_the_same_file_twice_gives_the_same_catalog():
    load_catalog(small_catalog())
    first = dump_catalog()
    result = load_catalog(small_catalog())
    assert result.exams_created == 0 and result.exams_updated == SMALL and result.indications_created == 0
    assert dump_catalog() == first
    assert ProcedureCode.objects.count() == sum(len(e["codes"]) for e in first["exams"])


def test_dump_then_load_on_an_empty_database_round_trips(tmp_path):
    load_catalog(small_catalog())
    path = tmp_path / "catalog.json"
    call_command("dump_catalog", output=path, stderr=open("/dev/null", "w"))
    before = json.loads(path.read_text())
    ExamSpec.objects.all().delete()
    Indication.objects.all().delete()
    call_command("load_catalog", str(path), verbosity=0)
    assert dump_catalog() == before


def test_replace_removes_what_the_file_does_not_list():
    load_catalog(small_catalog())
    doc = small_catalog()
    doc["exams"] = [e for e in doc["exams"] if e["modality"] != "NM"]
    doc["indications"] = doc["indications"][:2]
    result = load_catalog(doc, replace=True)
    assert result.exams_deleted == 1 and result.indications_deleted == 4
    assert not ExamSpec.objects.filter(modality="NM").exists()


def test_without_replace_other_exams_are_kept():
    load_catalog(small_catalog())
    doc = small_catalog()
    doc["exams"] = doc["exams"][:1]
    load_catalog(doc)
    assert ExamSpec.objects.count() == SMALL


def test_a_bad_file_names_the_exam_and_field_and_loads_nothing():
    doc = mutated(small_catalog(), "CT-ABDPEL-W", modality="XX")
    doc = mutated(doc, "MR-KNEE-LEFT-WO", laterality="R")
    with pytest.raises(CatalogError) as err:
        load_catalog(doc)
    text = str(err.value)
    assert "exam CT-ABDPEL-W: field modality" in text
    assert "exam MR-KNEE-LEFT-WO: field laterality" in text and "names side 'L'" in text
    assert ExamSpec.objects.count() == 0 and SeriesProtocol.objects.count() == 0


def test_a_bad_file_keeps_the_previous_catalog_untouched():
    load_catalog(small_catalog())
    before = dump_catalog()
    doc = mutated(small_catalog(), "DX-CHEST-2V", name="Changed", series=[])
    with pytest.raises(CatalogError, match="exam DX-CHEST-2V: field series: an exam needs at least one series"):
        load_catalog(doc)
    assert dump_catalog() == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"codes": [{"code": "36489-5", "scheme": "LN", "display": "x"}]}, r"primary \(first\) code must be a CPT code"),
        ({"codes": [{"code": "7372", "scheme": "C4", "display": "x"}]}, "'7372' is not a CPT code"),
        ({"min_age": 50, "max_age": 20}, "minimum age 50 is above maximum age 20"),
        ({"contrast": "with"}, "needs the contrast agent"),
        ({"care_settings": ["home"]}, "field care_settings"),
        ({"colour": "blue"}, "field colour: unknown field"),
        ({"laterality": ""}, "KNEE is a paired body part"),
    ],
)
def test_it_rejects_invalid_exam_fields(change, expected):
    with pytest.raises(CatalogError, match=expected):
        load_catalog(mutated(small_catalog(), "MR-KNEE-RIGHT-WO", **change))


def test_it_rejects_an_mr_series_without_a_sequence():
    doc = small_catalog()
    knee = next(e for e in doc["exams"] if e["id"] == "MR-KNEE-RIGHT-WO")
    knee["series"][1]["sequence_name"] = ""
    knee["series"][2]["number"] = 1
    with pytest.raises(CatalogError) as err:
        load_catalog(doc)
    assert "series 2 is an MR series and needs a sequence name" in str(err.value)
    assert "series numbers must be unique; repeated: 1" in str(err.value)


def test_it_rejects_duplicate_ids_wrong_format_and_bad_indications():
    doc = small_catalog()
    doc["exams"].append(doc["exams"][0])
    doc["format"] = "something-else"
    doc["indications"][0]["icd10"] = "XYZ"
    with pytest.raises(CatalogError) as err:
        load_catalog(doc)
    problems = err.value.problems
    assert any("appears more than once" in p for p in problems)
    assert any(p.startswith("format:") for p in problems)
    assert any("indication #1" in p and "icd10" in p for p in problems)


def test_the_command_reports_unreadable_and_invalid_files_as_command_errors(tmp_path):
    with pytest.raises(CommandError, match="cannot read the file"):
        call_command("load_catalog", str(tmp_path / "missing.json"), verbosity=0)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON at line 1"):
        call_command("load_catalog", str(bad), verbosity=0)
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(CommandError, match="must contain a JSON object"):
        call_command("load_catalog", str(wrong), verbosity=0)


def test_the_shipped_catalog_loads_with_80_active_exams_and_round_trips():
    from exams.catalog_io import SHIPPED_CATALOG, read_catalog_file

    load_catalog(read_catalog_file(SHIPPED_CATALOG))
    assert ExamSpec.objects.filter(active=True).count() >= 80
    assert Indication.objects.count() >= 150
    dumped = dump_catalog()
    ExamSpec.objects.all().delete()
    Indication.objects.all().delete()
    load_catalog(dumped)
    assert dump_catalog() == dumped
    # and every exam converts to the generator-side view
    from exams.factory import with_details
    assert all(e.to_info().primary_code.scheme == "C4" for e in with_details(ExamSpec.objects.all()))


def _first_series_of(doc: dict, modality: str) -> dict:
    return next(e for e in doc["exams"] if e["modality"] == modality)["series"][0]


def test_it_loads_and_dumps_a_series_window_preset_and_projection():
    doc = small_catalog()
    _first_series_of(doc, "CT")["window"] = "lung"
    _first_series_of(doc, "DX")["projection"] = "axial_patellofemoral"
    load_catalog(doc)
    ct = SeriesProtocol.objects.get(exam__modality="CT", number=_first_series_of(doc, "CT")["number"])
    assert ct.to_spec().window.value == "lung"
    dumped = dump_catalog()
    assert _first_series_of(dumped, "CT")["window"] == "lung"
    assert _first_series_of(dumped, "DX")["projection"] == "axial_patellofemoral"
    assert "window" not in _first_series_of(dumped, "MR")  # absent where not curated, like the shipped file


@pytest.mark.parametrize(("modality", "field", "value", "message"), [
    ("MR", "window", "lung", "a window preset applies to CT series only"),
    ("CT", "projection", "oblique", "a projection (oblique, mortise, sunrise) applies to DX and CR series only"),
    ("CT", "window", "tissue", "'tissue' is not a valid choice"),
])
def test_it_refuses_a_preset_the_series_cannot_have_and_loads_nothing(modality, field, value, message):
    doc = small_catalog()
    _first_series_of(doc, modality)[field] = value
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_catalog(doc)
    assert ExamSpec.objects.count() == 0
