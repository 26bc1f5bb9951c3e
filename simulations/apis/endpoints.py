"""The endpoints API: the configured peers, read for every API client and written by staff sessions;
``POST endpoints/<id>/check`` does a C-ECHO (PS3.7 §9.1.5) or an MLLP NMD^N02 round trip."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.permissions import StaffWritesOnly
from simulations.apis.serializers import ENDPOINT_FIELDS, MAX_DB_INT, EndpointOutputSerializer
from simulations.models import Endpoint
from simulations.services import endpoint_check, endpoint_create
from yeeter.api import (StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField, error_responses,
                        validated_body, validated_query)

# A check answers an HTTP request: never hold it for an endpoint's long read timeout.
CHECK_TIMEOUT_CAP_S = 10.0


def _endpoint_or_404(endpoint_id: str) -> Endpoint:
    if not endpoint_id.isascii() or not endpoint_id.isdigit() or int(endpoint_id) > MAX_DB_INT:
        raise NotFound(f"No endpoint with id {endpoint_id!r}: endpoint ids are whole numbers.")
    endpoint = Endpoint.objects.filter(pk=int(endpoint_id)).first()
    if endpoint is None:
        raise NotFound(f"No endpoint with id {endpoint_id}.")
    return endpoint


class StrictSlugField(StrictCharField, serializers.SlugField):
    pass


# A DNS name, IPv4 or IPv6 address: letters, digits, dots, hyphens, colons (no spaces, no control characters).
HOST_VALIDATOR = RegexValidator(r"^[A-Za-z0-9._:\-\[\]%]+\Z",
                                "Give a host name or IP address (letters, digits, '.', '-', ':').")


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
        fields = validated_body(request.data, self.InputSerializer).validated_data
        endpoint = endpoint_create(fields=fields)  # Endpoint.clean() rules: 400 per field
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
