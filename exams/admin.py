"""Catalog curation in Django admin: exams with their codes and series inline, and the indication vocabulary."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from exams import rules
from exams.models import ExamSpec, Indication, ProcedureCode, SeriesProtocol
from exams.services import exam_duplicate
from exams.vocabulary import indication_filter

DRAWABLE_SHOWN = 25  # rows listed on an exam's page; the rest are summarised


class _RuleFormSet(BaseInlineFormSet):
    """Inline formset that applies one of :mod:`exams.rules` to the rows that will be saved."""

    def live_rows(self) -> list[dict]:
        rows = []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            rows.append(form.cleaned_data)
        return rows

    def raise_problems(self, problems: list[rules.Problem]) -> None:
        if problems:
            raise ValidationError([p.message for p in problems])


class ProcedureCodeFormSet(_RuleFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        rows = sorted(self.live_rows(), key=lambda r: r.get("order") or 0)
        self.raise_problems(rules.check_codes(rows))


class SeriesProtocolFormSet(_RuleFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        self.raise_problems(rules.check_series(self.instance.modality, self.live_rows()))


class ProcedureCodeInline(admin.TabularInline):
    model = ProcedureCode
    formset = ProcedureCodeFormSet
    extra = 0
    fields = ("order", "scheme", "code", "display")


class SeriesProtocolInline(admin.StackedInline):
    model = SeriesProtocol
    formset = SeriesProtocolFormSet
    extra = 0
    fieldsets = (
        (None, {"fields": (("number", "description", "protocol_name", "instance_count"), ("role", "plane"))}),
        ("MR", {"fields": (("sequence_name", "weighting", "fat_sat"),), "classes": ("collapse",)}),
        ("CT / X-ray", {"fields": (("slice_thickness_mm", "kvp", "contrast_phase", "kernel"), "window"),
                        "classes": ("collapse",)}),
        ("Projection (DX/CR/MG)", {"fields": (("view_position", "image_laterality"), "projection"),
                                   "classes": ("collapse",)}),
        ("Multi-frame (XA/RF/US cine)", {"fields": ("frames",), "classes": ("collapse",)}),
        ("Scene (NM/US)", {"fields": ("scene",)}),  # not collapsed: an NM or US series cannot be saved without it
    )


class CareSettingFilter(admin.SimpleListFilter):
    title = "care setting"
    parameter_name = "setting"

    def lookups(self, request, model_admin):
        return [("outpatient", "Outpatient"), ("inpatient", "Inpatient"), ("emergency", "Emergency")]

    def queryset(self, request, queryset):
        if self.value() in {"outpatient", "inpatient", "emergency"}:
            return queryset.filter(**{f"for_{self.value()}": True})
        return queryset


@admin.register(ExamSpec)
class ExamSpecAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "modality", "body_part", "laterality", "purpose", "contrast", "settings", "weight",
                    "primary_cpt", "active", "simulate")
    list_filter = ("modality", "body_part", "purpose", CareSettingFilter, "contrast", "active")
    search_fields = ("id", "name", "description", "codes__code")
    list_per_page = 100
    inlines = (ProcedureCodeInline, SeriesProtocolInline)
    readonly_fields = ("created_at", "updated_at", "drawable_indications")
    actions = ("duplicate_exams", "activate_exams", "deactivate_exams")
    fieldsets = (
        (None, {"fields": ("id", "name", "description", ("modality", "body_part", "laterality"), "purpose",
                           "active")}),
        ("Selection", {"fields": (("for_outpatient", "for_inpatient", "for_emergency"), "weight",
                                  ("min_age", "max_age", "required_sex"))}),
        ("Indications its orders can draw", {"fields": ("drawable_indications",)}),
        ("Contrast and timing", {"fields": (("contrast", "contrast_agent", "contrast_volume_ml"),
                                            "estimated_duration_min")}),
        ("History", {"fields": (("created_at", "updated_at"),)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExamSpec]:
        return super().get_queryset(request).prefetch_related("codes")

    def get_readonly_fields(self, request, obj=None):
        # The id is the primary key and is referenced by scenarios and runs: fixed once created.
        return (*self.readonly_fields, "id") if obj is not None else self.readonly_fields

    @admin.display(description="indications")
    def drawable_indications(self, exam: ExamSpec) -> str:
        """The vocabulary rows an order for this exam can draw (the same filter as the draw itself)."""
        if exam is None or not exam.pk:
            return "Saved exams show the indications their orders can draw."
        rows = list(Indication.objects.filter(indication_filter(exam.to_info()))
                    .order_by("-weight", "icd10", "text")[:DRAWABLE_SHOWN + 1])
        if not rows:
            return format_html("<strong>None</strong>: orders for this exam fail (no {} indication fits it).",
                               exam.get_purpose_display().lower())
        items = format_html_join("", "<li>{} {} ({}, weight {}){}</li>", (
            (r.icd10, r.text, r.get_purpose_display().lower(), r.weight,
             f" + {r.secondary_icd10}" if r.secondary_icd10 else "") for r in rows[:DRAWABLE_SHOWN]))
        more = format_html("<li>… and more</li>") if len(rows) > DRAWABLE_SHOWN else ""
        return format_html("<ul style='margin:0;padding-left:1.2em'>{}{}</ul>", items, more)

    @admin.display(description="settings")
    def settings(self, exam: ExamSpec) -> str:
        return ", ".join(exam.care_settings)

    @admin.display(description="simulator")
    def simulate(self, exam: ExamSpec) -> str:
        """Launch this exam on the simulator page (pinned)."""
        if not exam.active:
            return "–"
        url = reverse("simulator:launch") + "?" + urlencode({"source": "exam", "exam_id": exam.id})
        return format_html('<a href="{}">simulate</a>', url)

    @admin.display(description="CPT")
    def primary_cpt(self, exam: ExamSpec) -> str:
        codes = list(exam.codes.all())
        return codes[0].code if codes else "—"

    @admin.action(description="Duplicate selected exams (as inactive copies)")
    def duplicate_exams(self, request: HttpRequest, queryset: QuerySet[ExamSpec]) -> None:
        with transaction.atomic():
            copies = [exam_duplicate(exam=exam) for exam in queryset.prefetch_related("codes", "series")]
        self.message_user(request, f"Created {len(copies)} inactive cop{'y' if len(copies) == 1 else 'ies'}: "
                                   + ", ".join(c.id for c in copies), messages.SUCCESS)

    @admin.action(description="Activate selected exams")
    def activate_exams(self, request: HttpRequest, queryset: QuerySet[ExamSpec]) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected exams")
    def deactivate_exams(self, request: HttpRequest, queryset: QuerySet[ExamSpec]) -> None:
        self._set_active(request, queryset, False)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[ExamSpec], active: bool) -> None:
        exams = list(queryset)
        for exam in exams:
            exam.active = active
            exam.save(update_fields=["active", "updated_at"])
        self.message_user(request, f"{'Activated' if active else 'Deactivated'} {len(exams)} exam(s).",
                          messages.SUCCESS)


@admin.register(Indication)
class IndicationAdmin(admin.ModelAdmin):
    list_display = ("icd10", "text", "purpose", "secondary_icd10", "body_part", "modality", "laterality", "min_age",
                    "max_age", "sex", "weight", "active")
    list_filter = ("purpose", "modality", "body_part", "sex", "active")
    search_fields = ("icd10", "text", "secondary_icd10")
    list_per_page = 100
