"""Scenarios and endpoints are curated in admin; runs, patients, events and worklist entries are
read-only records (no Save, no Delete), their JSON shown readably, each run linked to its page and
its events. Patients are numbered from 1, as everywhere else."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from simulations.models import Endpoint, Run, RunEvent, RunPatient, Scenario, WorklistEntry
from simulations.services import endpoint_check

CHECK_TIMEOUT_CAP_S = 10.0


def _pretty_json(value) -> str:
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
                       json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record of what happened: viewable, never edited or deleted from admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "address", "hl7_version", "tls")
    list_filter = ("kind", "tls")
    search_fields = ("name", "host", "ae_title")
    actions = ["check_endpoints"]

    @admin.action(description="Check the selected endpoints (C-ECHO / MLLP round trip)")
    def check_endpoints(self, request, queryset) -> None:
        for endpoint in queryset:
            method, latency, error = endpoint_check(endpoint=endpoint, timeout_cap=CHECK_TIMEOUT_CAP_S)
            if error is None:
                took = f" in {latency * 1000:.1f} ms" if latency is not None else ""
                self.message_user(request, f"{endpoint.name} ({endpoint.address}): {method} ok{took}.", messages.SUCCESS)
            else:
                self.message_user(request, f"{endpoint.name} ({endpoint.address}): {method} failed: {error}",
                                  messages.ERROR)


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
    fields = ("number", "status", "exam_code", "modality", "patient_id", "accession_number", "instances", "error",
              "story")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="patient")
    def number(self, patient: RunPatient) -> int:
        return patient.number

    @admin.display(description="story")
    def story(self, patient: RunPatient) -> str:
        url = reverse("simulator:patient", kwargs={"run_id": str(patient.run_id), "number": patient.number})
        return format_html('<a href="{}">patient story</a>', url)


_RUN_JSON = ("steps", "options", "endpoints", "summary")


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("short_id", "scenario_name", "status", "patient_count", "owner", "created_at", "finished_at",
                    "links")
    list_filter = ("status",)
    list_select_related = ("owner",)
    search_fields = ("id", "scenario_name")
    readonly_fields = ["links", *[f.name for f in Run._meta.fields if f.name not in _RUN_JSON],
                       *[f"{name}_json" for name in _RUN_JSON]]
    inlines = (RunPatientInline,)

    @admin.display(description="open")
    def links(self, run: Run) -> str:
        events = reverse("admin:simulations_runevent_changelist") + f"?run__id__exact={run.pk}"
        return format_html('<a href="{}">run page</a> · <a href="{}">events</a>',
                           reverse("simulator:run", kwargs={"run_id": str(run.pk)}), events)

    @admin.display(description="steps")
    def steps_json(self, run: Run) -> str:
        return _pretty_json(run.steps)

    @admin.display(description="options")
    def options_json(self, run: Run) -> str:
        return _pretty_json(run.options)

    @admin.display(description="endpoints")
    def endpoints_json(self, run: Run) -> str:
        return _pretty_json(run.endpoints)

    @admin.display(description="summary")
    def summary_json(self, run: Run) -> str:
        return _pretty_json(run.summary)


@admin.register(RunPatient)
class RunPatientAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "number", "status", "exam_code", "patient_name", "accession_number", "story")
    list_filter = ("status", "modality")
    list_select_related = ("run",)
    search_fields = ("accession_number", "patient_id", "patient_name", "exam_code", "run__id")
    readonly_fields = ["number", "story", *[f.name for f in RunPatient._meta.fields if f.name != "verification"],
                       "verification_json"]

    @admin.display(description="patient", ordering="index")
    def number(self, patient: RunPatient) -> int:
        return patient.number

    @admin.display(description="story")
    def story(self, patient: RunPatient) -> str:
        url = reverse("simulator:patient", kwargs={"run_id": str(patient.run_id), "number": patient.number})
        return format_html('<a href="{}">patient story</a>', url)

    @admin.display(description="verification")
    def verification_json(self, patient: RunPatient) -> str:
        return _pretty_json(patient.verification)


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ("run_link", "seq", "patient_number", "type", "level", "step_type", "message")
    list_filter = ("level", "type", "step_type")
    list_select_related = ("run", "patient")
    search_fields = ("message", "type", "run__id", "patient__accession_number", "patient__patient_id")
    readonly_fields = ["run", "seq", "patient_number", "step_index", "step_type", "type", "level", "message",
                       "payload_json", "created_at"]

    @admin.display(description="run", ordering="run")
    def run_link(self, event: RunEvent) -> str:
        return format_html('<a href="{}">{}</a>', reverse("simulator:run", kwargs={"run_id": str(event.run_id)}),
                           event.run.short_id)

    @admin.display(description="patient", ordering="patient__index")
    def patient_number(self, event: RunEvent) -> int | None:
        return event.patient.number if event.patient is not None else None

    @admin.display(description="payload")
    def payload_json(self, event: RunEvent) -> str:
        return _pretty_json(event.payload)


@admin.register(WorklistEntry)
class WorklistEntryAdmin(ReadOnlyAdmin):
    list_display = ("accession_number", "modality", "station_ae_title", "scheduled_at", "status")
    list_filter = ("status", "modality")
    search_fields = ("accession_number",)
    readonly_fields = ["patient", "accession_number", "modality", "station_ae_title", "scheduled_at", "status",
                       "dataset_json", "created_at"]

    @admin.display(description="dataset (DICOM JSON)")
    def dataset_json(self, entry: WorklistEntry) -> str:
        return _pretty_json(entry.dataset)
