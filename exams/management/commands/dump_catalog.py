"""``manage.py dump_catalog [-o FILE]``: write the catalog in the format load_catalog reads."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exams.catalog_io import dump_catalog


class Command(BaseCommand):
    help = "Write the whole exam catalog (exams, codes, series, indications) as versioned JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")

    def handle(self, *args, output: Path | None, **options) -> None:
        text = json.dumps(dump_catalog(), indent=2, ensure_ascii=False) + "\n"
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        self.stderr.write(f"Wrote {output}.")
