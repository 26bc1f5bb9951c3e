"""``manage.py reap_runs``: end the runs whose process is gone (killed, crashed, host lost) as abandoned."""

from __future__ import annotations

import math

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulations.housekeeping import runs_reap


class Command(BaseCommand):
    help = ("Mark running runs whose process is gone as abandoned: the process named in Run.worker (host:pid) "
            "is not alive on this host, or its heartbeat is older than --stale-after seconds. Their patients in "
            "flight fail, the others are cancelled, and an event says why. Every runsim, serve, Celery worker "
            "and web server start does the same.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=float, metavar="SECONDS",
                            help="heartbeat age after which a run is abandoned (default YEETER_RUN_STALE_SECONDS, "
                                 f"now {settings.YEETER['RUN_STALE_SECONDS']})")

    def handle(self, *args, stale_after: float | None, verbosity: int, **options) -> None:
        if stale_after is not None and (not math.isfinite(stale_after) or stale_after <= 0):
            raise CommandError("--stale-after must be a number of seconds greater than 0.", returncode=2)
        reaped = runs_reap(stale_after=stale_after)
        if verbosity:
            for run, reason in reaped:
                self.stdout.write(f"Run {run.id} ({run.scenario_name or 'ad hoc'}) abandoned: {reason}.")
            self.stdout.write(f"{len(reaped)} run(s) abandoned.")
