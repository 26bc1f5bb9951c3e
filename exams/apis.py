"""The catalog API (EXAMGEN-4.0 "Simulator API Additions"): thin views over :class:`ExamFactory`.

``GET exams`` (catalog or filtered slice), ``GET exams/<id>``, ``GET exams/modalities`` and
``POST exams/select``. Errors are raised and rendered by :mod:`yeeter.api` in its one shape.
"""

from __future__ import annotations

import random
import secrets

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exams.factory import STRATEGY_CPT, STRATEGY_EXAM_ID, STRATEGY_RANDOM, ExamFactory, ExamFilters, catalog_stamp
from exams.models import ExamSpec
from generators import terms
from yeeter.api import (
    StrictCharField,
    StrictIntegerField,
    error_responses,
    validated_body,
    validated_query,
)

MAX_SEED = 2**63 - 1


def _choice(values: list[str], what: str) -> dict[str, str]:
    listed = ", ".join(v or "(empty)" for v in values)
    return {"invalid_choice": f'"{{input}}" is not a known {what}; use one of {listed}.'}


MODALITIES = [m.value for m in terms.Modality]
BODY_PARTS = sorted(terms.BODY_PARTS)
SETTINGS = [s.value for s in terms.CareSetting]
LATERALITIES = ["R", "L", "B", ""]
SEXES = [s.value for s in terms.Sex]


class FilterSerializer(serializers.Serializer):
    """The catalog filters (same names as the query parameters and the select body)."""

    modality = serializers.ChoiceField(MODALITIES, required=False, error_messages=_choice(MODALITIES, "modality"),
                                       help_text="DICOM modality.")
    body_part = serializers.ChoiceField(BODY_PARTS, required=False,
                                        error_messages={"invalid_choice": '"{input}" is not a DICOM Body Part '
                                                        'Examined defined term the catalog uses (e.g. KNEE, CHEST).'},
                                        help_text="DICOM Body Part Examined defined term.")
    setting = serializers.ChoiceField(SETTINGS, required=False, error_messages=_choice(SETTINGS, "care setting"))
    laterality = serializers.ChoiceField(LATERALITIES, required=False, allow_blank=True,
                                         error_messages=_choice(LATERALITIES, "laterality"),
                                         help_text="R, L, B, or empty for unpaired body parts.")
    patient_age = StrictIntegerField(required=False, min_value=0, max_value=130,
                                     help_text="Years; exams outside their age range are left out.")
    patient_sex = serializers.ChoiceField(SEXES, required=False, error_messages=_choice(SEXES, "sex"))

    def validated_data_filters(self) -> dict:
        """The validated filters only (subclasses add other fields), as ``ExamFilters`` keywords."""
        return {k: v for k, v in self.validated_data.items() if k in FILTER_NAMES}


FILTER_NAMES = ("modality", "body_part", "setting", "laterality", "patient_age", "patient_sex")


class CodeOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    scheme = serializers.CharField(help_text="C4 (CPT), LN (LOINC) or RPID (RadLex Playbook).")
    display = serializers.CharField()


class SeriesOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    description = serializers.CharField()
    protocol_name = serializers.CharField()
    instance_count = serializers.IntegerField()
    role = serializers.CharField()
    plane = serializers.CharField(allow_blank=True)
    sequence_name = serializers.CharField(allow_blank=True)
    weighting = serializers.CharField(allow_blank=True)
    fat_sat = serializers.BooleanField()
    slice_thickness_mm = serializers.FloatField(allow_null=True)
    kvp = serializers.IntegerField(allow_null=True)
    contrast_phase = serializers.CharField(allow_blank=True)
    kernel = serializers.CharField(allow_blank=True)
    view_position = serializers.CharField(allow_blank=True)
    image_laterality = serializers.CharField(allow_blank=True)
    frames = serializers.IntegerField()
    scene = serializers.CharField(allow_blank=True, help_text="NM/US: what the series shows (bone, vq-perf, "
                                                              "kidney-left...); empty for other modalities.")


