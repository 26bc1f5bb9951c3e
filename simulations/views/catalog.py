"""The catalog browser, and the form values it shares with the launch form.

The catalog comes through :class:`ExamFactory` and the catalog API's ``FilterSerializer``: the same
filters, the same validation messages and each exam's share of the weighted draw.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from exams.apis import FILTER_NAMES, BODY_PARTS, LATERALITIES, MODALITIES, SETTINGS, SEXES, FilterSerializer
from exams.factory import ExamFactory, ExamFilters
from simulations.models import Scenario

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")


def json_value(text: str) -> Any:
    """A form value as the JSON value the API would get: numbers as numbers, anything else as typed
    (so the API's own message names what is wrong with it)."""
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def filter_params(query) -> dict[str, Any]:
    """The catalog filters a form submitted ("any" and empty mean not given; laterality "" means unpaired)."""
    params: dict[str, Any] = {}
    for name in FILTER_NAMES:
        value = query.get(name)
        if value is None or value == "any" or (value == "" and name != "laterality"):
            continue
        params[name] = json_value(value) if name == "patient_age" else value
    return params


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """Catalog browser: the API's filters and validation, each exam's share of the weighted draw."""
    params = filter_params(request.GET)
    serializer = FilterSerializer(data=params)
    errors: dict[str, list[str]] = {}
    exams: list = []
    total_weight = 0
    slice_ = None
    if serializer.is_valid():
        slice_ = ExamFactory().list_exams(ExamFilters(**serializer.validated_data_filters()))
        exams = slice_.exams
        total_weight = sum(e.weight for e in exams if e.weight > 0)
    else:
        errors = {k: [str(m) for m in v] for k, v in serializer.errors.items()}
    rows = [{"exam": e, "codes": list(e.codes.all()), "series": list(e.series.all()),
             "share": (100.0 * e.weight / total_weight) if total_weight and e.weight > 0 else 0.0} for e in exams]
    return render(request, "simulator/catalog.html", {
        "rows": rows, "errors": errors, "params": params, "query": urlencode(params), "slice": slice_, "nav": "catalog",
        "laterality": params.get("laterality", "any"),
        "scenarios": Scenario.objects.order_by("name"), "choices": filter_choices(),
    })


def filter_choices() -> dict[str, list[str]]:
    return {"modality": MODALITIES, "body_part": BODY_PARTS, "setting": SETTINGS,
            "laterality": [v for v in LATERALITIES if v], "patient_sex": SEXES}
