"""One patient's story: identity set, every message as sent with its ACK, worklist and MPPS as
attribute tables, a preview and a header per series, and the verification expected vs found."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from simulations.artifacts import PatientFiles
from simulations.documents import DOCUMENT_MODALITIES, pdf_file_name
from simulations.models import Run, RunPatient
from simulations.steps import StepType
from simulations.verification import verify_patient
from simulations.views.files import study_dir, study_files
from simulations.views.runs import patient_or_404, visible_run_or_404

# The message each step sends, as the runner keeps it (simulations.artifacts).
MESSAGE_FILES = (("adt.hl7", "Registration (ADT)", StepType.REGISTER_PATIENT),
                 ("orm.hl7", "Order (ORM^O01)", StepType.SEND_HL7),
                 ("oru.hl7", "Report (ORU^R01)", StepType.SEND_REPORT),
                 ("cancel.hl7", "Order cancel (ORM^O01 CA)", StepType.CANCEL_ORDER))


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
    study = study_dir(run, patient)
    if study is None:
        return []
    by_number: dict[int, list[Path]] = {}
    for path in study_files(run, patient):
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
    run = visible_run_or_404(request, run_id)
    patient = patient_or_404(run, number)
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
                result = verify_patient(files, study_dir(run, patient))
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
