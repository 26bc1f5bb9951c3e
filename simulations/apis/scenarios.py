"""The scenarios API: read for every API client, write for staff sessions only (steps validated first)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.permissions import StaffWritesOnly
from simulations.apis.serializers import MAX_PATIENTS, ScenarioOutputSerializer
from simulations.models import Endpoint, Scenario
from simulations.services import scenario_create
from yeeter.api import StrictCharField, StrictIntegerField, error_responses, validated_body, validated_query


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
        data = dict(validated_body(request.data, self.InputSerializer).validated_data)
        endpoints = data.pop("endpoints", [])
        scenario = scenario_create(fields=data, endpoints=endpoints)  # ScenarioError: 400 per step and field
        return Response(ScenarioOutputSerializer(scenario).data, status=status.HTTP_201_CREATED)
