"""The runs, scenarios and endpoints API: thin views over :mod:`simulations.services`.

Runs: ``POST runs`` (202, executed in the background), ``GET runs`` (paginated, ``?status=``),
``GET runs/<id>``, ``GET runs/<id>/events?after=<seq>`` (polling), ``POST runs/<id>/cancel``.
Scenarios and endpoints: read for every API client, write for staff sessions only;
``POST endpoints/<id>/check`` does a C-ECHO (PS3.7 §9.1.5) or an MLLP NMD^N02 round trip.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.permissions import StaffWritesOnly
from simulations.endpoints import CommitListen
from simulations.events import event_dict
from simulations.models import Endpoint, Run, RunEvent, Scenario
from simulations.services import endpoint_check, endpoint_create, run_cancel, run_start, scenario_create
from yeeter.api import (
    ApiError,
    StrictBooleanField,
    StrictIntegerField,
    error_responses,
    reject_unknown_fields,
    validated_query,
)

MAX_SEED = 2**63 - 1
MAX_PATIENTS = 100_000
EVENTS_PAGE = 500
# A check answers an HTTP request: never hold it for an endpoint's long read timeout.
CHECK_TIMEOUT_CAP_S = 10.0
# SQLite and PostgreSQL integers are 64-bit: larger ids or offsets cannot exist, and must not reach the DB.
MAX_DB_INT = 2**63 - 1


def _run_or_404(run_id: str) -> Run:
    try:
        pk = uuid.UUID(run_id)
    except ValueError:
        raise NotFound(f"No run with id {run_id!r}: run ids are UUIDs.") from None
    run = Run.objects.filter(pk=pk).first()
    if run is None:
        raise NotFound(f"No run with id {run_id}.")
    return run


def _endpoint_or_404(endpoint_id: str) -> Endpoint:
    if not endpoint_id.isascii() or not endpoint_id.isdigit() or int(endpoint_id) > MAX_DB_INT:
        raise NotFound(f"No endpoint with id {endpoint_id!r}: endpoint ids are whole numbers.")
    endpoint = Endpoint.objects.filter(pk=int(endpoint_id)).first()
    if endpoint is None:
        raise NotFound(f"No endpoint with id {endpoint_id}.")
    return endpoint


def _run_links(request: Request, run: Run) -> dict[str, str]:
    def url(name: str) -> str:
        return request.build_absolute_uri(reverse(f"simulations:{name}", kwargs={"run_id": str(run.pk)}))

    return {"url": url("run-detail"), "events_url": url("run-events"), "cancel_url": url("run-cancel")}


class RunOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    scenario = serializers.CharField(source="scenario_name", allow_blank=True,
                                     help_text="Scenario name; empty for inline steps.")
    status = serializers.ChoiceField(Run.Status.choices)
    patient_count = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    seed = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    summary = serializers.DictField()
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()
    cancel_url = serializers.SerializerMethodField()

    def _link(self, run: Run, name: str) -> str:
        return _run_links(self.context["request"], run)[name]

    def get_url(self, run: Run) -> str:
        return self._link(run, "url")

    def get_events_url(self, run: Run) -> str:
        return self._link(run, "events_url")

    def get_cancel_url(self, run: Run) -> str:
        return self._link(run, "cancel_url")


class RunListCreateApi(APIView):
    """``GET``: runs, newest first, paginated and filterable by status. ``POST``: start a run."""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(Run.Status.choices, required=False)
        limit = StrictIntegerField(required=False, min_value=1, max_value=200, help_text="Page size (50).")
        offset = StrictIntegerField(required=False, min_value=0, max_value=MAX_DB_INT)

    class PageSerializer(serializers.Serializer):
        count = serializers.IntegerField()
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)
        results = RunOutputSerializer(many=True)

    class InputSerializer(serializers.Serializer):
        scenario = serializers.CharField(required=False, max_length=100,
                                         help_text="Name of a stored scenario (or give steps).")
        steps = serializers.JSONField(required=False,
                                      help_text='Inline steps, e.g. [{"step_type": "GENERATE_HL7", "modality": "MR"}].')
        patients = StrictIntegerField(required=False, min_value=1, max_value=MAX_PATIENTS)
        concurrency = StrictIntegerField(required=False, min_value=1, max_value=256)
        seed = StrictIntegerField(required=False, min_value=0, max_value=MAX_SEED)
        endpoints = serializers.ListField(child=StrictIntegerField(min_value=1, max_value=MAX_DB_INT),
                                          required=False, max_length=50,
                                          help_text="Endpoint ids; kinds nobody serves use the built-in receivers.")
        send = StrictBooleanField(required=False, default=True,
                                  help_text="false: generate and record only, send nothing.")
        max_instances_per_series = StrictIntegerField(required=False, min_value=1, max_value=5000)
        validate_hl7 = StrictBooleanField(required=False, default=False)
        commit_listen = serializers.CharField(
            required=False, max_length=300,
            help_text="[AET@][HOST:]PORT where the PACS sends Storage Commitment reports on a new association "
                      "(register it in the PACS); default: the commitment endpoint's listen address, if any.")

        def validate_commit_listen(self, value: str) -> CommitListen:
            try:
                return CommitListen.parse(value, ae_title=settings.YEETER["AE_TITLE"])
            except ValueError as exc:
                raise serializers.ValidationError(f"{exc}.") from None

        def validate(self, data: dict) -> dict:
            if ("scenario" in data) == ("steps" in data):
                raise serializers.ValidationError("Give either a scenario name or inline steps (exactly one).")
            if "scenario" in data:
                scenario = Scenario.objects.prefetch_related("endpoints").filter(name=data["scenario"]).first()
                if scenario is None:
                    raise serializers.ValidationError({"scenario": f"No scenario named {data['scenario']!r}."})
                data["scenario"] = scenario
            return data

    class CreatedSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        status = serializers.CharField()
        url = serializers.URLField()
        events_url = serializers.URLField()
        cancel_url = serializers.URLField()

    @extend_schema(operation_id="runs_list", parameters=[FilterSerializer],
                   responses={200: PageSerializer, **error_responses()})
    def get(self, request: Request) -> Response:
        filters = validated_query(request, self.FilterSerializer)
        runs = Run.objects.order_by("-created_at", "pk")
        if "status" in filters:
            runs = runs.filter(status=filters["status"])
        paginator = LimitOffsetPagination()
        paginator.default_limit = 50
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(RunOutputSerializer(page, many=True,
                                                                    context={"request": request}).data)

    @extend_schema(operation_id="runs_create", request=InputSerializer,
                   responses={202: CreatedSerializer, **error_responses()})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        reject_unknown_fields(request.data, serializer)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        scenario = data.get("scenario")
        run = run_start(
            scenario=scenario, steps_json=scenario.steps if scenario else data["steps"],
            patients=data.get("patients"), concurrency=data.get("concurrency"), seed=data.get("seed"),
            endpoint_ids=data.get("endpoints", []), send=data["send"],
            max_instances_per_series=data.get("max_instances_per_series"), validate_hl7=data["validate_hl7"],
            commit_listen=data.get("commit_listen"),
        )
        links = _run_links(request, run)
        return Response({"id": run.pk, "status": run.status, **links}, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": links["url"]})


class RunPatientOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
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


class RunDetailApi(APIView):
    """A run's summary and one row per patient with the exam bound to it and its verification result."""

    class OutputSerializer(RunOutputSerializer):
        steps = serializers.JSONField()
        patients = RunPatientOutputSerializer(many=True, source="patient_rows")

    @extend_schema(operation_id="runs_retrieve", responses={200: OutputSerializer, **error_responses(404)})
    def get(self, request: Request, run_id: str) -> Response:
        validated_query(request, serializers.Serializer)
        run = _run_or_404(run_id)
        # Two queries whatever the patient count: the run, then its rows.
        run.patient_rows = list(run.patients.order_by("index"))
        return Response(self.OutputSerializer(run, context={"request": request}).data)


