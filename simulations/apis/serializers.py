"""What the runs, scenarios and endpoints API answers (output serializers), and the bounds its inputs share.

The views' own input, filter and answer serializers stay nested in them (:mod:`.runs`, :mod:`.scenarios`,
:mod:`.endpoints`); these are the ones several operations return.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from simulations.models import Endpoint, Run, Scenario
from simulations.options import TRANSFER_SYNTAX_UIDS

MAX_SEED = 2**63 - 1
# Absolute bounds of the fields; the deployment's quotas (settings.LIMITS) are checked by run_start and
# named in its 400/429 answers.
MAX_PATIENTS = 100_000
MAX_INSTANCES = 5000
LIMITS = settings.LIMITS

# SQLite and PostgreSQL integers are 64-bit: larger ids or offsets cannot exist, and must not reach the DB.
MAX_DB_INT = 2**63 - 1


def run_links(request: Request, run: Run) -> dict[str, str]:
    """The run's API operations, its page on the simulator (issue 9's ``/simulator/runs/<id>/``) and the
    base of its files there (``files/<path inside the run folder>``)."""
    def url(name: str) -> str:
        return request.build_absolute_uri(reverse(f"simulations:{name}", kwargs={"run_id": str(run.pk)}))

    page = request.build_absolute_uri(f"/simulator/runs/{run.pk}/")
    return {"url": url("run-detail"), "events_url": url("run-events"), "cancel_url": url("run-cancel"),
            "page_url": page, "files_url": page + "files/"}


def owner_label(run: Run) -> str | None:
    if run.api_key_id is not None:
        return f"apikey:{run.api_key.name}" if run.api_key else None
    return run.owner.get_username() if run.owner_id is not None and run.owner else None


@extend_schema_field(OpenApiTypes.URI)
class RunLinkField(serializers.Field):
    """The run's link of the field's own name (``url``, ``events_url``, ...: :func:`run_links`), read-only."""

    def __init__(self, **kwargs) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, run: Run) -> str:
        return run_links(self.context["request"], run)[self.field_name]


class RunOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    scenario = serializers.CharField(source="scenario_name", allow_blank=True,
                                     help_text="Scenario name; empty for inline steps.")
    status = serializers.ChoiceField(Run.Status.choices)
    owner = serializers.SerializerMethodField(help_text='Who started it: a user name, "apikey:<key name>", or '
                                                        "null (runsim, admin).")
    patient_count = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    seed = serializers.IntegerField()
    arrival = serializers.ChoiceField(Scenario.Arrival.choices)
    rate_per_hour = serializers.FloatField(allow_null=True, help_text="Mean Poisson arrival rate (patients/hour).")
    speed = serializers.SerializerMethodField(help_text="Arrival gaps and waits are divided by this factor.")
    transfer_syntax = serializers.SerializerMethodField()
    max_instances_per_series = serializers.SerializerMethodField()
    cancel_requested = serializers.BooleanField()
    summary = serializers.DictField()
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    url = RunLinkField()
    events_url = RunLinkField()
    cancel_url = RunLinkField()
    page_url = RunLinkField(help_text="The run on the simulator page (login).")
    files_url = RunLinkField(help_text="Base URL of the run's files on the simulator page: "
                                       "append a path inside the run folder.")

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_owner(self, run: Run) -> str | None:
        return owner_label(run)

    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_speed(self, run: Run) -> float:
        return float(run.options.get("speed", 1.0))

    @extend_schema_field(serializers.ChoiceField(sorted(TRANSFER_SYNTAX_UIDS)))
    def get_transfer_syntax(self, run: Run) -> str:
        return str(run.options.get("transfer_syntax", "explicit"))

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_max_instances_per_series(self, run: Run) -> int | None:
        return run.options.get("max_instances_per_series")


class RunPatientOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField(help_text="The patient's number in the run, from 1 (as in events, the page "
                                                "and runsim).")
    status = serializers.CharField()
    exam_id = serializers.CharField(source="exam_code", allow_blank=True, help_text="The exam bound to the order.")
    exam_name = serializers.CharField(allow_blank=True)
    modality = serializers.CharField(allow_blank=True)
    cpt_code = serializers.CharField(allow_blank=True)
    patient_id = serializers.CharField(allow_blank=True)
    patient_name = serializers.CharField(allow_blank=True)
    accession_number = serializers.CharField(allow_blank=True)
    study_instance_uid = serializers.CharField(allow_blank=True)
    instances = serializers.IntegerField()
    bytes = serializers.IntegerField()
    verification = serializers.DictField(help_text="Did every output carry the order's identity (empty until "
                                                   "the patient finished).")
    error = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    page_url = serializers.SerializerMethodField(help_text="The patient's story on the simulator page (login).")

    @extend_schema_field(OpenApiTypes.URI)
    def get_page_url(self, patient) -> str:
        return self.context["request"].build_absolute_uri(
            f"/simulator/runs/{patient.run_id}/patients/{patient.number}/")


class ScenarioOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    steps = serializers.JSONField()
    default_patients = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    arrival = serializers.CharField()
    rate_per_hour = serializers.FloatField(allow_null=True)
    endpoints = serializers.SerializerMethodField(help_text="Ids of the scenario's default endpoints.")

    def get_endpoints(self, scenario: Scenario) -> list[int]:
        return [e.pk for e in scenario.endpoints.all()]  # prefetched: no query per scenario


ENDPOINT_FIELDS = ["name", "kind", "host", "port", "ae_title", "calling_ae_title", "hl7_receiving_application",
                   "hl7_receiving_facility", "hl7_version", "folder", "connect_timeout", "timeout", "tls",
                   "tls_verify", "tls_ca_file", "listen_host", "listen_port"]


class EndpointOutputSerializer(serializers.ModelSerializer):
    address = serializers.CharField(read_only=True)

    class Meta:
        model = Endpoint
        fields = ["id", *ENDPOINT_FIELDS, "address"]
