"""The exam catalog: what a department performs, curated in Django admin.

``ExamSpec`` is the single source of truth for everything an order implies (DESIGN.md): the HL7
order, the worklist entry and every DICOM instance take modality, body part, laterality,
description and codes from here, through :meth:`ExamSpec.to_info`.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from exams import choices, rules
from generators import terms
from generators.types import Code, ExamInfo, SeriesSpec
from generators.types import Indication as IndicationValue


def _raise(problems: list[rules.Problem]) -> None:
    if problems:
        errors: dict[str, list[str]] = {}
        for p in problems:
            errors.setdefault(p.field if p.field not in {"codes", "series", "care_settings"} else "__all__", []).append(
                p.message
            )
        raise ValidationError(errors)


class ExamSpec(models.Model):
    """One orderable exam (e.g. ``MR-KNEE-RIGHT-WO``): its codes, constraints and series protocols."""

    id = models.CharField(
        primary_key=True,
        max_length=40,
        validators=[RegexValidator(rules.EXAM_ID_RE, "Use upper-case letters/digits in dash-separated parts.")],
        help_text="Readable identifier, e.g. MR-KNEE-RIGHT-WO.",
    )
    name = models.CharField(max_length=200)
    description = models.CharField(
        max_length=64, help_text="Order text: HL7 OBR-4.2, DICOM StudyDescription and RequestedProcedureDescription."
    )
    modality = models.CharField(max_length=2, choices=choices.Modality.choices)
    body_part = models.CharField(max_length=16, choices=choices.BODY_PART_CHOICES,
                                 help_text="DICOM Body Part Examined defined term.")
    laterality = models.CharField(max_length=1, choices=choices.Laterality.choices, blank=True, default="")
    for_outpatient = models.BooleanField("outpatient", default=True)
    for_inpatient = models.BooleanField("inpatient", default=False)
    for_emergency = models.BooleanField("emergency", default=False)
    weight = models.PositiveIntegerField(default=10, help_text="Relative selection weight (real volumes).")
    min_age = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(130)])
    max_age = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(130)])
    required_sex = models.CharField(max_length=1, blank=True, default="",
                                    choices=[("", "Any")] + [c for c in choices.Sex.choices if c[0] != "O"])
    contrast = models.CharField(max_length=20, choices=choices.Contrast.choices, default=choices.Contrast.NONE)
    contrast_agent = models.CharField(max_length=64, blank=True, default="")
    contrast_volume_ml = models.DecimalField(max_digits=6, decimal_places=1, null=True, blank=True,
                                             validators=[MinValueValidator(0)])
    estimated_duration_min = models.PositiveSmallIntegerField(default=20, validators=[MinValueValidator(1)])
    purpose = models.CharField(max_length=16, choices=choices.Purpose.choices, default=choices.Purpose.DIAGNOSTIC,
                               help_text="Why the exam is done; decides which indications its orders draw.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "exam"
        indexes = [models.Index(fields=["active", "modality", "body_part"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_age__isnull=True) | models.Q(max_age__isnull=True)
                | models.Q(min_age__lte=models.F("max_age")),
                name="examspec_min_age_lte_max_age",
            ),
            models.CheckConstraint(condition=models.Q(weight__gte=0), name="examspec_weight_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.id} – {self.name}"

    @property
    def care_settings(self) -> list[str]:
        return [s for s, flag in (("outpatient", self.for_outpatient), ("inpatient", self.for_inpatient),
                                  ("emergency", self.for_emergency)) if flag]

    def clean(self) -> None:
        _raise(rules.check_exam(self.rule_fields()))

    def rule_fields(self) -> dict:
        return {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}

    def to_info(self) -> ExamInfo:
        """The immutable generator-side view. Uses ``codes``/``series`` prefetches when present."""
        return ExamInfo(
            id=self.id,
            name=self.name,
            description=self.description,
            modality=terms.Modality(self.modality),
            body_part=self.body_part,
            laterality=terms.Laterality(self.laterality),
            codes=tuple(c.to_code() for c in self.codes.all()),
            series=tuple(s.to_spec() for s in self.series.all()),
            contrast=terms.Contrast(self.contrast),
            contrast_agent=self.contrast_agent,
            contrast_volume_ml=float(self.contrast_volume_ml) if self.contrast_volume_ml is not None else None,
            estimated_duration_min=self.estimated_duration_min,
            care_settings=tuple(terms.CareSetting(s) for s in self.care_settings),
            min_age=self.min_age,
            max_age=self.max_age,
            required_sex=terms.Sex(self.required_sex) if self.required_sex else None,
            purpose=terms.Purpose(self.purpose),
        )


class ProcedureCode(models.Model):
    """A code of an exam: CPT (C4) first — the order's primary code — then LOINC (LN) / RadLex (RPID)."""

    exam = models.ForeignKey(ExamSpec, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=16)
    scheme = models.CharField(max_length=4, choices=[c for c in choices.CodingScheme.choices if c[0] != "I10C"],
                              default="C4")
    display = models.CharField(max_length=64)
    order = models.PositiveSmallIntegerField(default=0, help_text="0 is the primary code.")

    class Meta:
        ordering = ["exam_id", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["exam", "scheme", "code"], name="procedurecode_unique_per_exam")]
        indexes = [models.Index(fields=["scheme", "code"])]

    def __str__(self) -> str:
        return f"{self.code} ({self.scheme}) {self.display}"

    def to_code(self) -> Code:
        return Code(self.code, terms.CodingScheme(self.scheme), self.display)


