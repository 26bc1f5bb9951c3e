"""Shipped scenarios (``fixtures/scenarios.json``) and ``manage.py load_scenarios``.

Format (version 1)::

    {"format": "yeeter-scenarios", "version": 1,
     "scenarios": [{"name", "description", "default_patients", "concurrency", "arrival", "rate_per_hour",
                    "steps": [...]}]}

Every entry is checked completely — JSON types, the model's limits (``Scenario.full_clean``), the
steps (:func:`simulations.services.scenario_validate`, the same check as the API and ``runsim``) —
before anything is written, and the file is loaded in one transaction: a bad file changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from exams.catalog_io import decode_json_document, json_type_problem
from simulations.models import Scenario
from simulations.services import scenario_validate
from simulations.steps import ScenarioError

SHIPPED_SCENARIOS = Path(__file__).resolve().parent / "fixtures" / "scenarios.json"
_TYPES: dict[str, Any] = {"name": str, "description": str, "default_patients": int, "concurrency": int,
                          "arrival": str, "rate_per_hour": (int, float, None), "steps": list}
_FIELDS = tuple(k for k in _TYPES if k != "name")


def _entry_problems(where: str, entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: must be an object with a name and steps, got {type(entry).__name__}."]
    problems = [f"{where}: field {key}: unknown field (allowed: {', '.join(_TYPES)})."
                for key in entry if key not in _TYPES]
    problems += [f"{where}: field {key}: missing." for key in ("name", "steps") if key not in entry]
    problems += [f"{where}: field {key}: {p}" for key, expected in _TYPES.items()
                 if key in entry and (p := json_type_problem(entry[key], expected)) is not None]
    if problems:
        return problems
    scenario = Scenario(**entry)
    try:
        scenario.full_clean(exclude=["endpoints"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            if field == "steps":
                try:  # the same sentences as the API and runsim, with the catalog checked too
                    scenario_validate(steps_json=entry["steps"])
                except ScenarioError as steps_error:
                    problems += [f"{where}: {p}" for p in steps_error.problems]
                continue
            problems += [f"{where}: field {field}: {m}" for m in messages]
        return problems
    try:
        scenario_validate(steps_json=entry["steps"])
    except ScenarioError as exc:
        problems += [f"{where}: {p}" for p in exc.problems]
    return problems


def load_scenarios(path: Path = SHIPPED_SCENARIOS) -> tuple[int, int]:
    """Create or update scenarios by name, all or nothing; returns (created, updated)."""
    try:
        document = decode_json_document(Path(path).read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read the scenarios file ({exc.strerror or exc})."]) from None
    except UnicodeDecodeError:
        raise ScenarioError([f"{path}: the scenarios file is not UTF-8 text."]) from None
    except ValueError as exc:
        raise ScenarioError([str(exc)]) from None
    if not isinstance(document, dict) or document.get("format") != "yeeter-scenarios" \
            or document.get("version") != 1:
        raise ScenarioError([f"{path}: not a version 1 yeeter-scenarios file."])
    unknown = sorted(set(document) - {"format", "version", "scenarios"})
    if unknown:
        raise ScenarioError([f"{key}: unknown top-level field." for key in unknown])
    entries = document.get("scenarios")
    if not isinstance(entries, list):
        raise ScenarioError([f"scenarios: must be a list of scenario objects, got "
                             f"{'an object' if isinstance(entries, dict) else type(entries).__name__}."])
    problems: list[str] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        shown = name if isinstance(name, str) and len(name) <= 100 else None
        where = f"scenario {shown!r}" if shown else f"scenario #{index + 1}"
        problems += _entry_problems(where, entry)
        if isinstance(name, str):
            if name in names:
                problems.append(f"{where}: the name appears more than once (entries #{names[name]} and "
                                f"#{index + 1}).")
            names.setdefault(name, index + 1)
    if problems:
        raise ScenarioError(problems)
    created = updated = 0
    with transaction.atomic():
        for entry in entries:
            _, was_created = Scenario.objects.update_or_create(
                name=entry["name"], defaults={k: entry[k] for k in _FIELDS if k in entry})
            created += was_created
            updated += not was_created
    return created, updated
