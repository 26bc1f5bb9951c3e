"""ExamFactory: the single way the rest of Yeeter picks an exam from the catalog.

Every method answers with an exam or a domain error (:mod:`exams.errors`) — never ``None`` and never
a random fallback. Selection is deterministic for a given ``random.Random`` and catalog, and every
method runs a fixed number of queries whatever the catalog size (at most four).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field

from django.db.models import Count, Max, Q, QuerySet

from exams.errors import ExamNotFound, NoMatchingExam
from exams.models import ExamSpec
from generators import terms

STRATEGY_EXAM_ID = "exam_id"
STRATEGY_CPT = "cpt_code"
STRATEGY_RANDOM = "weighted_random"


class InvalidFilter(ValueError):
    """A filter value is not one the catalog knows (unknown modality, negative age...)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class ExamFilters:
    """Constraints for weighted-random selection and catalog slices (all optional)."""

    modality: str | None = None
    body_part: str | None = None
    setting: str | None = None
    laterality: str | None = None
    patient_age: int | None = None
    patient_sex: str | None = None

    def __post_init__(self) -> None:
        if self.modality is not None and self.modality not in terms.Modality.__members__.values():
            raise InvalidFilter("modality", f"unknown modality {self.modality!r}; use one of "
                                            f"{', '.join(m.value for m in terms.Modality)}.")
        if self.body_part is not None and self.body_part not in terms.BODY_PARTS:
            raise InvalidFilter("body_part", f"unknown body part {self.body_part!r} (DICOM Body Part Examined "
                                             "defined terms, e.g. KNEE, CHEST).")
        if self.setting is not None and self.setting not in terms.CareSetting.__members__.values():
            raise InvalidFilter("setting", f"unknown care setting {self.setting!r}; use outpatient, inpatient "
                                           "or emergency.")
        if self.laterality is not None and self.laterality not in {"R", "L", "B", ""}:
            raise InvalidFilter("laterality", f"unknown laterality {self.laterality!r}; use R, L, B or empty.")
        if self.patient_age is not None and (isinstance(self.patient_age, bool) or not 0 <= self.patient_age <= 130):
            raise InvalidFilter("patient_age", f"age must be a whole number from 0 to 130, got {self.patient_age!r}.")
        if self.patient_sex is not None and self.patient_sex not in {"F", "M", "O"}:
            raise InvalidFilter("patient_sex", f"unknown sex {self.patient_sex!r}; use F, M or O.")

    def as_dict(self) -> dict:
        """Only the filters actually given, in a stable order."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def q(self) -> Q:
        q = Q(active=True)
        if self.modality is not None:
            q &= Q(modality=self.modality)
        if self.body_part is not None:
            q &= Q(body_part=self.body_part)
        if self.laterality is not None:
            q &= Q(laterality=self.laterality)
        if self.setting is not None:
            q &= Q(**{f"for_{self.setting}": True})
        if self.patient_age is not None:
            q &= (Q(min_age__isnull=True) | Q(min_age__lte=self.patient_age))
            q &= (Q(max_age__isnull=True) | Q(max_age__gte=self.patient_age))
        if self.patient_sex is not None:
            q &= Q(required_sex__in=["", self.patient_sex])
        return q


@dataclass(frozen=True)
class Selection:
    """How an exam was chosen: what the API's ``_selection`` block and run events report."""

    exam: ExamSpec
    strategy: str
    filters: dict
    candidate_count: int
    candidates: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class CatalogSlice:
    exams: list[ExamSpec]
    filters: dict
    counts_by_modality: dict[str, int]
    catalog_total: int
    catalog_version: str
    last_changed: object  # datetime | None


def with_details(qs: QuerySet[ExamSpec]) -> QuerySet[ExamSpec]:
    """Exams with their codes and series in two extra queries, whatever the count."""
    return qs.prefetch_related("codes", "series")


