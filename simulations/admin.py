"""Scenarios and endpoints are curated in admin; runs are read-only records with their events."""

from __future__ import annotations

from django.contrib import admin

from simulations.models import Endpoint, Run, RunEvent, RunPatient, Scenario, WorklistEntry


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "address", "hl7_version", "tls")
    list_filter = ("kind", "tls")
    search_fields = ("name", "host", "ae_title")


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    list_display = ("name", "step_count", "default_patients", "concurrency", "arrival", "rate_per_hour")
    search_fields = ("name", "description")
    filter_horizontal = ("endpoints",)

    @admin.display(description="steps")
    def step_count(self, scenario: Scenario) -> int:
        return len(scenario.steps) if isinstance(scenario.steps, list) else 0


class RunPatientInline(admin.TabularInline):
    model = RunPatient
    extra = 0
    can_delete = False
    fields = ("index", "status", "exam_code", "modality", "patient_id", "accession_number", "instances", "error")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("short_id", "scenario_name", "status", "patient_count", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("id", "scenario_name")
    readonly_fields = [f.name for f in Run._meta.fields]
    inlines = (RunPatientInline,)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ("run", "seq", "type", "level", "step_type", "message")
    list_filter = ("level", "type")
    list_select_related = ("run",)
    readonly_fields = [f.name for f in RunEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WorklistEntry)
class WorklistEntryAdmin(admin.ModelAdmin):
    list_display = ("accession_number", "modality", "station_ae_title", "scheduled_at", "status")
    list_filter = ("status", "modality")
    search_fields = ("accession_number",)
