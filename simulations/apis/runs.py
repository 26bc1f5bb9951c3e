"""The runs API: ``POST runs`` (202, executed in the background), ``GET runs`` (paginated, ``?status=``),
``GET runs/<id>``, ``GET runs/<id>/events?after=<seq>`` (polling), ``POST runs/<id>/cancel``.

:func:`run_start_from_input` is the one way a run is started from a client's body: this API, the
simulator page's launch form and the WebSocket's start action.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from simulations.apis.serializers import (
    LIMITS,
    MAX_DB_INT,
    MAX_INSTANCES,
    MAX_PATIENTS,
    MAX_SEED,
    RunOutputSerializer,
    RunPatientOutputSerializer,
    run_links,
)
from simulations.endpoints import CommitListen
from simulations.events import event_dict
from simulations.models import Run, RunEvent, Scenario
from simulations.options import TRANSFER_SYNTAX_UIDS
from simulations.selectors import run_list, run_visible_to
from simulations.services import run_cancel, run_start
from yeeter.api import (ApiError, StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField,
                        error_responses, validated_body, validated_query)

EVENTS_PAGE = 500


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
        runs = run_list(request.user)
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
        links = run_links(request, run)
        return Response({"id": run.pk, "status": run.status, **links}, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": links["url"]})


def run_start_from_input(body, *, principal) -> Run:
    """Validate a runs API body and start the run for ``principal``: the one path for the API, the
    simulator page's launch form and the WebSocket's start action (same fields, same messages).

    Raises DRF's ``ValidationError`` (per field), :class:`ScenarioError` (per step and field) or
    :class:`LimitExceeded` (a quota, named).
    """
    data = validated_body(body, RunListCreateApi.InputSerializer).validated_data
    scenario = data.get("scenario")
    return run_start(
        scenario=scenario, steps_json=scenario.steps if scenario else data["steps"],
        patients=data.get("patients"), concurrency=data.get("concurrency"), seed=data.get("seed"),
        endpoint_ids=data.get("endpoints", []), send=data["send"],
        max_instances_per_series=data.get("max_instances_per_series"), validate_hl7=data["validate_hl7"],
        speed=data["speed"], transfer_syntax=data["transfer_syntax"], arrival=data.get("arrival"),
        rate_per_hour=data.get("rate_per_hour"), principal=principal, commit_listen=data.get("commit_listen"),
    )


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
