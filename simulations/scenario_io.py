"""Shipped scenarios (``fixtures/scenarios.json``) and ``manage.py load_scenarios``."""

from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction

from simulations.models import Scenario
from simulations.steps import ScenarioError
from simulations.services import scenario_validate

SHIPPED_SCENARIOS = Path(__file__).resolve().parent / "fixtures" / "scenarios.json"
_FIELDS = ("description", "default_patients", "concurrency", "arrival", "rate_per_hour", "steps")


def load_scenarios(path: Path = SHIPPED_SCENARIOS) -> tuple[int, int]:
    """Create or update scenarios by name, all or nothing; returns (created, updated)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError([f"{path}: cannot read the scenarios file ({exc})."]) from None
    if not isinstance(document, dict) or document.get("format") != "yeeter-scenarios" \
            or document.get("version") != 1:
        raise ScenarioError([f"{path}: not a version 1 yeeter-scenarios file."])
    problems: list[str] = []
    entries = document.get("scenarios") or []
    for entry in entries:
        try:
            scenario_validate(steps_json=entry.get("steps"))
        except ScenarioError as exc:
            problems += [f"scenario {entry.get('name')!r}: {p}" for p in exc.problems]
    if problems:
        raise ScenarioError(problems)
    created = updated = 0
    with transaction.atomic():
        for entry in entries:
            _, was_created = Scenario.objects.update_or_create(
                name=entry["name"], defaults={k: entry.get(k) for k in _FIELDS if k in entry})
            created += was_created
            updated += not was_created
    return created, updated
