"""``manage.py load_catalog [FILE] [--replace]``: load a catalog file (default: the shipped catalog)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exams.catalog_io import SHIPPED_CATALOG, CatalogError, load_catalog, read_catalog_file
from exams.selectors import catalog_summary_lines


class Command(BaseCommand):
    help = ("Load an exam catalog file (versioned JSON, as written by dump_catalog) into the database. "
            "Without FILE the catalog shipped with Yeeter is loaded. Loading is all-or-nothing and idempotent.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", type=Path, default=SHIPPED_CATALOG,
                            help="catalog JSON file (default: the shipped catalog)")
        parser.add_argument("--replace", action="store_true",
                            help="make the catalog exactly the file: delete exams and indications it does not list")
        parser.add_argument("--summary", action="store_true", help="print a catalog summary afterwards")

    def handle(self, *args, file: Path, replace: bool, summary: bool, verbosity: int, **options) -> None:
        try:
            result = load_catalog(read_catalog_file(file), replace=replace)
        except CatalogError as exc:
            raise CommandError(f"{file}: {exc}") from None
        if verbosity:
            self.stdout.write(
                f"Loaded {file.name}: exams {result.exams_created} created, {result.exams_updated} updated, "
                f"{result.exams_deleted} deleted; indications {result.indications_created} created, "
                f"{result.indications_updated} updated, {result.indications_deleted} deleted."
            )
        if summary:
            for line in catalog_summary_lines():
                self.stdout.write(line)