class SeriesProtocol(models.Model):
    """One series the exam acquires, with the modality-specific fields the DICOM generator needs."""

    exam = models.ForeignKey(ExamSpec, on_delete=models.CASCADE, related_name="series")
    number = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    description = models.CharField(max_length=64)
    protocol_name = models.CharField(max_length=64)
    instance_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(5000)])
    role = models.CharField(max_length=10, choices=choices.SeriesRole.choices, default=choices.SeriesRole.PRIMARY)
    plane = models.CharField(max_length=3, choices=choices.Plane.choices, blank=True, default="")
    sequence_name = models.CharField(max_length=16, blank=True, default="", help_text="MR pulse sequence, e.g. TSE.")
    weighting = models.CharField(max_length=10, choices=choices.Weighting.choices, blank=True, default="")
    fat_sat = models.BooleanField(default=False)
    slice_thickness_mm = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True,
                                             validators=[MinValueValidator(0)])
    kvp = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(200)])
    contrast_phase = models.CharField(max_length=16, choices=choices.ContrastPhase.choices, blank=True, default="")
    kernel = models.CharField(max_length=16, blank=True, default="")
    view_position = models.CharField(max_length=4, choices=choices.VIEW_POSITION_CHOICES, blank=True, default="")
    image_laterality = models.CharField(max_length=1, choices=choices.Laterality.choices, blank=True, default="")
    window = models.CharField(max_length=16, choices=choices.WindowPreset.choices, blank=True, default="",
                              help_text="CT: the window the series is read (and previewed) in.")
    projection = models.CharField(max_length=24, choices=choices.Projection.choices, blank=True, default="",
                                  help_text="DX/CR: how the beam crosses the part when the view position "
                                            "cannot say it (oblique, mortise, sunrise).")
    frames = models.PositiveSmallIntegerField(
        default=1, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Frames per instance: more than 1 makes each instance a multi-frame run or cine loop (XA, RF, US).")
    scene = models.CharField(max_length=16, choices=choices.Scene.choices, blank=True, default="",
                             help_text="NM/US: what the series shows; it decides the tracer and collimator (NM) or "
                                       "the transducer (US). Blank for every other modality.")

    class Meta:
        ordering = ["exam_id", "number"]
        constraints = [models.UniqueConstraint(fields=["exam", "number"], name="seriesprotocol_unique_number")]

    def __str__(self) -> str:
        return f"{self.number}: {self.description}"

    def clean(self) -> None:
        """The scene fits the exam's modality (:func:`rules.check_scene`). The admin inline and the catalog
        loader attach the exam (saved or not) before they clean a series, so both report it on ``scene``."""
        try:
            modality = self.exam.modality
        except SeriesProtocol.exam.RelatedObjectDoesNotExist:
            return  # a series without its exam: no modality to check the scene against
        _raise(rules.check_scene(modality, self.scene))

    def to_spec(self) -> SeriesSpec:
        return SeriesSpec(
            number=self.number,
            description=self.description,
            protocol_name=self.protocol_name,
            instance_count=self.instance_count,
            role=terms.SeriesRole(self.role),
            plane=terms.Plane(self.plane),
            sequence_name=self.sequence_name,
            weighting=terms.Weighting(self.weighting) if self.weighting else None,
            fat_sat=self.fat_sat,
            slice_thickness_mm=float(self.slice_thickness_mm) if self.slice_thickness_mm is not None else None,
            kvp=self.kvp,
            contrast_phase=terms.ContrastPhase(self.contrast_phase),
            kernel=self.kernel,
            view_position=self.view_position,
            image_laterality=terms.Laterality(self.image_laterality),
            window=terms.WindowPreset(self.window),
            projection=terms.Projection(self.projection),
            frames=self.frames,
            scene=terms.Scene(self.scene),
        )


class Indication(models.Model):
    """A reason for study (EXAMGEN-3.1 vocabulary) with its ICD-10-CM code, scoped to the exams it fits."""

    text = models.CharField(max_length=200)
    icd10 = models.CharField("ICD-10-CM", max_length=8,
                             validators=[RegexValidator(rules.ICD10_RE, "Not an ICD-10-CM code (e.g. M25.561).")])
    body_part = models.CharField(max_length=16, choices=choices.BODY_PART_CHOICES, blank=True, default="",
                                 help_text="Empty: fits any body part.")
    modality = models.CharField(max_length=2, choices=choices.Modality.choices, blank=True, default="",
                                help_text="Empty: fits any modality.")
    laterality = models.CharField(max_length=1, choices=choices.Laterality.choices, blank=True, default="",
                                  help_text="Empty: fits any side.")
    min_age = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(130)])
    max_age = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(130)])
    sex = models.CharField(max_length=1, blank=True, default="",
                           choices=[("", "Any")] + [c for c in choices.Sex.choices if c[0] != "O"])
    purpose = models.CharField(max_length=16, choices=choices.Purpose.choices, default=choices.Purpose.DIAGNOSTIC,
                               help_text="The purpose this reason implies; exams draw the purposes they admit.")
    secondary_icd10 = models.CharField(
        "secondary ICD-10-CM", max_length=8, blank=True, default="",
        validators=[RegexValidator(rules.ICD10_RE, "Not an ICD-10-CM code (e.g. W19.XXXA).")],
        help_text="Coded beside the primary: an injury's external cause, a smoking or family history.")
    secondary_text = models.CharField(max_length=200, blank=True, default="")
    weight = models.PositiveIntegerField(default=1)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["body_part", "modality", "icd10", "text"]
        constraints = [models.UniqueConstraint(fields=["icd10", "text"], name="indication_unique_code_text")]

    def __str__(self) -> str:
        return f"{self.icd10} {self.text}"

    def clean(self) -> None:
        _raise(rules.check_indication({f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}))

    def to_indication(self) -> "IndicationValue":
        return IndicationValue(text=self.text, icd10=self.icd10, secondary_icd10=self.secondary_icd10,
                               secondary_text=self.secondary_text)
