"""A whole DICOM study for an order: every series of the exam protocol, streamed to Part 10 files.

Output layout: ``<out_dir>/<StudyInstanceUID>/<series:03d>_<instance:04d>.dcm`` plus one
``preview_<series:03d>.png`` per series. Series, SOP Instance and Frame of Reference UIDs come from a
stream seeded by the order's Study Instance UID and ``seed`` (:func:`generators.uids.new_uid`), pixels from ``seed``,
so the same order and seed write identical files; the Study Instance UID and every identifier of the
patient and order come from ``order``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from generators.dicom import iods
from generators.dicom.pixels import SeriesPixels, series_pixels, thumbnail_window
from generators.dicom.preview import preview_path, write_frame_strip_png, write_preview_png
from generators.records import InstanceRecord
from generators.dicom.writer import (
    SUPPORTED_TRANSFER_SYNTAXES,
    AsyncFileWriter,
    SeriesTemplate,
    encode_dataset_element,
    file_meta_bytes,
    pixel_element,
)
from generators.terms import Modality, scene_problem
from generators.types import ExamInfo, Order
from generators.uids import new_uid


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    number: int
    series_instance_uid: str
    description: str
    modality: str
    instance_count: int
    sop_class_uid: str
    preview_path: Path | None


@dataclass(frozen=True, slots=True)
class StudyResult:
    study_instance_uid: str
    study_dir: Path
    series: list[SeriesRecord]
    instance_count: int
    bytes: int
    instances: tuple[InstanceRecord, ...] = ()  # every file written, in order: what C-STORE and MPPS use


def _check_transfer_syntax(uid: str) -> None:
    if uid not in SUPPORTED_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax {uid}; use one of {', '.join(SUPPORTED_TRANSFER_SYNTAXES)}")
    if uid == JPEGLSLossless:
        from pydicom.pixels import get_encoder

        if not get_encoder(uid).is_available:
            raise ValueError("JPEG-LS Lossless needs the pyjpegls package, which is not importable")


def _check_scenes(exam: ExamInfo) -> None:
    """Every NM/US series names its modality's scene (the catalog's rule, :func:`exams.rules.check_scene`)
    before anything is written: the scene decides the pixels, tracer, collimator and transducer."""
    for spec in exam.series:
        problem = scene_problem(exam.modality, spec.scene)
        if problem:
            raise ValueError(f"exam {exam.id}, series {spec.number} ({spec.description}): {problem}")


def _position_values(pixels: SeriesPixels, i: int) -> tuple[str | None, str | None]:
    g = pixels.geometry
    if g is None:
        return None, None
    return "\\".join(iods.decimal_string(v) for v in g.position(i)), iods.decimal_string(g.location(i))


def _orientation_value(pixels: SeriesPixels, i: int) -> str:
    assert pixels.geometry is not None
    return "\\".join(iods.decimal_string(v) for v in pixels.geometry.orientation_at(i))


def _generate(order: Order, out_dir: Path, *, seed: int, transfer_syntax: str, now: dt.datetime,
              manufacturer_model: str | None, max_instances_per_series: int | None, previews: bool,
              pps_started_at: dt.datetime | None = None) -> Iterator[InstanceRecord | SeriesRecord]:
    _check_transfer_syntax(transfer_syntax)
    exam = order.exam
    _check_scenes(exam)
    study_dir = Path(out_dir) / order.study_instance_uid
    study_dir.mkdir(parents=True, exist_ok=True)
    # UIDs derive from the Study Instance UID (unique per run, see mint_order) and the pixel seed: the same
    # order and seed write the same files, but another order (or other pixels) never reuses a UID.
    rng = random.Random(f"uids/{order.study_instance_uid}/{seed}")
    # PET/CT (PS3.3 A.21): the CT attenuation series and the PET share one Frame of Reference
    study_for_uid = new_uid(rng) if exam.modality == Modality.PT else None
    writer = AsyncFileWriter(depth=4)
    try:
        acquired = now
        for spec in exam.series:
            count = spec.instance_count
            if max_instances_per_series is not None:
                count = max(1, min(count, max_instances_per_series))
            series_uid, for_uid = new_uid(rng), study_for_uid or new_uid(rng)
            modality = iods.series_modality(exam, spec)
            pixels = series_pixels(exam, spec, count, seed=seed)
            sop_class = iods.sop_class_for(modality, spec)
            ctx = iods.SeriesContext(spec, series_uid, for_uid, acquired, pixels, manufacturer_model, count)
            header = iods.series_dataset(order, ctx, now=now, pps_started_at=pps_started_at)
            multiplane = pixels.geometry is not None and bool(pixels.geometry.planes)
            dynamic = iods.dynamic_tags(modality)
            template = SeriesTemplate(header, {**dynamic, iods.IMAGE_ORIENTATION: "DS"} if multiplane else dynamic)
            detector_items = [encode_dataset_element(iods.nm_detector_information(posterior, spec.scene),
                                                     iods.DETECTOR_INFORMATION)
                              for posterior in (False, True)] if exam.modality == Modality.NM else [None, None]
            preview: Path | None = None
            for i in range(count):
                sop_uid = new_uid(rng)
                if pixels.frames > 1:  # a multi-frame run or cine loop (PS3.3 C.7.6.6)
                    arr = np.stack([pixels.frame(i * pixels.frames + k) for k in range(pixels.frames)])
                else:
                    arr = pixels.frame(i)
                if previews and i == count // 2:
                    center, width = thumbnail_window(pixels)
                    write = write_frame_strip_png if arr.ndim == 3 else write_preview_png
                    preview = write(arr, preview_path(study_dir, spec.number), center=center, width=width)
                position, location = _position_values(pixels, i)
                values = {iods.SOP_INSTANCE_UID: sop_uid, iods.INSTANCE_NUMBER: str(i + 1),
                          iods.IMAGE_POSITION: position, iods.SLICE_LOCATION: location,
                          iods.DETECTOR_INFORMATION: detector_items[i % 2], iods.IMAGE_INDEX: i + 1,
                          iods.IMAGE_ORIENTATION: _orientation_value(pixels, i) if multiplane else None}
                buffers = [file_meta_bytes(sop_class, sop_uid, transfer_syntax), template.header(values),
                           *pixel_element(arr, transfer_syntax, bits_stored=pixels.bits_stored,
                                          signed=pixels.signed)]
                path = study_dir / f"{spec.number:03d}_{i + 1:04d}.dcm"
                record = InstanceRecord(path, sop_class, sop_uid, transfer_syntax, order.study_instance_uid,
                                        len(buffers[0]), series_uid, spec.number, i + 1)
                writer.submit(path, buffers, lambda size, r=record: _sized(r, size))
                yield from writer.done()
            yield SeriesRecord(spec.number, series_uid, spec.description, modality.value, count, sop_class,
                               preview)
            acquired += dt.timedelta(minutes=max(1, round(exam.estimated_duration_min / max(len(exam.series), 1))))
        yield from writer.close()
    finally:
        writer.close()


def _sized(record: InstanceRecord, size: int) -> InstanceRecord:
    return replace(record, size=size)


def iter_study(order: Order, out_dir: Path, *, seed: int, transfer_syntax: str = ExplicitVRLittleEndian,
               now: dt.datetime, manufacturer_model: str | None = None,
               max_instances_per_series: int | None = None,
               on_instance: Callable[[InstanceRecord], None] | None = None,
               previews: bool = True, pps_started_at: dt.datetime | None = None) -> Iterator[InstanceRecord]:
    """Write the study of ``order`` instance by instance (PS3.10 files of the exam's IODs), streaming.

    Yields each :class:`InstanceRecord` once its file is complete on disk (at most a few instances
    behind generation: a writer thread overlaps I/O with pixel computation). Memory stays bounded:
    one series template, a cached anatomy stack and a small ring of slice buffers.
    """
    for item in _generate(order, out_dir, seed=seed, transfer_syntax=transfer_syntax, now=now,
                          manufacturer_model=manufacturer_model, max_instances_per_series=max_instances_per_series,
                          previews=previews, pps_started_at=pps_started_at):
        if isinstance(item, InstanceRecord):
            if on_instance is not None:
                on_instance(item)
            yield item


def write_study(order: Order, out_dir: Path, *, seed: int, transfer_syntax: str = ExplicitVRLittleEndian,
                now: dt.datetime, manufacturer_model: str | None = None,
                max_instances_per_series: int | None = None,
                on_instance: Callable[[InstanceRecord], None] | None = None,
                previews: bool = True, pps_started_at: dt.datetime | None = None) -> StudyResult:
    """Write the whole study of ``order`` (see :func:`iter_study`) and summarise it."""
    series: list[SeriesRecord] = []
    instances: list[InstanceRecord] = []
    total = 0
    for item in _generate(order, out_dir, seed=seed, transfer_syntax=transfer_syntax, now=now,
                          manufacturer_model=manufacturer_model, max_instances_per_series=max_instances_per_series,
                          previews=previews, pps_started_at=pps_started_at):
        if isinstance(item, SeriesRecord):
            series.append(item)
            continue
        instances.append(item)
        total += item.size
        if on_instance is not None:
            on_instance(item)
    return StudyResult(order.study_instance_uid, Path(out_dir) / order.study_instance_uid, series, len(instances),
                       total, tuple(instances))
