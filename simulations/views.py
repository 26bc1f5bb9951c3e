"""The simulator page: catalog → launch form → live run view → one patient's story, and the history.

Views are thin: the catalog through :class:`ExamFactory` and the catalog API's ``FilterSerializer``,
runs through :func:`simulations.apis.run_start_from_input` (the runs API's own validation, so the
form shows the API's messages beside the field at fault), visibility through
:mod:`simulations.selectors` (the one permission rule for REST, WebSocket and pages). Files are read
only from inside the run's folder (:func:`run_path`), never through a symlink.
"""

from __future__ import annotations

import mimetypes
import re
import zipfile
from urllib.parse import urlencode
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from rest_framework import exceptions

from exams.apis import FILTER_NAMES, BODY_PARTS, LATERALITIES, MODALITIES, SETTINGS, SEXES, FilterSerializer
from exams.factory import ExamFactory, ExamFilters
from simulations.apis import CHECK_TIMEOUT_CAP_S, run_start_from_input
from simulations.artifacts import PatientFiles
from simulations.documents import DOCUMENT_MODALITIES, pdf_file_name
from simulations.models import Endpoint, Run, RunEvent, RunPatient, Scenario
from simulations.selectors import run_visible_to, runs_visible_to
from simulations import services
from simulations.services import endpoint_check, run_cancel
from simulations.steps import TRANSFER_SYNTAXES, ScenarioError, StepType, parse_steps
from simulations.verification import verify_patient

# The whole IHE Scheduled Workflow chain, for a pinned exam or "weighted random with these filters".
FULL_CHAIN = ("REGISTER_PATIENT", "GENERATE_HL7", "SEND_HL7", "SEND_DMWL", "MPPS_IN_PROGRESS", "GENERATE_DICOM",
              "SEND_DICOM", "STORAGE_COMMIT", "MPPS_COMPLETED", "SEND_REPORT")

# The message each step sends, as the runner keeps it (simulations.artifacts).
MESSAGE_FILES = (("adt.hl7", "Registration (ADT)", StepType.REGISTER_PATIENT),
                 ("orm.hl7", "Order (ORM^O01)", StepType.SEND_HL7),
                 ("oru.hl7", "Report (ORU^R01)", StepType.SEND_REPORT),
                 ("cancel.hl7", "Order cancel (ORM^O01 CA)", StepType.CANCEL_ORDER))

# Column headings of the run view's step states.
STEP_SHORT = {StepType.REGISTER_PATIENT: "ADT", StepType.GENERATE_HL7: "Order", StepType.SEND_HL7: "ORM",
              StepType.SEND_DMWL: "MWL", StepType.MPPS_IN_PROGRESS: "MPPS", StepType.GENERATE_DICOM: "Gen",
              StepType.SEND_DICOM: "Images", StepType.STORAGE_COMMIT: "Commit", StepType.MPPS_COMPLETED: "MPPS done",
              StepType.SEND_REPORT: "Report", StepType.CANCEL_ORDER: "Cancel", StepType.WAIT: "Wait"}

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")


def _json_value(text: str) -> Any:
    """A form value as the JSON value the API would get: numbers as numbers, anything else as typed
    (so the API's own message names what is wrong with it)."""
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _error_messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _error_messages(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _error_messages(item)]
    return [str(detail)]


# -- catalog -----------------------------------------------------------------------------------

def _filter_params(query) -> dict[str, Any]:
    """The catalog filters a form submitted ("any" and empty mean not given; laterality "" means unpaired)."""
    params: dict[str, Any] = {}
    for name in FILTER_NAMES:
        value = query.get(name)
        if value is None or value == "any" or (value == "" and name != "laterality"):
            continue
        params[name] = _json_value(value) if name == "patient_age" else value
    return params


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """Catalog browser: the API's filters and validation, each exam's share of the weighted draw."""
    params = _filter_params(request.GET)
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
        "scenarios": Scenario.objects.order_by("name"), "choices": _filter_choices(),
    })


def _filter_choices() -> dict[str, list[str]]:
    return {"modality": MODALITIES, "body_part": BODY_PARTS, "setting": SETTINGS,
            "laterality": [v for v in LATERALITIES if v], "patient_sex": SEXES}


