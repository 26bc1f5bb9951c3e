"""Helpers for the PACS/RIS interop tests: runsim in-process, its rows, events and files."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import CommandError

from simulations.models import RunEvent, RunPatient, Scenario


def runsim(*args: str) -> dict:
    """``manage.py runsim ... --json``; a failed run's CommandError carries the summary as ``.summary``."""
    out = io.StringIO()
    try:
        call_command("runsim", *args, "--json", stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        text = out.getvalue()
        exc.summary = json.loads(text) if text.strip().startswith("{") else None  # type: ignore[attr-defined]
        raise
    return json.loads(out.getvalue())


def events(run_id: str, type: str) -> list[RunEvent]:
    return list(RunEvent.objects.filter(run_id=run_id, type=type).order_by("seq"))


def sent_series(output_dir: str, row: RunPatient) -> Counter[str]:
    """Instances per series number of what the run generated (files ``<series>_<instance>.dcm``)."""
    return Counter(p.name.split("_", 1)[0] for p in (Path(output_dir) / row.study_instance_uid).glob("*.dcm"))


def scenario_with(name: str, base: str = "Full scheduled workflow", **changes: dict) -> Scenario:
    """A copy of scenario ``base`` whose steps of each given type get the given fields."""
    steps = json.loads(json.dumps(Scenario.objects.get(name=base).steps))
    for step in steps:
        step.update(changes.get(step["step_type"], {}))
    return Scenario.objects.create(name=name, steps=steps, default_patients=1, concurrency=2)
