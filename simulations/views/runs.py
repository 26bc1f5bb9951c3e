"""The live run view, Cancel and Run again, and the history of runs the user may see.

Visibility goes through :mod:`simulations.selectors` (the one permission rule for REST, WebSocket and
pages): a run of someone else is as unknown as a run that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from simulations.apis import run_start_from_input
from simulations.models import Run, RunPatient
from simulations.selectors import run_list, run_visible_to
from simulations.services import run_cancel
from simulations.steps import ScenarioError, StepType, parse_steps
from simulations.views.launch import START_REFUSALS, form_errors

# Column headings of the run view's step states.
STEP_SHORT = {StepType.REGISTER_PATIENT: "ADT", StepType.GENERATE_HL7: "Order", StepType.SEND_HL7: "ORM",
              StepType.SEND_DMWL: "MWL", StepType.MPPS_IN_PROGRESS: "MPPS", StepType.GENERATE_DICOM: "Gen",
              StepType.SEND_DICOM: "Images", StepType.STORAGE_COMMIT: "Commit", StepType.MPPS_COMPLETED: "MPPS done",
              StepType.SEND_REPORT: "Report", StepType.CANCEL_ORDER: "Cancel", StepType.WAIT: "Wait"}


def visible_run_or_404(request: HttpRequest, run_id: str) -> Run:
    run = run_visible_to(request.user, run_id)
    if run is None:
        raise Http404("No such run, or it is not one you may see.")
    return run


def patient_or_404(run: Run, number: int) -> RunPatient:
    patient = run.patients.filter(index=number - 1).first() if number >= 1 else None
    if patient is None:
        raise Http404(f"Run {run.short_id} has no patient {number} (patients are numbered from 1).")
    return patient


def run_label(run: Run) -> str:
    """What a run simulates, in a few words: its scenario, or the exam / filters its order step names."""
    if run.scenario_name:
        return run.scenario_name
    order = next((s for s in run.steps if isinstance(s, dict) and s.get("step_type") == "GENERATE_HL7"), None) \
        if isinstance(run.steps, list) else None
    if order is None:
        return "inline steps"
    if order.get("exam_id"):
        return f"exam {order['exam_id']}"
    if order.get("cpt_code"):
        return f"CPT {order['cpt_code']}"
    filters = " ".join(str(order[k]) for k in ("modality", "body_part", "laterality", "setting") if order.get(k))
    return f"weighted random {filters}".strip()


def _step_columns(run: Run) -> list[dict[str, Any]]:
    try:
        steps = parse_steps(run.steps)
    except ScenarioError:
        return []
    return [{"index": s.index, "type": s.type.value, "label": s.label, "short": STEP_SHORT.get(s.type, s.type.value)}
            for s in steps]


@login_required
def run_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """The live run: counters, one row per patient with its step states, the event log, Cancel."""
    run = visible_run_or_404(request, run_id)
    # A row per patient that started; the page counts the others waiting (cancelled, once the run has
    # ended without them) and sums them up in one row, so a run of thousands is not thousands of rows.
    patients = list(run.patients.filter(started_at__isnull=False).order_by("index"))
    page_data = {
        "run": str(run.pk), "status": run.status, "finished": run.is_finished,
        "arrival": run.arrival, "rate_per_hour": run.rate_per_hour,
        "ws_path": f"/ws/runs/{run.pk}/", "patient_count": run.patient_count,
        "steps": _step_columns(run),
        "patient_url": reverse("simulator:patient", kwargs={"run_id": str(run.pk), "number": 999999999}),
        "patients": [{"number": p.number, "status": p.status, "name": p.patient_name, "mrn": p.patient_id,
                      "exam": p.exam_code, "accession": p.accession_number, "error": p.error} for p in patients],
    }
    return render(request, "simulator/run.html", {"run": run, "patients": patients, "page_data": page_data,
                                                  "steps": page_data["steps"], "nav": "runs",
                                                  "label": run_label(run)})


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Cancel without JavaScript (the page uses the socket's cancel action)."""
    run = visible_run_or_404(request, run_id)
    if run.is_finished:
        messages.info(request, f"Run {run.short_id} already finished ({run.get_status_display()}).")
    else:
        run_cancel(run=run)
        messages.info(request, f"Run {run.short_id}: cancel requested; steps in flight finish first.")
    return redirect("simulator:run", run_id=run.pk)


def again_body(run: Run) -> dict[str, Any]:
    """The runs API body that starts ``run`` again: same scenario or steps and sizes, a new seed (new UIDs)."""
    body: dict[str, Any] = {"scenario": run.scenario.name} if run.scenario else {"steps": run.steps}
    body.update(patients=run.patient_count, concurrency=run.concurrency, send=run.options.get("send", True))
    if run.options.get("max_instances_per_series"):
        body["max_instances_per_series"] = run.options["max_instances_per_series"]
    body["arrival"] = run.arrival
    if run.rate_per_hour:
        body["rate_per_hour"] = run.rate_per_hour
    if run.options.get("speed"):
        body["speed"] = run.options["speed"]
    if run.options.get("transfer_syntax"):
        body["transfer_syntax"] = run.options["transfer_syntax"]
    return body


@login_required
@require_POST
def run_again(request: HttpRequest, run_id: str) -> HttpResponse:
    run = visible_run_or_404(request, run_id)
    try:
        new = run_start_from_input(again_body(run), principal=request.user)
    except START_REFUSALS as exc:
        problems = form_errors(exc)
        messages.error(request, "Could not start it again: " + "; ".join(m for v in problems.values() for m in v))
        return redirect("simulator:history")
    return redirect("simulator:run", run_id=new.pk)


@login_required
def history(request: HttpRequest) -> HttpResponse:
    """Past runs the user may see: status, scenario, patients, duration and outcome; run again."""
    runs = run_list(request.user)
    page = Paginator(runs, 50).get_page(request.GET.get("page"))
    for run in page:
        run.label = run_label(run)
    return render(request, "simulator/history.html", {"page": page, "nav": "runs"})
