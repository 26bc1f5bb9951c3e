"""``manage.py load_scenarios [FILE]``: create or update the shipped (or given) scenarios by name."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from simulations.scenario_io import SHIPPED_SCENARIOS, load_scenarios
from simulations.steps import ScenarioError


class Command(BaseCommand):
    help = "Load scenarios (format yeeter-scenarios v1); validates every scenario against the catalog first."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", type=Path, default=SHIPPED_SCENARIOS)

    def handle(self, *args, file: Path, verbosity: int, **options) -> None:
        try:
            created, updated = load_scenarios(file)
        except ScenarioError as exc:
            raise CommandError("Scenarios not loaded:\n  - " + "\n  - ".join(exc.problems)) from None
        if verbosity:
            self.stdout.write(f"Scenarios: {created} created, {updated} updated.")
