"""The launch form: a scenario, a pinned exam or weighted random with filters, and its endpoints' check.

A start goes through :func:`simulations.apis.run_start_from_input` (the runs API's own validation), so
the form shows the API's messages beside the field at fault (:func:`form_errors`).
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework import exceptions

from exams.apis import FILTER_NAMES
from simulations import services
from simulations.apis import CHECK_TIMEOUT_CAP_S, run_start_from_input
from simulations.models import Endpoint, Scenario
from simulations.services import endpoint_check
from simulations.steps import TRANSFER_SYNTAXES, ScenarioError
from simulations.views.catalog import filter_choices, filter_params, json_value

# The whole IHE Scheduled Workflow chain, for a pinned exam or "weighted random with these filters".
FULL_CHAIN = ("REGISTER_PATIENT", "GENERATE_HL7", "SEND_HL7", "SEND_DMWL", "MPPS_IN_PROGRESS", "GENERATE_DICOM",
              "SEND_DICOM", "STORAGE_COMMIT", "MPPS_COMPLETED", "SEND_REPORT")


def _error_messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _error_messages(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _error_messages(item)]
    return [str(detail)]


# The runs API's refusals of a start: per field, per step and field, and a named quota.
START_REFUSALS: tuple[type[Exception], ...] = (exceptions.ValidationError, ScenarioError, services.LimitExceeded)
_LIMIT_FIELD = {"patients_per_run": "patients", "instances_per_series": "max_instances_per_series"}

# Where a scenario problem ("step 2 (GENERATE_HL7): field exam_id: ...") belongs on the form.
_STEP_FIELD_TO_FORM = {"exam_id": "exam_id", "modality": "modality", "body_part": "body_part", "setting": "setting",
                       "laterality": "laterality", "sex": "patient_sex", "age": "patient_age",
                       "transfer_syntax": "transfer_syntax", "endpoint": "endpoints"}
_PROBLEM_FIELD = re.compile(r"field (\w+):")


def _launch_body(post) -> dict[str, Any]:
    """The runs API body the launch form means (the API validates it, not this function)."""
    source = post.get("source", "scenario")
    body: dict[str, Any] = {}
    if post.get("transfer_syntax"):
        body["transfer_syntax"] = post["transfer_syntax"]  # a run option: the steps stay as they are
    if source == "scenario":
        body["scenario"] = post.get("scenario", "")
    else:
        order: dict[str, Any] = {"step_type": "GENERATE_HL7"}
        if source == "exam":
            order["exam_id"] = post.get("exam_id", "").strip()
        else:
            filters = filter_params(post)
            for name in ("modality", "body_part", "setting", "laterality"):
                if name in filters:
                    order[name] = filters[name]
            if "patient_sex" in filters:
                order["sex"] = filters["patient_sex"]
            if "patient_age" in filters:
                order["age"] = filters["patient_age"]
        steps = [{"step_type": t} for t in FULL_CHAIN]
        steps[FULL_CHAIN.index("GENERATE_HL7")] = order
        body["steps"] = steps
    for name in ("patients", "concurrency", "seed", "max_instances_per_series", "speed", "rate_per_hour"):
        value = post.get(name, "").strip()
        if value:
            body[name] = json_value(value)
    if post.get("arrival"):
        body["arrival"] = post["arrival"]
    body["endpoints"] = [json_value(v) for v in post.getlist("endpoints")]
    body["send"] = post.get("send") == "on"
    return body


def form_errors(exc: Exception) -> dict[str, list[str]]:
    """The API's messages keyed by the form field that caused them (``form`` for the rest)."""
    errors: dict[str, list[str]] = {}
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"form": exc.detail}
        for name, value in detail.items():
            key = "form" if name in ("non_field_errors", "steps") else name
            errors.setdefault(key, []).extend(_error_messages(value))
    elif isinstance(exc, services.LimitExceeded):  # a quota, named
        errors.setdefault(_LIMIT_FIELD.get(exc.limit, "form"), []).append(exc.message)
    elif isinstance(exc, ScenarioError):
        for problem in exc.problems:
            found = _PROBLEM_FIELD.search(problem)
            head = problem.split(":", 1)[0]
            if found and found.group(1) in _STEP_FIELD_TO_FORM:
                key = _STEP_FIELD_TO_FORM[found.group(1)]
            elif head in ("patients", "concurrency", "rate_per_hour", "endpoints", "arrival", "speed"):
                key = head
            else:
                key = "form"
            errors.setdefault(key, []).append(problem)
    return errors


@login_required
def launch(request: HttpRequest) -> HttpResponse:
    """The launch form: a scenario, a pinned exam or weighted random with filters; starts a run."""
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = request.POST
        try:
            run = run_start_from_input(_launch_body(request.POST), principal=request.user)
        except START_REFUSALS as exc:
            errors = form_errors(exc)
        else:
            return redirect("simulator:run", run_id=run.pk)
    else:
        values = request.GET
    source = values.get("source") or ("exam" if values.get("exam_id") else
                                      "filters" if any(values.get(n) for n in FILTER_NAMES) else "scenario")
    scenarios = list(Scenario.objects.order_by("name"))
    chosen = next((s for s in scenarios if s.name == values.get("scenario")), None)
    return render(request, "simulator/launch.html", {
        "values": values, "source": source, "errors": errors, "scenarios": scenarios, "chosen": chosen,
        "endpoints": Endpoint.objects.order_by("kind", "name"),
        "chosen_endpoints": [str(v) for v in values.getlist("endpoints")] if hasattr(values, "getlist") else [],
        "send": values.get("send", "on") == "on" if request.method == "GET" else values.get("send") == "on",
        "choices": filter_choices(), "transfer_syntaxes": TRANSFER_SYNTAXES,
        "laterality": values.get("laterality", "any"), "nav": "launch",
    }, status=400 if errors else 200)


@login_required
@require_POST
def endpoint_check_view(request: HttpRequest, endpoint_id: int) -> JsonResponse:
    """The form's "check" button: C-ECHO or an MLLP round trip, latency or the exact error."""
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404(f"No endpoint with id {endpoint_id}.")
    method, latency, error = endpoint_check(endpoint=endpoint, timeout_cap=CHECK_TIMEOUT_CAP_S)
    return JsonResponse({"endpoint": endpoint.pk, "name": endpoint.name, "address": endpoint.address,
                         "method": method, "ok": error is None,
                         "latency_ms": round(latency * 1000, 1) if latency is not None else None, "error": error})
