"""Catalog workflows that span models (HackSoft services: keyword-only, typed, ``<entity>_<action>``)."""

from __future__ import annotations

from django.db import transaction

from exams.models import ExamSpec, ProcedureCode, SeriesProtocol


def _free_copy_id(base: str) -> str:
    candidate = f"{base}-COPY"[:40]
    n = 2
    while ExamSpec.objects.filter(id=candidate).exists():
        suffix = f"-COPY{n}"
        candidate = base[: 40 - len(suffix)] + suffix
        n += 1
    return candidate


@transaction.atomic
def exam_duplicate(*, exam: ExamSpec) -> ExamSpec:
    """An inactive copy of ``exam`` (id ``<id>-COPY``) with its codes and series, ready for editing."""
    codes = list(exam.codes.all())
    series = list(exam.series.all())
    copy = ExamSpec.objects.get(pk=exam.pk)
    copy.pk = _free_copy_id(exam.id)
    copy.name = f"{exam.name} (copy)"[:200]
    copy.active = False
    copy._state.adding = True
    copy.save(force_insert=True)
    ProcedureCode.objects.bulk_create(
        [ProcedureCode(exam=copy, code=c.code, scheme=c.scheme, display=c.display, order=c.order) for c in codes]
    )
    for s in series:
        s.pk = None
        s.exam = copy
        s._state.adding = True
    SeriesProtocol.objects.bulk_create(series)
    return copy
