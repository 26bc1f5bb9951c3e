"""Read-only catalog queries for commands and pages (HackSoft selectors)."""

from __future__ import annotations

from exams.factory import ExamFactory, catalog_stamp
from exams.models import Indication


def catalog_summary_lines() -> list[str]:
    """A short human summary: active exams per modality, indications, catalog version."""
    total, version, last = catalog_stamp()
    rows = ExamFactory().modalities_summary()
    lines = [f"Catalog {version}: {total} active exams, {Indication.objects.filter(active=True).count()} indications"
             + (f", last changed {last:%Y-%m-%d %H:%M:%S}" if last else "")]
    lines += [f"  {r['modality']:<3} {r['label']:<22} {r['exam_count']:>4}" for r in rows]
    return lines
