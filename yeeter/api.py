"""The API's one error shape, and the small pieces every API view shares.

Every error answer of ``/api/`` is::

    {"error": {"code": "invalid_filter", "message": "modality: unknown modality 'XX'; ...",
               "details": {"modality": ["unknown modality 'XX'; ..."]}}}

``code`` is stable and machine-readable (DRF's codes — ``invalid``, ``parse_error``,
``not_authenticated``, ``authentication_failed``, ``permission_denied``, ``not_found``,
``method_not_allowed``, ``unsupported_media_type``, ``throttled`` — plus the domain's own:
``unknown_parameter``, ``invalid_filter``, ``exam_not_found``, ``no_matching_exam``,
``invalid_scenario``, ``run_finished``, ``limit_exceeded``); ``message`` is one sentence for people; ``details`` holds
per-field messages (``{"field": ["message", ...]}``), other structured context, or ``null``.
Views never build error JSON themselves: they raise, and :func:`exception_handler` answers
(HackSoft "Errors & exception handling").
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from exams.errors import CatalogLookupError, ExamNotFound, NoMatchingExam
from exams.factory import InvalidFilter
from simulations.services import LimitExceeded
from yeeter.parsers import BodyTooLarge, body_too_large_message
from simulations.steps import ScenarioError

API_PREFIX = "/api/"


class ApiError(exceptions.APIException):
    """An error with its own status, code and structured details (still rendered in the one shape)."""

    def __init__(self, message: str, *, code: str, status_code: int = status.HTTP_400_BAD_REQUEST,
                 details: Any = None) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.details = details


def _domain_error(exc: Exception) -> exceptions.APIException | None:
    """The API form of the catalog's, the scenarios' and Django's own errors."""
    if isinstance(exc, InvalidFilter):
        return ApiError(exc.message, code="invalid_filter", details={exc.field: [exc.message]})
    if isinstance(exc, NoMatchingExam):
        return ApiError(exc.message, code="no_matching_exam", status_code=404, details={"filters": exc.filters})
    if isinstance(exc, ExamNotFound):
        return ApiError(exc.message, code="exam_not_found", status_code=404)
    if isinstance(exc, CatalogLookupError):
        return ApiError(exc.message, code="not_found", status_code=404)
    if isinstance(exc, ScenarioError):
        return ApiError(f"The scenario is not valid: {exc.problems[0]}" if exc.problems else str(exc),
                        code="invalid_scenario", details={"problems": exc.problems})
    if isinstance(exc, LimitExceeded):
        return ApiError(exc.message, code="limit_exceeded",
                        status_code=status.HTTP_429_TOO_MANY_REQUESTS if exc.in_flight else status.HTTP_400_BAD_REQUEST,
                        details={"limit": exc.limit, "value": exc.value, "setting": exc.setting})
    if isinstance(exc, RequestDataTooBig):
        return BodyTooLarge(body_too_large_message(django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, DjangoValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return exceptions.ValidationError(details)
    return None


def _first_message(detail: Any, path: str = "") -> str:
    """The first leaf message of a DRF error detail, prefixed with where it is (``field: message``)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            where = key if key == "non_field_errors" and not path else (f"{path}.{key}" if path else str(key))
            return _first_message(value, "" if where == "non_field_errors" else where)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            return _first_message(value, f"{path}[{index}]" if nested and path else path)
    text = str(detail)
    return f"{path}: {text}" if path else text


def _codes(detail: Any) -> Any:
    return detail.code if isinstance(detail, exceptions.ErrorDetail) else None


def error_body(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every error of the API in the one shape of this module's docstring."""
    exc = _domain_error(exc) or exc
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django's 500 handling (and our JSON handler500 for /api/) takes over
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        body = error_body(exc.get_codes(), str(exc.detail), exc.details)
    elif isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        codes = exc.get_codes()
        flat = [c for v in (codes.values() if isinstance(codes, dict) else [codes]) for c in
                (v if isinstance(v, list) else [v])]
        code = "unknown_parameter" if flat and all(c == "unknown_parameter" for c in flat) else "invalid"
        body = error_body(code, "The request is not valid: " + _first_message(detail), detail)
    else:  # every other APIException: its detail is one message
        details = {"wait_seconds": exc.wait} if isinstance(exc, exceptions.Throttled) else None
        code = _codes(exc.detail) or exc.default_code
        body = error_body(code, str(exc.detail), details)
    response.data = body
    return response


def json_or_html_404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: the API's error shape under ``/api/`` (URLs no route matches), Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("not_found", f"No API route matches {request.path!r}."), status=404)
    return defaults.page_not_found(request, exception)


def json_or_html_500(request: HttpRequest) -> HttpResponse:
    """``handler500``: even a bug answers in the API's error shape under ``/api/``."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("server_error", "Internal server error; the server log has the details."),
                            status=500)
    return defaults.server_error(request)


def json_or_html_400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400`` (e.g. a disallowed Host header, a malformed request): the error shape under ``/api/``."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("bad_request", "The request is malformed."), status=400)
    return defaults.bad_request(request, exception)


# -- strict fields -------------------------------------------------------------------------------

class StrictIntegerField(serializers.IntegerField):
    """An integer as JSON Schema means it: ``42`` or ``42.0``, never ``"42"``, ``true`` or ``42.5``.

    DRF's own field also takes strings and booleans, which the OpenAPI schema (``type: integer``)
    says are wrong; query strings are converted by :func:`validated_query` first.
    """

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string (``type: string``): never ``5``, ``1.5`` or ``true`` turned into text, as DRF's
    field does (``"host": 123`` must be a 400, as the schema says)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number (``type: number``), finite: never ``"1.5"``, ``true``, NaN or infinity."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:  # an integer beyond any float
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        return super().to_internal_value(value)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` only (DRF's field also takes "yes", "on", 1...)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


# -- query parameters -------------------------------------------------------------------------

_QUERY_INTEGER = re.compile(r"[+-]?[0-9]+")


def _query_value(field: serializers.Field, value: str) -> Any:
    """A query string value as the JSON value the field takes: integers for integer fields."""
    if isinstance(field, serializers.IntegerField) and _QUERY_INTEGER.fullmatch(value):
        return int(value)
    return value


# DRF's own: ?format=json|api picks the renderer (the browsable API links use it).
FRAMEWORK_PARAMS = frozenset({"format"})


def validated_query(request: Request, serializer_class: type[serializers.Serializer], *,
                    extra_allowed: frozenset[str] = frozenset()) -> dict:
    """Query parameters checked by ``serializer_class``: unknown or repeated parameters are a 400
    naming them, never silently ignored."""
    # A plain dict, not the QueryDict: DRF would read "?setting=" as "not given", and an empty value
    # the parameter does not accept must be a 400 like any other bad value.
    fields = serializer_class().fields
    serializer = serializer_class(data={name: _query_value(fields[name], request.query_params[name])
                                        if name in fields else request.query_params[name]
                                        for name in request.query_params})
    known = set(fields) | FRAMEWORK_PARAMS | extra_allowed
    errors: dict[str, list] = {}
    for name in request.query_params:
        if name not in known:
            errors[name] = [exceptions.ErrorDetail(
                f"Unknown query parameter; this endpoint takes {', '.join(sorted(serializer.fields)) or 'none'}.",
                code="unknown_parameter")]
        elif len(request.query_params.getlist(name)) > 1:
            errors[name] = [exceptions.ErrorDetail("Given more than once; give it once.", code="invalid")]
    if errors:
        raise exceptions.ValidationError(errors)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def reject_unknown_fields(data: Any, serializer: serializers.Serializer) -> None:
    """A JSON body with fields the operation does not take is a 400 naming them (typos must not pass)."""
    if not isinstance(data, dict):
        return  # the serializer reports a non-object body
    unknown = sorted(set(data) - set(serializer.fields))
    if unknown:
        raise exceptions.ValidationError({
            name: [exceptions.ErrorDetail(f"Unknown field; this operation takes "
                                          f"{', '.join(sorted(serializer.fields))}.", code="unknown_parameter")]
            for name in unknown
        })


def validated_body[S: serializers.Serializer](data: Any, serializer_class: type[S]) -> S:
    """``serializer_class`` bound to a JSON body and validated: fields the operation does not take
    (:func:`reject_unknown_fields`) and bad values are a 400 naming them."""
    serializer = serializer_class(data=data)
    reject_unknown_fields(data, serializer)
    serializer.is_valid(raise_exception=True)
    return serializer


# -- schema documentation -----------------------------------------------------------------------

class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, naming the nested serializers of the HackSoft style after their view
    (``ExamListApi.OutputSerializer`` -> ``ExamListOutput``) so they do not collide as ``Output``, and
    closing request bodies to unknown fields."""

    def _map_basic_serializer(self, serializer, direction: str) -> dict:
        """Request bodies say ``additionalProperties: false``: every operation refuses unknown fields
        (:func:`reject_unknown_fields`), and the schema must not promise otherwise."""
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema

    def get_serializer_name(self, serializer: serializers.Serializer, direction: str) -> str:
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if outer:
            return outer.removesuffix("Api") + inner
        return super().get_serializer_name(serializer, direction)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. invalid_filter.")
    message = serializers.CharField(help_text="One sentence for people.")
    details = serializers.JSONField(allow_null=True, help_text="Per-field messages or other context, or null.")


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API."""

    error = ErrorDetailSerializer()


_DESCRIPTIONS = {
    400: "Invalid input: unknown or malformed parameters or fields (details name each one).",
    401: "No credentials, or an unknown or revoked API key (see the WWW-Authenticate header).",
    403: "Authenticated, but not allowed to do this.",
    404: "Not found (the message says what).",
    409: "Conflicts with the current state.",
    413: "The request body is larger than the server takes (the message says the limit).",
    415: "Unsupported media type: send application/json.",
    429: "A quota of runs in flight is reached (details name the limit and its setting); retry later.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for the error statuses an operation can answer
    (400/401/403 are added for every operation: bad input and credentials are always possible)."""
    wanted = sorted({400, 401, 403, *codes})
    return {c: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[c]) for c in wanted}
