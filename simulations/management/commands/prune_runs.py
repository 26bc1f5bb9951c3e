"""``manage.py prune_runs --older-than 7d``: delete old finished runs, their files and received copies."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulations.housekeeping import runs_prune

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([dhmsw]?)\s*", text)
    if match is None:
        raise ValueError(f"expected an age such as 7d, 12h, 30m or 2w, got {text!r}")
    return timedelta(**{_UNITS[match.group(2) or "d"]: int(match.group(1))})


class Command(BaseCommand):
    help = ("Delete finished runs that ended longer ago than --older-than: their database rows (patients, "
            "events, worklist entries), their run folder and, when the built-in Storage SCP received their "
            "studies, its copy of them. Pending and running runs are never touched. Without --older-than the "
            "retention YEETER_RUN_RETENTION_DAYS applies (which also runs at every start when set).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", metavar="AGE", help="e.g. 7d, 12h, 30m, 2w (a bare number is days)")
        parser.add_argument("--keep-failed", action="store_true",
                            help="keep runs that failed, errored or were abandoned")
        parser.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")

    def handle(self, *args, older_than: str | None, keep_failed: bool, dry_run: bool, verbosity: int,
               **options) -> None:
        if older_than is not None:
            try:
                age = parse_age(older_than)
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}.", returncode=2) from None
        elif settings.YEETER["RUN_RETENTION_DAYS"]:
            age = timedelta(days=settings.YEETER["RUN_RETENTION_DAYS"])
        else:
            raise CommandError("Give --older-than AGE (e.g. 7d), or set YEETER_RUN_RETENTION_DAYS.", returncode=2)
        pruned = runs_prune(older_than=age, keep_failed=keep_failed, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        failed = [p for p in pruned if p.error]
        for p in pruned:
            if verbosity and not p.error:
                ended = f"{p.finished_at:%Y-%m-%d %H:%M}" if p.finished_at else "never started"
                self.stdout.write(f"{verb} run {p.run_id} ({p.status}, ended {ended}): {p.files} file(s), "
                                  f"{p.bytes / 1e6:.1f} MB")
        done = [p for p in pruned if not p.error]
        total = sum(p.bytes for p in done) / 1e6
        self.stdout.write(f"{'Would free' if dry_run else 'Freed'} {total:.1f} MB from {len(done)} run(s) older "
                          f"than {age}.")
        if failed:
            raise CommandError("Kept (could not delete their files; run again once fixed):\n  - "
                               + "\n  - ".join(f"run {p.run_id}: {p.error}" for p in failed))