class RunEventsApi(APIView):
    """Events after ``seq`` in order (at most 500 a call), for clients that poll instead of using the WebSocket."""

    class FilterSerializer(serializers.Serializer):
        after = StrictIntegerField(required=False, default=0, min_value=0, max_value=MAX_DB_INT,
                                         help_text="Return events with a larger seq (0: from the start).")
        limit = StrictIntegerField(required=False, default=EVENTS_PAGE, min_value=1, max_value=EVENTS_PAGE)

    class EventSerializer(serializers.Serializer):
        seq = serializers.IntegerField()
        type = serializers.CharField()
        level = serializers.CharField()
        message = serializers.CharField(allow_blank=True)
        patient = serializers.IntegerField(allow_null=True, help_text="Patient index, null for run-wide events.")
        step_index = serializers.IntegerField(allow_null=True)
        step_type = serializers.CharField(allow_blank=True)
        payload = serializers.DictField()
        created_at = serializers.DateTimeField()

    class OutputSerializer(serializers.Serializer):
        run = serializers.UUIDField()
        status = serializers.CharField()
        finished = serializers.BooleanField(help_text="No more events will come once this is true and you "
                                                      "have read up to last_seq.")
        last_seq = serializers.IntegerField(help_text="Pass as after= on the next poll.")
        events = serializers.ListField(child=serializers.DictField())

    @extend_schema(operation_id="runs_events", parameters=[FilterSerializer],
                   responses={200: OutputSerializer, **error_responses(404)})
    def get(self, request: Request, run_id: str) -> Response:
        query = validated_query(request, self.FilterSerializer)
        run = _run_or_404(run_id)
        rows = (RunEvent.objects.filter(run=run, seq__gt=query["after"]).select_related("patient")
                .order_by("seq")[:query["limit"]])
        events = [event_dict(e, e.patient.index if e.patient is not None else None) for e in rows]
        return Response({"run": run.pk, "status": run.status, "finished": run.is_finished,
                         "last_seq": events[-1]["seq"] if events else query["after"], "events": events})


