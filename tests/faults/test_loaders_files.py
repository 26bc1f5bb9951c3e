"""load_catalog and load_scenarios under careless and hostile files: one clear message (a
CommandError, never a traceback) for every wrong type, and the database exactly as it was."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from exams.catalog_io import dump_catalog
from simulations.models import Scenario
from tests.exams.documents import small_catalog

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
DEEP = "[" * 100_000 + "]" * 100_000
OK_STEPS = [{"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO"}]


def _exam(**fields) -> dict:
    document = small_catalog()
    document["exams"][0].update(fields)
    return document


def _series(**fields) -> dict:
    document = small_catalog()
    document["exams"][0]["series"][0].update(fields)
    return document


def _write(tmp_path: Path, document) -> Path:
    path = tmp_path / "file.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _refused(command: str, path: Path) -> str:
    with pytest.raises(CommandError) as err:
        call_command(command, str(path), stdout=io.StringIO(), stderr=io.StringIO())
    return str(err.value)


@pytest.fixture
def loaded(catalog):
    call_command("load_scenarios", stdout=io.StringIO())
    return json.dumps(dump_catalog(), sort_keys=True), sorted(Scenario.objects.values_list("name", "steps"))


@pytest.mark.parametrize(("document", "expected"), [
    (_exam(min_age="abc"), "exam MR-KNEE-RIGHT-WO: field min_age: must be a whole number or null, got 'abc'."),
    (_exam(body_part=["KNEE"]), "exam MR-KNEE-RIGHT-WO: field body_part: must be a string, got a list."),
    (_exam(weight=True), "exam MR-KNEE-RIGHT-WO: field weight: must be a whole number, got True."),
    (_exam(id=123), "exam #1: field id: must be a string, got 123."),
    (_exam(care_settings=[["outpatient"]]), "field care_settings: must be a list of outpatient/inpatient/emergency"),
    (_exam(active="yes"), "field active: must be true or false, got 'yes'."),
    (_series(instances="20"), "series #1: field instances: must be a whole number, got '20'."),
    (_series(slice_thickness_mm=True), "field slice_thickness_mm: must be a number or null, got True."),
    ({**small_catalog(), "exams": {"MR": {}}}, "exams: must be a list."),
    (_exam(name="MR\x00knee"), "exams[0].name: text may not contain NUL characters"),
    (DEEP, "the JSON is nested too deeply"),
    ('{"format": "yeeter-catalog", "version": 1, "exams": [NaN]}', "NaN is not a JSON number"),
    ("{not json", "not valid JSON at line 1, column 2"),
])
def test_load_catalog_refuses_each_bad_file_in_one_message_and_changes_nothing(loaded, tmp_path, document, expected):
    message = _refused("load_catalog", _write(tmp_path, document))
    assert expected in message and "nothing was loaded" in message
    assert "Traceback" not in message
    assert json.dumps(dump_catalog(), sort_keys=True) == loaded[0]


def _scenarios(*entries, **top) -> dict:
    return {"format": "yeeter-scenarios", "version": 1, "scenarios": list(entries), **top}


@pytest.mark.parametrize(("document", "expected"), [
    ({"format": "yeeter-scenarios", "version": 1, "scenarios": {"a": 1}},
     "scenarios: must be a list of scenario objects, got an object."),
    (_scenarios("Outpatient MR knee"), "scenario #1: must be an object with a name and steps, got str."),
    (_scenarios({"steps": OK_STEPS}), "scenario #1: field name: missing."),
    (_scenarios({"name": "x" * 500, "steps": OK_STEPS}), "field name: Ensure this value has at most 100 characters"),
    (_scenarios({"name": 7, "steps": OK_STEPS}), "scenario #1: field name: must be a string, got 7."),
    (_scenarios({"name": "a", "steps": OK_STEPS, "concurrency": 0}),
     "scenario 'a': field concurrency: Ensure this value is greater than or equal to 1."),
    (_scenarios({"name": "a", "steps": OK_STEPS, "concurrency": "4"}),
     "scenario 'a': field concurrency: must be a whole number, got '4'."),
    (_scenarios({"name": "a", "steps": OK_STEPS, "arrival": "burst"}),
     "scenario 'a': field arrival: Value 'burst' is not a valid choice."),
    (_scenarios({"name": "a", "steps": OK_STEPS, "arrival": "poisson", "rate_per_hour": -1}),
     "scenario 'a': field rate_per_hour: Ensure this value is greater than or equal to 0.001."),
    (_scenarios({"name": "a", "steps": OK_STEPS, "colour": "red"}), "scenario 'a': field colour: unknown field"),
    (_scenarios({"name": "a", "steps": OK_STEPS}, {"name": "a", "steps": OK_STEPS}),
     "scenario 'a': the name appears more than once (entries #1 and #2)."),
    (_scenarios({"name": "a", "steps": OK_STEPS, "default_patients": 10**12}),
     "field default_patients: Ensure this value is less than or equal to 100000."),
    (_scenarios({"name": "a", "steps": [{"step_type": "WAIT"}]}), "scenario 'a': steps: no GENERATE_HL7 step"),
    (_scenarios({"name": "a", "steps": {"step_type": "GENERATE_HL7"}}),
     "scenario 'a': field steps: must be a list, got an object."),
    (_scenarios({"name": "a\x00", "steps": OK_STEPS}), "scenarios[0].name: text may not contain NUL characters"),
    (_scenarios({"name": "a", "steps": [{"step_type": "GENERATE_HL7", "exam_id": "MR\x00"}]}),
     "scenarios[0].steps[0].exam_id: text may not contain NUL characters"),
    ('{"format": "yeeter-scenarios", "version": 1, "scenarios": ' + DEEP + "}", "the JSON is nested too deeply"),
    (_scenarios(extra=1), "extra: unknown top-level field."),
])
def test_load_scenarios_refuses_each_bad_file_in_one_message_and_changes_nothing(loaded, tmp_path, document,
                                                                                  expected):
    message = _refused("load_scenarios", _write(tmp_path, document))
    assert expected in message, message
    assert message.startswith("Scenarios not loaded:")
    assert sorted(Scenario.objects.values_list("name", "steps")) == loaded[1]


def test_a_hostile_file_on_the_real_command_line_gives_one_error_and_no_traceback(tmp_path):
    env = {"SECRET_KEY": "loader-test-" + "x" * 40, "YEETER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180)
    path = _write(tmp_path, DEEP)
    for command in ("load_catalog", "load_scenarios"):
        result = subprocess.run([sys.executable, "manage.py", command, str(path)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "nested too deeply" in result.stderr
