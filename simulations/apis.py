"""The runs, scenarios and endpoints API: thin views over :mod:`simulations.services`.

Runs: ``POST runs`` (202, executed in the background), ``GET runs`` (paginated, ``?status=``),
``GET runs/<id>``, ``GET runs/<id>/events?after=<seq>`` (polling), ``POST runs/<id>/cancel``.
Scenarios and endpoints: read for every API client, write for staff sessions only;
``POST endpoints/<id>/check`` does a C-ECHO (PS3.7 §9.1.5) or an MLLP NMD^N02 round trip.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
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
from simulations.runner import TRANSFER_SYNTAX_UIDS
from simulations.selectors import run_visible_to, runs_visible_to
from simulations.services import endpoint_check, endpoint_create, run_cancel, run_start, scenario_create
from yeeter.api import (
    ApiError,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    error_responses,
    reject_unknown_fields,
    validated_query,
)

MAX_SEED = 2**63 - 1
# Absolute bounds of the fields; the deployment's quotas (settings.LIMITS) are checked by run_start and
# named in its 400/429 answers.
MAX_PATIENTS = 100_000
MAX_INSTANCES = 5000
LIMITS = settings.LIMITS
EVENTS_PAGE = 500
# A check answers an HTTP request: never hold it for an endpoint's long read timeout.
CHECK_TIMEOUT_CAP_S = 10.0
# SQLite and PostgreSQL integers are 64-bit: larger ids or offsets cannot exist, and must not reach the DB.
MAX_DB_INT = 2**63 - 1


def _run_or_404(request: Request, run_id: str) -> Run:
    """The run if this client may see it (:func:`simulations.selectors.run_visible_to`); a run of
    someone else is as unknown as a run that does not exist (404, never 403: ids are not disclosed)."""
    try:
        pk = uuid.UUID(run_id)
    except ValueError:
        raise NotFound(f"No run with id {run_id!r}: run ids are UUIDs.") from None
    run = run_visible_to(request.user, pk)
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
    """The run's API operations, its page on the simulator (issue 9's ``/simulator/runs/<id>/``) and the
    base of its files there (``files/<path inside the run folder>``)."""
    def url(name: str) -> str:
        return request.build_absolute_uri(reverse(f"simulations:{name}", kwargs={"run_id": str(run.pk)}))

    page = request.build_absolute_uri(f"/simulator/runs/{run.pk}/")
    return {"url": url("run-detail"), "events_url": url("run-events"), "cancel_url": url("run-cancel"),
            "page_url": page, "files_url": page + "files/"}


def _owner_label(run: Run) -> str | None:
    if run.api_key_id is not None:
        return f"apikey:{run.api_key.name}" if run.api_key else None
    return run.owner.get_username() if run.owner_id is not None and run.owner else None


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
    url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()
    cancel_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField(help_text="The run on the simulator page (login).")
    files_url = serializers.SerializerMethodField(help_text="Base URL of the run's files on the simulator page: "
                                                            "append a path inside the run folder.")

    def _link(self, run: Run, name: str) -> str:
        return _run_links(self.context["request"], run)[name]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_owner(self, run: Run) -> str | None:
        return _owner_label(run)

    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_speed(self, run: Run) -> float:
        return float(run.options.get("speed", 1.0))

    @extend_schema_field(serializers.ChoiceField(sorted(TRANSFER_SYNTAX_UIDS)))
    def get_transfer_syntax(self, run: Run) -> str:
        return str(run.options.get("transfer_syntax", "explicit"))

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_max_instances_per_series(self, run: Run) -> int | None:
        return run.options.get("max_instances_per_series")

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, run: Run) -> str:
        return self._link(run, "url")

    @extend_schema_field(OpenApiTypes.URI)
    def get_events_url(self, run: Run) -> str:
        return self._link(run, "events_url")

    @extend_schema_field(OpenApiTypes.URI)
    def get_cancel_url(self, run: Run) -> str:
        return self._link(run, "cancel_url")

    @extend_schema_field(OpenApiTypes.URI)
    def get_page_url(self, run: Run) -> str:
        return self._link(run, "page_url")

    @extend_schema_field(OpenApiTypes.URI)
    def get_files_url(self, run: Run) -> str:
        return self._link(run, "files_url")


# Every request example starts a real run against the shipped catalog and scenarios (load_catalog,
# load_scenarios) on the built-in receivers: tests/api/test_runs_api.py posts each of them.
RUN_START_EXAMPLES = [
    OpenApiExample("A shipped scenario, 2 patients, reproducible", request_only=True,
                   value={"scenario": "Full scheduled workflow", "patients": 2, "seed": 42,
                          "max_instances_per_series": 2}),
    OpenApiExample("Inline steps: one HL7 order for a right knee MR", request_only=True,
                   value={"steps": [{"step_type": "REGISTER_PATIENT"},
                                    {"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO"},
                                    {"step_type": "SEND_HL7"}], "patients": 1}),
    OpenApiExample("Poisson arrivals, 120 patients an hour, an hour in a minute", request_only=True,
                   value={"scenario": "ED CT trauma", "patients": 3, "arrival": "poisson", "rate_per_hour": 120,
                          "speed": 60, "transfer_syntax": "rle", "max_instances_per_series": 3}),
    OpenApiExample("Generate only, send nothing", request_only=True,
                   value={"steps": [{"step_type": "GENERATE_HL7", "modality": "DX", "body_part": "CHEST"},
                                    {"step_type": "GENERATE_DICOM"}], "patients": 2, "send": False,
                          "max_instances_per_series": 1}),
    OpenApiExample("Over a quota", response_only=True, status_codes=["400"], value={
        "error": {"code": "limit_exceeded", "message": "patients: 100000 asked; the limit is 1000 patients per run "
                                                       "(YEETER_MAX_PATIENTS_PER_RUN).",
                  "details": {"limit": "patients_per_run", "value": 1000, "setting": "YEETER_MAX_PATIENTS_PER_RUN"}}}),
    OpenApiExample("Too many runs in flight", response_only=True, status_codes=["429"], value={
        "error": {"code": "limit_exceeded", "message": "You have too many runs in flight: wait for one to finish or "
                                                       "cancel one; the limit is 4 runs in flight per owner "
                                                       "(YEETER_MAX_RUNS_PER_OWNER).",
                  "details": {"limit": "runs_in_flight_per_owner", "value": 4,
                              "setting": "YEETER_MAX_RUNS_PER_OWNER"}}}),
]


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
        """The body of ``POST runs``: what the simulator page's launch form has (README "Starting a run")."""

        scenario = StrictCharField(required=False, max_length=100,
                                   help_text="Name of a stored scenario (or give steps).")
        steps = serializers.ListField(child=serializers.DictField(), required=False, min_length=1, max_length=50,
                                      help_text='Inline steps, e.g. [{"step_type": "GENERATE_HL7", "modality": "MR"}, '
                                                '{"step_type": "SEND_HL7"}] (README lists step types and fields).')
        patients = StrictIntegerField(required=False, min_value=1, max_value=MAX_PATIENTS,
                                      help_text=f"Patients in the run (the scenario's default, else 1); at most "
                                                f"{LIMITS['PATIENTS_PER_RUN']} here (YEETER_MAX_PATIENTS_PER_RUN).")
        concurrency = StrictIntegerField(required=False, min_value=1, max_value=256,
                                         help_text="Patients in progress at once (the scenario's, else 4).")
        seed = StrictIntegerField(required=False, min_value=0, max_value=MAX_SEED,
                                  help_text="Same seed, same patients, exams and UIDs (drawn when omitted).")
        arrival = serializers.ChoiceField(Scenario.Arrival.choices, required=False,
                                          help_text="all_at_once, or poisson at rate_per_hour (the scenario's, "
                                                    "else all_at_once; a rate alone means poisson).")
        rate_per_hour = StrictFloatField(required=False, min_value=0.001, max_value=1e6,
                                         help_text="Mean arrival rate of Poisson arrivals, patients per hour.")
        speed = StrictFloatField(required=False, default=1.0, min_value=0.001, max_value=1e6,
                                 help_text="Divide arrival gaps and waits by this factor (60: an hour in a minute).")
        transfer_syntax = serializers.ChoiceField(sorted(TRANSFER_SYNTAX_UIDS), required=False, default="explicit",
                                                  help_text="Of the generated instances: explicit VR little endian, "
                                                            "RLE lossless or JPEG-LS lossless.")
        endpoints = serializers.ListField(child=StrictIntegerField(min_value=1, max_value=MAX_DB_INT),
                                          required=False, max_length=50,
                                          help_text="Endpoint ids; kinds nobody serves use the built-in receivers.")
        send = StrictBooleanField(required=False, default=True,
                                  help_text="false: generate and record only, send nothing.")
        max_instances_per_series = StrictIntegerField(
            required=False, min_value=1, max_value=MAX_INSTANCES,
            help_text=f"Cap instances per series (quick runs); at most {LIMITS['INSTANCES_PER_SERIES']} here "
                      "(YEETER_MAX_INSTANCES_PER_SERIES), which is also the cap when omitted.")
        validate_hl7 = StrictBooleanField(required=False, default=False,
                                          help_text="Validate every HL7 message against v2.5.1 (hl7apy) before "
                                                    "sending.")
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
            if data.get("arrival") == Scenario.Arrival.POISSON and "rate_per_hour" not in data and not (
                    "scenario" in data and data["scenario"].rate_per_hour):
                raise serializers.ValidationError({"rate_per_hour": "Poisson arrivals need a rate (patients per "
                                                                    "hour)."})
            return data

    class CreatedSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        status = serializers.CharField()
        url = serializers.URLField()
        events_url = serializers.URLField()
        cancel_url = serializers.URLField()
        page_url = serializers.URLField(help_text="The run on the simulator page (login).")
        files_url = serializers.URLField(help_text="Base URL of the run's files on the simulator page.")

    @extend_schema(operation_id="runs_list", parameters=[FilterSerializer],
                   responses={200: PageSerializer, **error_responses()})
    def get(self, request: Request) -> Response:
        filters = validated_query(request, self.FilterSerializer)
        runs = runs_visible_to(request.user).select_related("owner", "api_key").order_by("-created_at", "pk")
        if "status" in filters:
            runs = runs.filter(status=filters["status"])
        paginator = LimitOffsetPagination()
        paginator.default_limit = 50
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(RunOutputSerializer(page, many=True,
                                                                    context={"request": request}).data)

    @extend_schema(operation_id="runs_create", request=InputSerializer,
                   responses={202: CreatedSerializer, **error_responses(429)}, examples=RUN_START_EXAMPLES)
    def post(self, request: Request) -> Response:
        run = run_start_from_input(request.data, principal=request.user)
        links = _run_links(request, run)
        return Response({"id": run.pk, "status": run.status, **links}, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": links["url"]})


def run_start_from_input(body, *, principal) -> Run:
    """Validate a runs API body and start the run for ``principal``: the one path for the API, the
    simulator page's launch form and the WebSocket's start action (same fields, same messages).

    Raises DRF's ``ValidationError`` (per field), :class:`ScenarioError` (per step and field) or
    :class:`LimitExceeded` (a quota, named).
    """
    serializer = RunListCreateApi.InputSerializer(data=body)
    reject_unknown_fields(body, serializer)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    scenario = data.get("scenario")
    return run_start(
        scenario=scenario, steps_json=scenario.steps if scenario else data["steps"],
        patients=data.get("patients"), concurrency=data.get("concurrency"), seed=data.get("seed"),
        endpoint_ids=data.get("endpoints", []), send=data["send"],
        max_instances_per_series=data.get("max_instances_per_series"), validate_hl7=data["validate_hl7"],
        speed=data["speed"], transfer_syntax=data["transfer_syntax"], arrival=data.get("arrival"),
        rate_per_hour=data.get("rate_per_hour"), principal=principal, commit_listen=data.get("commit_listen"),
    )


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


class RunDetailApi(APIView):
    """A run's summary and one row per patient with the exam bound to it and its verification result."""

    class OutputSerializer(RunOutputSerializer):
        steps = serializers.JSONField()
        patients = RunPatientOutputSerializer(many=True, source="patient_rows")
        output_dir = serializers.CharField(help_text="The run's folder on the server (YEETER_DATA_DIR/runs/<id>).")

    @extend_schema(operation_id="runs_retrieve", responses={200: OutputSerializer, **error_responses(404)})
    def get(self, request: Request, run_id: str) -> Response:
        validated_query(request, serializers.Serializer)
        run = _run_or_404(request, run_id)
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
        run = _run_or_404(request, run_id)
        rows = (RunEvent.objects.filter(run=run, seq__gt=query["after"]).select_related("patient")
                .order_by("seq")[:query["limit"]])
        events = [event_dict(e, e.patient.number if e.patient is not None else None) for e in rows]
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
        run = _run_or_404(request, run_id)
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
        name = StrictCharField(max_length=100)
        description = StrictCharField(required=False, allow_blank=True, default="", max_length=10_000)
        steps = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=50,
                                      help_text="Ordered steps (README lists step types and fields).")
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


class StrictSlugField(StrictCharField, serializers.SlugField):
    pass


# A DNS name, IPv4 or IPv6 address: letters, digits, dots, hyphens, colons (no spaces, no control characters).
HOST_VALIDATOR = RegexValidator(r"^[A-Za-z0-9._:\-\[\]%]+\Z",
                                "Give a host name or IP address (letters, digits, '.', '-', ':').")

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
        # JSON types as the schema says them: "host": 123 or "tls": "yes" is a 400, not coerced.
        serializer_field_mapping = {
            **serializers.ModelSerializer.serializer_field_mapping,
            models.CharField: StrictCharField, models.SlugField: StrictSlugField,
            models.PositiveIntegerField: StrictIntegerField, models.FloatField: StrictFloatField,
            models.BooleanField: StrictBooleanField,
        }

        class Meta:
            model = Endpoint
            fields = ENDPOINT_FIELDS
            extra_kwargs = {"host": {"validators": [HOST_VALIDATOR]}}

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