class RunCancelApi(APIView):
    """Ask a run to stop; patients not finished yet end as cancelled."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        status = serializers.CharField()
        cancel_requested = serializers.BooleanField()

    @extend_schema(operation_id="runs_cancel", request=None,
                   responses={202: OutputSerializer, **error_responses(404, 409)})
    def post(self, request: Request, run_id: str) -> Response:
        run = _run_or_404(run_id)
        if run.is_finished:
            raise ApiError(f"Run {run.pk} already finished ({run.status}); there is nothing to cancel.",
                           code="run_finished", status_code=status.HTTP_409_CONFLICT)
        run = run_cancel(run=run)
        return Response({"id": run.pk, "status": run.status, "cancel_requested": run.cancel_requested},
                        status=status.HTTP_202_ACCEPTED)


# -- scenarios and endpoints ---------------------------------------------------------------------

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


class ScenarioListCreateApi(APIView):
    """``GET``: the stored scenarios. ``POST`` (staff session): add one, its steps validated first."""

    permission_classes = [StaffWritesOnly]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        steps = serializers.JSONField()
        default_patients = StrictIntegerField(required=False, default=1, min_value=1, max_value=MAX_PATIENTS)
        concurrency = StrictIntegerField(required=False, default=4, min_value=1, max_value=256)
        arrival = serializers.ChoiceField(Scenario.Arrival.choices, required=False,
                                          default=Scenario.Arrival.ALL_AT_ONCE)
        rate_per_hour = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0.001,
                                               max_value=1e6)
        endpoints = serializers.PrimaryKeyRelatedField(queryset=Endpoint.objects.all(), many=True, required=False)

    @extend_schema(operation_id="scenarios_list", responses={200: ScenarioOutputSerializer(many=True),
                                                             **error_responses()})
    def get(self, request: Request) -> Response:
        validated_query(request, serializers.Serializer)
        scenarios = Scenario.objects.prefetch_related("endpoints").order_by("name")
        return Response(ScenarioOutputSerializer(scenarios, many=True).data)

    @extend_schema(operation_id="scenarios_create", request=InputSerializer,
                   responses={201: ScenarioOutputSerializer, **error_responses()})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        reject_unknown_fields(request.data, serializer)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        endpoints = data.pop("endpoints", [])
        scenario = scenario_create(fields=data, endpoints=endpoints)  # ScenarioError: 400 per step and field
        return Response(ScenarioOutputSerializer(scenario).data, status=status.HTTP_201_CREATED)


ENDPOINT_FIELDS = ["name", "kind", "host", "port", "ae_title", "calling_ae_title", "hl7_receiving_application",
                   "hl7_receiving_facility", "hl7_version", "folder", "connect_timeout", "timeout", "tls",
                   "tls_verify", "tls_ca_file", "listen_host", "listen_port"]


class EndpointOutputSerializer(serializers.ModelSerializer):
    address = serializers.CharField(read_only=True)

    class Meta:
        model = Endpoint
        fields = ["id", *ENDPOINT_FIELDS, "address"]


class EndpointListCreateApi(APIView):
    """``GET``: the configured peers. ``POST`` (staff session): add one."""

    permission_classes = [StaffWritesOnly]

    class InputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Endpoint
            fields = ENDPOINT_FIELDS

    @extend_schema(operation_id="endpoints_list", responses={200: EndpointOutputSerializer(many=True),
                                                             **error_responses()})
    def get(self, request: Request) -> Response:
        validated_query(request, serializers.Serializer)
        return Response(EndpointOutputSerializer(Endpoint.objects.order_by("name"), many=True).data)

    @extend_schema(operation_id="endpoints_create", request=InputSerializer,
                   responses={201: EndpointOutputSerializer, **error_responses()})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        reject_unknown_fields(request.data, serializer)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoint_create(fields=serializer.validated_data)  # Endpoint.clean() rules: 400 per field
        return Response(EndpointOutputSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointCheckApi(APIView):
    """Is the peer there? C-ECHO for DICOM endpoints, an NMD^N02 round trip for HL7, a writable folder
    for worklist folders. A peer that does not answer is a result (``ok: false``), not an API error."""

    class OutputSerializer(serializers.Serializer):
        endpoint = serializers.IntegerField()
        name = serializers.CharField()
        kind = serializers.CharField()
        address = serializers.CharField()
        method = serializers.CharField(help_text="C-ECHO, MLLP NMD^N02 or folder.")
        ok = serializers.BooleanField()
        latency_ms = serializers.FloatField(allow_null=True)
        error = serializers.CharField(allow_null=True)

    @extend_schema(operation_id="endpoints_check", request=None,
                   responses={200: OutputSerializer, **error_responses(404)})
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(endpoint_id)
        method, latency, error = endpoint_check(endpoint=endpoint, timeout_cap=CHECK_TIMEOUT_CAP_S)
        return Response({"endpoint": endpoint.pk, "name": endpoint.name, "kind": endpoint.kind,
                         "address": endpoint.address, "method": method, "ok": error is None,
                         "latency_ms": round(latency * 1000, 3) if latency is not None else None, "error": error})