class ExamOutputSerializer(serializers.Serializer):
    """An ExamSpec as the spec's clients expect it: codes, series protocols, contrast and constraints."""

    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    modality = serializers.CharField()
    body_part = serializers.CharField()
    laterality = serializers.CharField(allow_blank=True)
    cpt_code = serializers.SerializerMethodField(help_text="The primary CPT code (C4), if any.")
    loinc_code = serializers.SerializerMethodField(help_text="The LOINC code (LN), if any.")
    codes = CodeOutputSerializer(many=True)
    care_settings = serializers.ListField(child=serializers.CharField())
    weight = serializers.IntegerField()
    min_age = serializers.IntegerField(allow_null=True)
    max_age = serializers.IntegerField(allow_null=True)
    required_sex = serializers.CharField(allow_blank=True)
    contrast = serializers.CharField()
    contrast_agent = serializers.CharField(allow_blank=True)
    contrast_volume_ml = serializers.FloatField(allow_null=True)
    estimated_duration_min = serializers.IntegerField()
    active = serializers.BooleanField()
    series = SeriesOutputSerializer(many=True)

    def _code(self, exam: ExamSpec, scheme: str) -> str | None:
        # codes.all() uses the prefetch of with_details(): no query per exam.
        return next((c.code for c in exam.codes.all() if c.scheme == scheme), None)

    def get_cpt_code(self, exam: ExamSpec) -> str | None:
        return self._code(exam, terms.CodingScheme.CPT.value)

    def get_loinc_code(self, exam: ExamSpec) -> str | None:
        return self._code(exam, terms.CodingScheme.LOINC.value)


class CatalogOutputSerializer(serializers.Serializer):
    version = serializers.CharField(help_text="Changes whenever an exam is added, removed or saved.")
    active_exams = serializers.IntegerField()
    last_changed = serializers.DateTimeField(allow_null=True)


def _catalog_block(total: int, version: str, last) -> dict:
    return {"version": version, "active_exams": total, "last_changed": last}


_MR_KNEE = {"id": "MR-KNEE-RIGHT-WO", "name": "MRI Knee Right without contrast",
            "description": "MRI KNEE RIGHT WO CONTRAST", "modality": "MR", "body_part": "KNEE", "laterality": "R",
            "cpt_code": "73721", "loinc_code": "36510-8",
            "codes": [{"code": "73721", "scheme": "C4", "display": "MRI joint of lower extremity w/o contrast"},
                      {"code": "36510-8", "scheme": "LN", "display": "MR Knee - right WO contrast"}],
            "care_settings": ["outpatient"], "weight": 30, "min_age": None, "max_age": None, "required_sex": "",
            "contrast": "none", "contrast_agent": "", "contrast_volume_ml": None, "estimated_duration_min": 35,
            "active": True,
            "series": [{"number": 1, "description": "SAG PD FS", "protocol_name": "KNEE_SAG_PD_FS",
                        "instance_count": 30, "role": "PRIMARY", "plane": "SAG", "sequence_name": "TSE",
                        "weighting": "PD", "fat_sat": True, "slice_thickness_mm": 3.0, "kvp": None,
                        "contrast_phase": "", "kernel": "", "view_position": "", "image_laterality": "R"}]}


class ExamListApi(APIView):
    """The catalog, or the slice matching the filters, with catalog metadata and the filters applied."""

    class OutputSerializer(serializers.Serializer):
        catalog = CatalogOutputSerializer()
        filters = serializers.DictField(help_text="The filters applied (only those given).")
        count = serializers.IntegerField()
        counts_by_modality = serializers.DictField(child=serializers.IntegerField())
        exams = ExamOutputSerializer(many=True)

    @extend_schema(
        operation_id="exams_list",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **error_responses()},
        examples=[
            OpenApiExample("Outpatient slice", response_only=True, status_codes=["200"], value={
                "catalog": {"version": "3f1c2a9b8e7d", "active_exams": 100, "last_changed": "2025-11-19T10:00:00Z"},
                "filters": {"setting": "outpatient"}, "count": 1, "counts_by_modality": {"MR": 1},
                "exams": [_MR_KNEE]}),
            OpenApiExample("Unknown modality", response_only=True, status_codes=["400"], value={
                "error": {"code": "invalid", "message": 'The request is not valid: modality: "XX" is not a known '
                                                        'modality; use one of CT, MR, CR, DX, US, MG, NM.',
                          "details": {"modality": ['"XX" is not a known modality; use one of CT, MR, CR, DX, US, '
                                                   'MG, NM.']}}}),
        ],
    )
    def get(self, request: Request) -> Response:
        filters = ExamFilters(**validated_query(request, FilterSerializer))
        catalog = ExamFactory().list_exams(filters)
        return Response(self.OutputSerializer({
            "catalog": _catalog_block(catalog.catalog_total, catalog.catalog_version, catalog.last_changed),
            "filters": catalog.filters, "count": len(catalog.exams),
            "counts_by_modality": catalog.counts_by_modality, "exams": catalog.exams,
        }).data)