class ExamFactory:
    """Selects catalog exams. Pass a seeded ``random.Random`` for reproducible weighted choices."""

    def __init__(self, rng: random.Random | None = None, *, seed: int | None = None) -> None:
        self.seed = seed
        self.rng = rng if rng is not None else random.Random(seed)

    # -- lookups -----------------------------------------------------------------------------
    def get_exam_by_id(self, exam_id: str) -> ExamSpec:
        exam = with_details(ExamSpec.objects.filter(id=exam_id)).first()
        if exam is None:
            raise ExamNotFound(f"No exam with id {exam_id!r} in the catalog.")
        if not exam.active:
            raise ExamNotFound(f"Exam {exam_id!r} exists but is inactive; activate it in the catalog to use it.")
        return exam

    def get_exam_by_cpt_code(self, cpt_code: str) -> ExamSpec:
        return self.select(cpt_code=cpt_code).exam

    def get_random_exam(self, *, modality: str | None = None, body_part: str | None = None,
                        setting: str | None = None, laterality: str | None = None,
                        patient_age: int | None = None, patient_sex: str | None = None) -> ExamSpec:
        filters = ExamFilters(modality, body_part, setting, laterality, patient_age, patient_sex)
        return self.select(filters=filters).exam

    def select(self, *, exam_id: str | None = None, cpt_code: str | None = None,
               filters: ExamFilters | None = None) -> Selection:
        """The spec's priorities: explicit exam id, then CPT code, then weighted random with filters."""
        filters = filters or ExamFilters()
        if exam_id:
            return Selection(self.get_exam_by_id(exam_id), STRATEGY_EXAM_ID, {"exam_id": exam_id}, 1,
                             [exam_id], self.seed)
        if cpt_code:
            rows = list(
                ExamSpec.objects.filter(filters.q(), codes__scheme="C4", codes__code=cpt_code)
                .distinct().order_by("id").values_list("id", "weight")
            )
            if not rows:
                raise ExamNotFound(f"No active exam has CPT code {cpt_code!r}"
                                   + (f" and matches {filters.as_dict()}." if filters.as_dict() else "."))
            chosen = self._weighted(rows) or rows[0][0]
            return Selection(self.get_exam_by_id(chosen), STRATEGY_CPT, {"cpt_code": cpt_code, **filters.as_dict()},
                             len(rows), [r[0] for r in rows], self.seed)
        rows = list(ExamSpec.objects.filter(filters.q(), weight__gt=0).order_by("id").values_list("id", "weight"))
        chosen = self._weighted(rows)
        if chosen is None:
            raise NoMatchingExam(filters.as_dict())
        return Selection(self.get_exam_by_id(chosen), STRATEGY_RANDOM, filters.as_dict(), len(rows), [], self.seed)

    def _weighted(self, rows: list[tuple[str, int]]) -> str | None:
        rows = [r for r in rows if r[1] > 0]
        if not rows:
            return None
        return self.rng.choices([r[0] for r in rows], weights=[r[1] for r in rows])[0]

    # -- catalog views -----------------------------------------------------------------------
    def list_exams(self, filters: ExamFilters | None = None) -> CatalogSlice:
        filters = filters or ExamFilters()
        exams = list(with_details(ExamSpec.objects.filter(filters.q()).order_by("id")))
        counts: dict[str, int] = {}
        for exam in exams:
            counts[exam.modality] = counts.get(exam.modality, 0) + 1
        total, version, last = catalog_stamp()
        return CatalogSlice(exams, filters.as_dict(), dict(sorted(counts.items())), total, version, last)

    def modalities_summary(self) -> list[dict]:
        """Every modality the catalog offers with its active exam count (modalities with none included)."""
        counts = dict(ExamSpec.objects.filter(active=True).values_list("modality").annotate(n=Count("id")))
        return [{"modality": m.value, "label": m.label, "exam_count": counts.get(m.value, 0)}
                for m in terms.Modality]


def catalog_stamp() -> tuple[int, str, object]:
    """(active exam count, version string, last change) in one query.

    The version changes whenever an exam is added, removed or saved: it hashes the total count
    and the latest ``updated_at``.
    """
    agg = ExamSpec.objects.aggregate(
        total=Count("id"), active=Count("id", filter=Q(active=True)), last=Max("updated_at")
    )
    last = agg["last"]
    digest = hashlib.sha1(f"{agg['total']}:{last.isoformat() if last else ''}".encode()).hexdigest()[:12]
    return agg["active"], digest, last
