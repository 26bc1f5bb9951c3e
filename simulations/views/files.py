"""A run's files: one file of its folder, and one patient's study as a streamed zip.

Files are read only from inside the run's folder (:func:`run_path`), never through a symlink.
"""

from __future__ import annotations

import mimetypes
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, StreamingHttpResponse

from simulations.models import Run, RunPatient
from simulations.views.runs import patient_or_404, visible_run_or_404


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
    run = visible_run_or_404(request, run_id)
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
    run = visible_run_or_404(request, run_id)
    patient = patient_or_404(run, number)
    files = [(p, f"{patient.study_instance_uid}/{p.name}") for p in study_files(run, patient)]
    if not files:
        raise Http404("This patient has no study on disk.")
    response = StreamingHttpResponse(_zip_stream(files), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{patient.accession_number or number}.zip"'
    return response


def study_dir(run: Run, patient: RunPatient) -> Path | None:
    if not patient.study_instance_uid or not run.output_dir:
        return None
    study = Path(run.output_dir) / patient.study_instance_uid
    return study if study.is_dir() and not study.is_symlink() else None


def study_files(run: Run, patient: RunPatient) -> list[Path]:
    study = study_dir(run, patient)
    if study is None:
        return []
    return sorted(p for p in study.glob("*.dcm") if p.is_file() and not p.is_symlink())