class ExamDetailApi(APIView):
    """One active exam by id."""

    @extend_schema(
        operation_id="exams_retrieve",
        responses={200: ExamOutputSerializer, **error_responses(404)},
        examples=[
            OpenApiExample("MR knee", response_only=True, status_codes=["200"], value=_MR_KNEE),
            OpenApiExample("Unknown id", response_only=True, status_codes=["404"], value={
                "error": {"code": "exam_not_found", "message": "No exam with id 'MR-NOPE' in the catalog.",
                          "details": None}}),
        ],
    )
    def get(self, request: Request, exam_id: str) -> Response:
        validated_query(request, serializers.Serializer)
        return Response(ExamOutputSerializer(ExamFactory().get_exam_by_id(exam_id)).data)


class ExamModalitiesApi(APIView):
    """Every modality the catalog knows with its active exam count (zero counts included)."""

    class OutputSerializer(serializers.Serializer):
        catalog = CatalogOutputSerializer()
        modalities = inline_serializer("ModalitySummary", many=True, fields={
            "modality": serializers.CharField(), "label": serializers.CharField(),
            "exam_count": serializers.IntegerField(),
        })

    @extend_schema(
        operation_id="exams_modalities",
        responses={200: OutputSerializer, **error_responses()},
        examples=[OpenApiExample("Modalities", response_only=True, status_codes=["200"], value={
            "catalog": {"version": "3f1c2a9b8e7d", "active_exams": 100, "last_changed": "2025-11-19T10:00:00Z"},
            "modalities": [{"modality": "CT", "label": "Computed Tomography", "exam_count": 30},
                           {"modality": "MR", "label": "Magnetic Resonance", "exam_count": 25}]})],
    )
    def get(self, request: Request) -> Response:
        validated_query(request, serializers.Serializer)
        return Response(self.OutputSerializer({
            "catalog": _catalog_block(*catalog_stamp()),
            "modalities": ExamFactory().modalities_summary(),
        }).data)


class SelectionOutputSerializer(serializers.Serializer):
    """The `_selection` block: how the exam was chosen (reproduce it with the same seed)."""

    strategy = serializers.ChoiceField([STRATEGY_EXAM_ID, STRATEGY_CPT, STRATEGY_RANDOM])
    filters = serializers.DictField()
    candidate_count = serializers.IntegerField(help_text="How many active exams qualified.")
    candidates = serializers.ListField(child=serializers.CharField(),
                                       help_text="The qualifying exam ids for exam_id and cpt_code selection "
                                                 "(several for an ambiguous CPT code); empty for random.")
    seed = serializers.IntegerField()


class ExamSelectApi(APIView):
    """The spec's unified selector: ``exam_id``, else ``cpt_code``, else weighted random over the filters."""

    class InputSerializer(FilterSerializer):
        exam_id = StrictCharField(required=False, max_length=40, help_text="Pick this exam (first priority).")
        cpt_code = StrictCharField(required=False, max_length=16,
                                         help_text="Pick among the exams with this CPT code (second priority).")
        seed = StrictIntegerField(required=False, min_value=0, max_value=MAX_SEED,
                                        help_text="Seed of the weighted choice; the answer reports the one used.")

    class OutputSerializer(ExamOutputSerializer):
        """The exam, plus how it was chosen."""

        _selection = SelectionOutputSerializer()

    @extend_schema(
        operation_id="exams_select",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(404)},
        examples=[
            OpenApiExample("Weighted random MR for a 42-year-old", request_only=True,
                           value={"modality": "MR", "patient_age": 42}),
            OpenApiExample("By CPT code, reproducible", request_only=True, value={"cpt_code": "73721", "seed": 7}),
            OpenApiExample("Selected", response_only=True, status_codes=["200"], value={
                **_MR_KNEE, "_selection": {"strategy": "cpt_code", "filters": {"cpt_code": "73721"},
                                           "candidate_count": 2, "candidates": ["MR-KNEE-LEFT-WO", "MR-KNEE-RIGHT-WO"],
                                           "seed": 7}}),
            OpenApiExample("No match", response_only=True, status_codes=["404"], value={
                "error": {"code": "no_matching_exam",
                          "message": "No active exam in the catalog matches modality=MG, patient_sex=M.",
                          "details": {"filters": {"modality": "MG", "patient_sex": "M"}}}}),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = validated_body(request.data, self.InputSerializer)
        data = serializer.validated_data
        # Without a seed the choice is still reproducible: the seed drawn here is reported back.
        seed = data.get("seed", secrets.randbits(32))
        selection = ExamFactory(random.Random(seed), seed=seed).select(
            exam_id=data.get("exam_id"), cpt_code=data.get("cpt_code"),
            filters=ExamFilters(**serializer.validated_data_filters()),
        )
        return Response({**ExamOutputSerializer(selection.exam).data,
                         "_selection": SelectionOutputSerializer(selection).data})
