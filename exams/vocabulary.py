"""Clinical indications (EXAMGEN-3.1): a reason for study that fits the exam and the patient."""

from __future__ import annotations

import random

from django.db.models import Q

from exams.errors import NoIndication
from exams.models import Indication as IndicationRow
from generators.terms import PURPOSE_DRAWS
from generators.types import ExamInfo, Indication, Patient


def generate_indication(exam: ExamInfo, rng: random.Random, patient: Patient | None = None) -> Indication:
    """A weighted-random indication whose scope admits ``exam`` (and ``patient`` when given).

    The indication's purpose must be one the exam's purpose draws (``terms.PURPOSE_DRAWS``: a
    screening exam only screening reasons, a trauma exam only injuries with their external cause).
    Indications scoped to the exam's body part win over unscoped ones; unscoped ones are used only
    when the vocabulary has nothing for that body part. One query.
    """
    q = indication_filter(exam, patient)
    rows = list(IndicationRow.objects.filter(q, weight__gt=0).order_by("icd10", "text", "id")
                .values_list("text", "icd10", "weight", "body_part", "secondary_icd10", "secondary_text"))
    specific = [r for r in rows if r[3]]
    pool = specific or rows
    if not pool:
        raise NoIndication(f"No {exam.purpose.value} indication in the vocabulary fits exam {exam.id} "
                           f"({exam.modality} {exam.body_part})"
                           + (f" for a {patient.age}-year-old {patient.sex} patient." if patient else "."))
    text, icd10, _, _, secondary, secondary_text = rng.choices(pool, weights=[r[2] for r in pool])[0]
    return Indication(text=text, icd10=icd10, secondary_icd10=secondary, secondary_text=secondary_text)


def indication_filter(exam: ExamInfo, patient: Patient | None = None) -> Q:
    """The indications ``exam`` (and ``patient``, when given) can draw, as one filter (admin shows them too)."""
    q = Q(active=True, body_part__in=["", exam.body_part], modality__in=["", exam.modality],
          laterality__in=["", exam.laterality], purpose__in=sorted(PURPOSE_DRAWS[exam.purpose]))
    if exam.required_sex is not None:
        q &= Q(sex__in=["", exam.required_sex.value])
    if patient is not None:
        q &= Q(min_age__isnull=True) | Q(min_age__lte=patient.age)
        q &= Q(max_age__isnull=True) | Q(max_age__gte=patient.age)
        q &= Q(sex__in=["", patient.sex])
    return q