# -- launch ------------------------------------------------------------------------------------

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
            filters = _filter_params(post)
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
            body[name] = _json_value(value)
    if post.get("arrival"):
        body["arrival"] = post["arrival"]
    body["endpoints"] = [_json_value(v) for v in post.getlist("endpoints")]
    body["send"] = post.get("send") == "on"
    return body


def _form_errors(exc: Exception) -> dict[str, list[str]]:
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
            errors = _form_errors(exc)
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
        "choices": _filter_choices(), "transfer_syntaxes": TRANSFER_SYNTAXES,
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


# -- runs --------------------------------------------------------------------------------------

def _visible_run_or_404(request: HttpRequest, run_id: str) -> Run:
    run = run_visible_to(request.user, run_id)
    if run is None:
        raise Http404("No such run, or it is not one you may see.")
    return run


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
    run = _visible_run_or_404(request, run_id)
    patients = list(run.patients.order_by("index"))
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
    run = _visible_run_or_404(request, run_id)
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
    run = _visible_run_or_404(request, run_id)
    try:
        new = run_start_from_input(again_body(run), principal=request.user)
    except START_REFUSALS as exc:
        problems = _form_errors(exc)
        messages.error(request, "Could not start it again: " + "; ".join(m for v in problems.values() for m in v))
        return redirect("simulator:history")
    return redirect("simulator:run", run_id=new.pk)


@login_required
def history(request: HttpRequest) -> HttpResponse:
    """Past runs the user may see: status, scenario, patients, duration and outcome; run again."""
    runs = runs_visible_to(request.user).select_related("owner", "api_key").order_by("-created_at", "pk")
    page = Paginator(runs, 50).get_page(request.GET.get("page"))
    for run in page:
        run.label = run_label(run)
    return render(request, "simulator/history.html", {"page": page, "nav": "runs"})


# -- files -------------------------------------------------------------------------------------

def run_path(run: Run, relpath: str) -> Path | None:
    """The file ``relpath`` inside the run's folder, or None: never an absolute path, ``..``, a
    symlink anywhere on the way, or anything that resolves outside the folder."""
    if not run.output_dir or not relpath or "\x00" in relpath or "\\" in relpath:
        return None
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in relpath.split("/")):
        return None
    root = Path(run.output_dir)
    if root.is_symlink():
        return None
    path = root
    for part in rel.parts:
        path = path / part
        if path.is_symlink():
            return None
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not resolved.is_relative_to(root.resolve()):
        return None
    return resolved


_CONTENT_TYPES = {".dcm": "application/dicom", ".hl7": "text/plain; charset=utf-8",
                  ".json": "application/json", ".png": "image/png"}


@login_required
def run_file(request: HttpRequest, run_id: str, relpath: str) -> FileResponse:
    """One file of a run (preview, message, worklist/MPPS JSON, DICOM instance) to those who may see the run."""
    run = _visible_run_or_404(request, run_id)
    path = run_path(run, relpath)
    if path is None:
        raise Http404("No such file in this run.")
    content_type = _CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path.open("rb"), content_type=content_type,
                        as_attachment=path.suffix == ".dcm", filename=path.name)


