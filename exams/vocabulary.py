"""Clinical indications (EXAMGEN-3.1): a reason for study that fits the exam and the patient."""

from __future__ import annotations

import random

from django.db.models import Q

from exams.errors import NoIndication
from exams.models import Indication as IndicationRow
from generators.types import ExamInfo, Indication, Patient


def generate_indication(exam: ExamInfo, rng: random.Random, patient: Patient | None = None) -> Indication:
    """A weighted-random indication whose scope admits ``exam`` (and ``patient`` when given).

    Indications scoped to the exam's body part win over unscoped ones; unscoped ones are used only
    when the vocabulary has nothing for that body part. One query.
    """
    q = Q(active=True, body_part__in=["", exam.body_part], modality__in=["", exam.modality],
          laterality__in=["", exam.laterality])
    if patient is not None:
        q &= Q(min_age__isnull=True) | Q(min_age__lte=patient.age)
        q &= Q(max_age__isnull=True) | Q(max_age__gte=patient.age)
        q &= Q(sex__in=["", patient.sex])
    rows = list(IndicationRow.objects.filter(q, weight__gt=0).order_by("icd10", "text", "id")
                .values_list("text", "icd10", "weight", "body_part"))
    specific = [r for r in rows if r[3]]
    pool = specific or rows
    if not pool:
        raise NoIndication(f"No indication in the vocabulary fits exam {exam.id} ({exam.modality} {exam.body_part})"
                           + (f" for a {patient.age}-year-old {patient.sex} patient." if patient else "."))
    text, icd10, _, _ = rng.choices(pool, weights=[r[2] for r in pool])[0]
    return Indication(text=text, icd10=icd10)
