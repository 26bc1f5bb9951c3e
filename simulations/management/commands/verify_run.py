"""``manage.py verify_run RUN``: re-check a run's consistency from the files it kept."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from simulations.artifacts import PatientFiles
from simulations.models import Run
from simulations.verification import verify_patient


class Command(BaseCommand):
    help = ("Verify that every patient of a run told one story: HL7, worklist, MPPS and every DICOM file agree "
            "on identity, accession, Study Instance UID, modality, body part, laterality, description and code.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("run", help="run id (or a unique prefix of it)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print results as JSON")

    def handle(self, *args, run: str, as_json: bool, **options) -> None:
        target = self._find(run)
        run_dir = Path(target.output_dir)
        if not run_dir.is_dir():
            raise CommandError(f"The files of run {target.id} are gone ({run_dir} does not exist).")
        results = []
        for row in target.patients.order_by("index"):
            if not row.accession_number:
                results.append({"index": row.index + 1, "ok": False, "summary": "no order was minted"})
                continue
            files = PatientFiles.for_order(run_dir, row.index, row.accession_number)
            study = run_dir / row.study_instance_uid if row.study_instance_uid else None
            v = verify_patient(files, study)
            results.append({"index": row.index + 1, "accession": row.accession_number, "ok": v.ok,
                            "summary": v.summary(), "mismatches": v.mismatches})
        failed = [r for r in results if not r["ok"]]
        if as_json:
            self.stdout.write(json.dumps({"run_id": str(target.id), "patients": results}, indent=2))
        else:
            for r in results:
                mark = "ok  " if r["ok"] else "FAIL"
                self.stdout.write(f"{mark} patient {r['index']:>4} {r.get('accession', ''):<17} {r['summary']}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} patient(s) are not consistent.", returncode=1)
        self.stdout.write(self.style.SUCCESS(f"All {len(results)} patient(s) of run {target.id} are consistent."))

    @staticmethod
    def _find(text: str) -> Run:
        try:
            return Run.objects.get(pk=text)
        except (Run.DoesNotExist, ValidationError, ValueError):
            pass
        matches = [r for r in Run.objects.only("id") if str(r.id).startswith(text.lower())] if text else []
        if len(matches) == 1:
            return Run.objects.get(pk=matches[0].pk)
        if not matches:
            raise CommandError(f"No run {text!r}.", returncode=2)
        raise CommandError(f"{text!r} matches {len(matches)} runs; give more of the id.", returncode=2)