class _ZipSink:
    """A write-only stream for ``zipfile`` whose bytes are handed out as they are written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        chunks, self.chunks = self.chunks, []
        yield from chunks


def _zip_stream(files: list[tuple[Path, str]]) -> Iterator[bytes]:
    sink = _ZipSink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path, name in files:
            with path.open("rb") as src, archive.open(name, "w", force_zip64=True) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()


@login_required
def study_zip(request: HttpRequest, run_id: str, number: int) -> StreamingHttpResponse:
    """One patient's study as a zip, streamed (never built in memory or on disk)."""
    run = _visible_run_or_404(request, run_id)
    patient = _patient_or_404(run, number)
    files = [(p, f"{patient.study_instance_uid}/{p.name}") for p in _study_files(run, patient)]
    if not files:
        raise Http404("This patient has no study on disk.")
    response = StreamingHttpResponse(_zip_stream(files), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{patient.accession_number or number}.zip"'
    return response


def _study_dir(run: Run, patient: RunPatient) -> Path | None:
    if not patient.study_instance_uid or not run.output_dir:
        return None
    study = Path(run.output_dir) / patient.study_instance_uid
    return study if study.is_dir() and not study.is_symlink() else None


def _study_files(run: Run, patient: RunPatient) -> list[Path]:
    study = _study_dir(run, patient)
    if study is None:
        return []
    return sorted(p for p in study.glob("*.dcm") if p.is_file() and not p.is_symlink())


# -- patient story -----------------------------------------------------------------------------

def _patient_or_404(run: Run, number: int) -> RunPatient:
    patient = run.patients.filter(index=number - 1).first() if number >= 1 else None
    if patient is None:
        raise Http404(f"Run {run.short_id} has no patient {number} (patients are numbered from 1).")
    return patient


def hl7_lines(text: str) -> list[dict[str, Any]]:
    """One entry per segment with its fields labelled by position (``PID-3``); MSH-1 is the field
    separator itself and MSH-2 the encoding characters (HL7 v2.5.1 section 2.14.9)."""
    lines = []
    for segment in re.split(r"\r\n|\r|\n", text):
        if not segment:
            continue
        parts = segment.split("|")
        name = parts[0]
        fields = []
        if name == "MSH":
            fields.append({"label": "MSH-1", "value": "|", "separator": False})
            for n, value in enumerate(parts[1:], start=2):
                fields.append({"label": f"MSH-{n}", "value": value, "separator": n > 2})
        else:
            for n, value in enumerate(parts[1:], start=1):
                fields.append({"label": f"{name}-{n}", "value": value, "separator": True})
        lines.append({"segment": name, "fields": fields})
    return lines


def dataset_rows(ds: Dataset, depth: int = 0) -> list[dict[str, Any]]:
    """An attribute table (tag, keyword, VR, value), sequences flattened with their depth."""
    rows: list[dict[str, Any]] = []
    for elem in ds:
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            rows.append({"tag": tag, "keyword": elem.keyword or "(private)", "vr": "SQ", "depth": depth,
                         "value": f"{len(elem.value)} item(s)"})
            for i, item in enumerate(elem.value, start=1):
                rows.append({"tag": "", "keyword": f"item {i}", "vr": "", "depth": depth + 1, "value": ""})
                rows.extend(dataset_rows(item, depth + 2))
            continue
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or elem.keyword == "PixelData":
            value = f"({len(elem.value or b'')} bytes)"
        else:
            value = str(elem.value if elem.value is not None else "")
            value = value if len(value) <= 200 else value[:200] + "…"
        rows.append({"tag": tag, "keyword": elem.keyword or "(private)", "vr": elem.VR, "depth": depth,
                     "value": value})
    return rows


def _read_text(files: PatientFiles, name: str) -> str | None:
    try:
        return files.read_text(name)
    except (OSError, UnicodeDecodeError) as exc:
        return f"ZZZ|could not read {name}: {exc}"


def _json_dataset_rows(files: PatientFiles, name: str) -> list[dict[str, Any]] | None:
    try:
        ds = files.read_dataset(name)
    except (ValueError, TypeError, KeyError, OSError):
        return [{"tag": "", "keyword": "(unreadable)", "vr": "", "depth": 0, "value": f"{name} is not DICOM JSON"}]
    return dataset_rows(ds) if ds is not None else None


def _series(run: Run, patient: RunPatient) -> list[dict[str, Any]]:
    """Per series: its preview, description, instance count and the header of one instance; the study's
    documents (dose SR, key objects, report as SR and PDF: series 990-993) are marked as such, the PDF
    with its file."""
    study = _study_dir(run, patient)
    if study is None:
        return []
    by_number: dict[int, list[Path]] = {}
    for path in _study_files(run, patient):
        head = path.name.split("_", 1)[0]
        if head.isdigit():
            by_number.setdefault(int(head), []).append(path)
    out = []
    for number, paths in sorted(by_number.items()):
        first = paths[0]
        try:
            ds = dcmread(first, stop_before_pixels=True)
            header = dataset_rows(ds.file_meta) + dataset_rows(ds)
            description = str(ds.get("SeriesDescription", ""))
            modality = str(ds.get("Modality", ""))
        except (InvalidDicomError, OSError, ValueError) as exc:
            header, description, modality = [{"tag": "", "keyword": "(unreadable)", "vr": "", "depth": 0,
                                              "value": str(exc)}], "", ""
        preview = study / f"preview_{number:03d}.png"
        pdf = study / pdf_file_name(number)  # an Encapsulated PDF's document, written beside it
        rel = f"{patient.study_instance_uid}/"
        out.append({"number": number, "description": description, "modality": modality, "count": len(paths),
                    "preview": rel + preview.name if preview.is_file() and not preview.is_symlink() else None,
                    "document": modality in DOCUMENT_MODALITIES,
                    "pdf": rel + pdf.name if pdf.is_file() and not pdf.is_symlink() else None,
                    "instance": rel + first.name, "header": header})
    return out


def verification_rows(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every check verification made, DICOM files folded into one row per attribute (with the file count)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for check in checks:
        artifact = "dicom" if check["artifact"].startswith("dicom ") else check["artifact"]
        key = (artifact, check["field"])
        row = rows.get(key)
        if row is None:
            rows[key] = {"artifact": artifact, "field": check["field"], "expected": check["expected"],
                         "found": check["actual"], "ok": check["ok"], "count": 1}
            continue
        row["count"] += 1
        if not check["ok"] and row["ok"]:
            row.update(found=check["actual"], expected=check["expected"], ok=False)
    return list(rows.values())


@login_required
def patient_story(request: HttpRequest, run_id: str, number: int) -> HttpResponse:
    """One patient's story: identity set, every message as sent with its ACK, worklist and MPPS as
    attribute tables, a preview and a header per series, and the verification expected vs found."""
    run = _visible_run_or_404(request, run_id)
    patient = _patient_or_404(run, number)
    context: dict[str, Any] = {"nav": "runs", "run": run, "patient": patient, "messages_": [], "series": [], "checks": [],
                               "identity": None, "folder": None}
    if run.output_dir and patient.accession_number:
        files = PatientFiles.for_order(Path(run.output_dir), patient.index, patient.accession_number)
        if files.root.is_dir() and not files.root.is_symlink():
            context["folder"] = files.root.relative_to(Path(run.output_dir)).as_posix()
            try:
                context["identity"] = files.read_json("order.json")
            except (ValueError, OSError):  # a damaged file is shown as missing, never a 500
                context["identity"] = None
            acks = _acks(patient)
            for name, title, step_type in MESSAGE_FILES:
                text = _read_text(files, name)
                if text is not None:
                    context["messages_"].append({"name": name, "title": title, "lines": hl7_lines(text),
                                                 "acks": acks.get(step_type.value, []),
                                                 "path": f"{context['folder']}/{name}"})
            context["worklist"] = _json_dataset_rows(files, "worklist.json")
            context["worklist_found"] = _json_dataset_rows(files, "worklist-found.json")
            context["mpps_create"] = _json_dataset_rows(files, "mpps-create.json")
            context["mpps_set"] = _json_dataset_rows(files, "mpps-set.json")
            context["series"] = _series(run, patient)
            if context["identity"] is not None and patient.status != RunPatient.Status.RUNNING:
                result = verify_patient(files, _study_dir(run, patient))
                context["checks"] = verification_rows(result.checks)
                context["verification_ok"] = result.ok
    context["events"] = list(patient.events.order_by("seq"))
    return render(request, "simulator/patient.html", context)


def _acks(patient: RunPatient) -> dict[str, list[dict[str, Any]]]:
    """The ACKs received per sending step, from the run's events (``hl7.sent``)."""
    acks: dict[str, list[dict[str, Any]]] = {}
    for event in patient.events.filter(type="hl7.sent").order_by("seq"):
        payload = event.payload or {}
        acks.setdefault(event.step_type, []).append({
            "code": payload.get("ack_code", ""), "message": event.message, "latency_ms": payload.get("latency_ms"),
            "lines": hl7_lines(payload["ack"]) if isinstance(payload.get("ack"), str) else [],
        })
    return acks




