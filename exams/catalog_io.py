"""The catalog file format: load and dump a versioned JSON catalog (``manage.py load_catalog/dump_catalog``).

Format (version 1)::

    {"format": "yeeter-catalog", "version": 1,
     "exams": [{"id", "name", "description", "modality", "body_part", "laterality", "care_settings": [...],
                "weight", "min_age", "max_age", "required_sex", "contrast", "contrast_agent",
                "contrast_volume_ml", "estimated_duration_min", "purpose", "active",
                "codes": [{"code", "scheme", "display"}, ...],          # first = primary CPT code
                "series": [{"number", "description", "protocol_name", "instances", "role", "plane",
                            "sequence_name", "weighting", "fat_sat", "slice_thickness_mm", "kvp",
                            "contrast_phase", "kernel", "view_position", "image_laterality", "window",
                            "projection", "frames", "scene"}, ...]}],
     "indications": [{"text", "icd10", "body_part", "modality", "laterality", "min_age", "max_age",
                      "sex", "weight", "active", "purpose", "secondary_icd10", "secondary_text"}]}

``purpose`` (screening, diagnostic, follow_up, staging, trauma, guidance; default diagnostic) decides
which indications an exam's orders draw (``generators.terms.PURPOSE_DRAWS``). A series' ``scene`` is what
an NM or US series shows (``generators.terms.MODALITY_SCENES``: ``bone``, ``vq-perf``, ``kidney-left``...),
required for those two modalities and absent (or empty) for every other.

A file is validated completely before anything is written; every problem is reported with the exam
(or indication) and field it concerns, and loading happens in one transaction, so a bad file never
leaves a half-loaded catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from exams import rules
from exams.models import ExamSpec, Indication, ProcedureCode, SeriesProtocol

FORMAT = "yeeter-catalog"
VERSION = 1
SHIPPED_CATALOG = Path(__file__).resolve().parent / "fixtures" / "catalog.json"

_SETTINGS = {"outpatient": "for_outpatient", "inpatient": "for_inpatient", "emergency": "for_emergency"}
_EXAM_KEYS = {"id", "name", "description", "modality", "body_part", "laterality", "care_settings", "weight",
              "min_age", "max_age", "required_sex", "contrast", "contrast_agent", "contrast_volume_ml",
              "estimated_duration_min", "purpose", "active", "codes", "series"}
_EXAM_REQUIRED = {"id", "name", "description", "modality", "body_part", "codes", "series"}
_CODE_KEYS = {"code", "scheme", "display"}
_SERIES_KEYS = {"number", "description", "protocol_name", "instances", "role", "plane", "sequence_name",
                "weighting", "fat_sat", "slice_thickness_mm", "kvp", "contrast_phase", "kernel", "view_position",
                "image_laterality", "window", "projection", "frames", "scene"}
_SERIES_REQUIRED = {"number", "description", "protocol_name", "instances"}
_INDICATION_KEYS = {"text", "icd10", "body_part", "modality", "laterality", "min_age", "max_age", "sex", "weight",
                    "active", "purpose", "secondary_icd10", "secondary_text"}

# The JSON type each field must have (None: null allowed). Checked before any model is built, so
# ``"weight": true`` or ``"id": 123`` is reported instead of being coerced into 1 or "123".
_NUMBER = (int, float)
_OPT_STR = (str, None)
_EXAM_TYPES: dict[str, Any] = {
    "id": str, "name": str, "description": str, "modality": str, "body_part": str, "laterality": _OPT_STR,
    "care_settings": list, "weight": int, "min_age": (int, None), "max_age": (int, None),
    "required_sex": _OPT_STR, "contrast": _OPT_STR, "contrast_agent": _OPT_STR,
    "contrast_volume_ml": (*_NUMBER, None), "estimated_duration_min": int, "purpose": str, "active": bool,
    "codes": list, "series": list}
_CODE_TYPES: dict[str, Any] = {"code": str, "scheme": str, "display": str}
_SERIES_TYPES: dict[str, Any] = {
    "number": int, "description": str, "protocol_name": str, "instances": int, "role": _OPT_STR,
    "plane": _OPT_STR, "sequence_name": _OPT_STR, "weighting": _OPT_STR, "fat_sat": bool,
    "slice_thickness_mm": (*_NUMBER, None), "kvp": (int, None), "contrast_phase": _OPT_STR, "kernel": _OPT_STR,
    "view_position": _OPT_STR, "image_laterality": _OPT_STR, "window": _OPT_STR, "projection": _OPT_STR,
    "frames": int, "scene": _OPT_STR}
_INDICATION_TYPES: dict[str, Any] = {
    "text": str, "icd10": str, "body_part": _OPT_STR, "modality": _OPT_STR, "laterality": _OPT_STR,
    "min_age": (int, None), "max_age": (int, None), "sex": _OPT_STR, "weight": int, "active": bool,
    "purpose": str, "secondary_icd10": _OPT_STR, "secondary_text": _OPT_STR}
# Deeper than any catalog or scenario file needs; a 100,000-deep document is an attack, not a catalog.
MAX_DEPTH = 32
_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", list: "a list",
               dict: "an object", None: "null"}


def json_type_problem(value: Any, expected: Any) -> str | None:
    """Why ``value`` (decoded JSON) is not of ``expected`` (a type, None, or a tuple of them), or None.
    JSON ``true`` is never a number here, although Python's bool is an int."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    for kind in allowed:
        if kind is None and value is None:
            return None
        if kind is not None and isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
            return None
    names = [_TYPE_NAMES.get(k, str(k)) for k in allowed]
    if int in allowed and float in allowed:
        names = ["a number"] + [n for n in names if n not in {"a whole number", "a number"}]
    if isinstance(value, (dict, list)):
        shown = _TYPE_NAMES[type(value)]
    else:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"must be {' or '.join(dict.fromkeys(names))}, got {shown}."


def _check_types(where: str, data: dict, types: dict[str, Any], problems: list[str]) -> bool:
    found = [(key, p) for key, expected in types.items() if key in data
             and (p := json_type_problem(data[key], expected)) is not None]
    problems.extend(f"{where}: field {key}: {p}" for key, p in found)
    return not found


def decode_json_document(text: str, source: str) -> Any:
    """Decode a JSON file's text for the loaders: one sentence (``ValueError``) for a syntax error, a
    document nested deeper than :data:`MAX_DEPTH`, or a NUL character (PostgreSQL text cannot hold one)."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{source}: {constant} is not a JSON number (JSON has no NaN or Infinity).")

    try:
        document = json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except RecursionError:
        raise ValueError(f"{source}: the JSON is nested too deeply (more than {MAX_DEPTH} levels).") from None
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:  # iterative: the document may be deep
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{source}: the JSON is nested too deeply (more than {MAX_DEPTH} levels).")
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{source}: {path or 'the document'}: text may not contain NUL characters (\\u0000).")
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise ValueError(f"{source}: {path or 'the document'}: a field name contains a NUL character.")
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    return document


class CatalogError(Exception):
    """A catalog file cannot be loaded; ``problems`` lists every problem found (``where: field: message``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"The catalog has {len(problems)} problem(s); nothing was loaded:\n{shown}{more}")


@dataclass(frozen=True)
class LoadResult:
    exams_created: int
    exams_updated: int
    exams_deleted: int
    indications_created: int
    indications_updated: int
    indications_deleted: int


@dataclass
class _ParsedExam:
    exam: ExamSpec
    codes: list[ProcedureCode]
    series: list[SeriesProtocol]


def _validation_messages(exc: ValidationError) -> list[tuple[str, str]]:
    if hasattr(exc, "error_dict"):
        return [(field, msg) for field, errors in exc.message_dict.items() for msg in errors]
    return [("__all__", msg) for msg in exc.messages]


def _check_keys(where: str, data: Any, allowed: set[str], required: set[str], problems: list[str]) -> bool:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected an object, got {type(data).__name__}.")
        return False
    for key in sorted(set(data) - allowed):
        problems.append(f"{where}: field {key}: unknown field (allowed: {', '.join(sorted(allowed))}).")
    for key in sorted(required - set(data)):
        problems.append(f"{where}: field {key}: missing.")
    return not (required - set(data))


def _decimal(value: Any) -> Any:
    """JSON numbers as Decimal for DecimalFields; anything else is left for ``full_clean`` to report."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


def _clean(where: str, obj, problems: list[str], exclude: list[str] | None = None) -> None:
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for field, msg in _validation_messages(exc):
            problems.append(f"{where}: field {field}: {msg}" if field != "__all__" else f"{where}: {msg}")


def _parse_exam(index: int, data: dict, problems: list[str]) -> _ParsedExam | None:
    where = f"exam #{index + 1}"
    if isinstance(data, dict) and isinstance(data.get("id"), str) and len(data["id"]) <= 40 \
            and data["id"].isprintable():
        where = f"exam {data['id']}"
    if not _check_keys(where, data, _EXAM_KEYS, _EXAM_REQUIRED, problems):
        return None
    if not _check_types(where, data, _EXAM_TYPES, problems):
        return None
    care = data.get("care_settings", ["outpatient"])
    if not isinstance(care, list) or any(not isinstance(s, str) or s not in _SETTINGS for s in care):
        problems.append(f"{where}: field care_settings: must be a list of outpatient/inpatient/emergency, got {care!r}.")
        care = []
    fields = {k: v for k, v in data.items() if k in _EXAM_KEYS - {"care_settings", "codes", "series"}}
    for key in ("laterality", "required_sex", "contrast_agent"):
        if fields.get(key) is None:
            fields[key] = ""
    fields.setdefault("contrast", "none")
    exam = ExamSpec(**fields, **{attr: name in care for name, attr in _SETTINGS.items()})
    exam.contrast_volume_ml = _decimal(exam.contrast_volume_ml)
    _clean(where, exam, problems)
    problems.extend(f"{where}: field {p.field}: {p.message}" for p in rules.check_exam(exam.rule_fields()))

    codes: list[ProcedureCode] = []
    raw_codes = data.get("codes")
    if not isinstance(raw_codes, list):
        problems.append(f"{where}: field codes: must be a list.")
        raw_codes = []
    for i, c in enumerate(raw_codes):
        cw = f"{where}: code #{i + 1}"
        if _check_keys(cw, c, _CODE_KEYS, _CODE_KEYS, problems) and _check_types(cw, c, _CODE_TYPES, problems):
            code = ProcedureCode(exam_id=exam.id, order=i, **c)
            _clean(cw, code, problems, exclude=["exam"])
            codes.append(code)
    problems.extend(f"{where}: field {p.field}: {p.message}" for p in rules.check_codes(
        [{"code": c.code, "scheme": c.scheme, "display": c.display} for c in codes]))

    series: list[SeriesProtocol] = []
    raw_series = data.get("series")
    if not isinstance(raw_series, list):
        problems.append(f"{where}: field series: must be a list.")
        raw_series = []
    for i, s in enumerate(raw_series):
        sw = f"{where}: series #{i + 1}"
        if _check_keys(sw, s, _SERIES_KEYS, _SERIES_REQUIRED, problems) and _check_types(sw, s, _SERIES_TYPES,
                                                                                           problems):
            values = {k: v for k, v in s.items() if k in _SERIES_KEYS}
            values["instance_count"] = values.pop("instances")
            for key in ("plane", "sequence_name", "weighting", "contrast_phase", "kernel", "view_position",
                        "image_laterality", "role", "window", "projection", "scene"):
                if values.get(key) is None:
                    values.pop(key, None)
            values["slice_thickness_mm"] = _decimal(values.get("slice_thickness_mm"))
            proto = SeriesProtocol(exam=exam, **values)  # the exam's modality decides which scenes are valid
            _clean(sw, proto, problems, exclude=["exam"])
            series.append(proto)
    problems.extend(f"{where}: field {p.field}: {p.message}" for p in rules.check_series(
        exam.modality, [_series_rule_view(s) for s in series]))
    return _ParsedExam(exam, codes, series)


def _series_rule_view(s: SeriesProtocol) -> dict:
    return {"number": s.number, "instance_count": s.instance_count, "sequence_name": s.sequence_name,
            "weighting": s.weighting, "window": s.window, "projection": s.projection}


def _parse_indication(index: int, data: dict, problems: list[str]) -> Indication | None:
    where = f"indication #{index + 1}"
    if isinstance(data, dict) and isinstance(data.get("icd10"), str) and len(data["icd10"]) <= 16:
        where += f" ({data['icd10']})"
    if not _check_keys(where, data, _INDICATION_KEYS, {"text", "icd10"}, problems):
        return None
    if not _check_types(where, data, _INDICATION_TYPES, problems):
        return None
    values = {k: ("" if v is None and k in {"body_part", "modality", "laterality", "sex", "secondary_icd10",
                                             "secondary_text"} else v)
              for k, v in data.items() if k in _INDICATION_KEYS}
    ind = Indication(**values)
    _clean(where, ind, problems)
    return ind


def parse_catalog(document: Any) -> tuple[list[_ParsedExam], list[Indication]]:
    """Validate a decoded catalog document; raises :class:`CatalogError` listing every problem."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise CatalogError([f"the file must contain a JSON object, got {type(document).__name__}."])
    if document.get("format") != FORMAT:
        problems.append(f"format: expected {FORMAT!r}, got {document.get('format')!r}.")
    if document.get("version") != VERSION:
        problems.append(f"version: this Yeeter reads catalog version {VERSION}, got {document.get('version')!r}.")
    for key in sorted(set(document) - {"format", "version", "exams", "indications", "exported_at"}):
        problems.append(f"{key}: unknown top-level field.")
    raw_exams = document.get("exams")
    if not isinstance(raw_exams, list):
        problems.append("exams: must be a list.")
        raw_exams = []
    raw_indications = document.get("indications", [])
    if not isinstance(raw_indications, list):
        problems.append("indications: must be a list.")
        raw_indications = []
    exams = [p for i, e in enumerate(raw_exams) if (p := _parse_exam(i, e, problems)) is not None]
    ids = [p.exam.id for p in exams]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"exam {dup}: the id appears more than once.")
    indications = [p for i, d in enumerate(raw_indications) if (p := _parse_indication(i, d, problems)) is not None]
    keys = [(i.icd10, i.text) for i in indications]
    for dup in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"indication {dup[0]} {dup[1]!r}: listed more than once.")
    if problems:
        raise CatalogError(problems)
    return exams, indications


def read_catalog_file(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError([f"{path}: cannot read the file ({exc.strerror or exc})."]) from None
    except UnicodeDecodeError:
        raise CatalogError([f"{path}: the file is not UTF-8 text."]) from None
    try:
        return decode_json_document(text, str(path))
    except ValueError as exc:
        raise CatalogError([str(exc)]) from None


def load_catalog(document: Any, *, replace: bool = False) -> LoadResult:
    """Load a catalog document into the database, all or nothing.

    Without ``replace`` the file's exams and indications are created or updated in place (their codes
    and series replaced by the file's) and everything else is kept; loading the same file twice leaves
    the same catalog. With ``replace`` the catalog becomes exactly the file.
    """
    exams, indications = parse_catalog(document)
    with transaction.atomic():
        existing = set(ExamSpec.objects.values_list("id", flat=True))
        file_ids = {p.exam.id for p in exams}
        deleted = 0
        ind_deleted = 0
        if replace:
            deleted = len(existing - file_ids)
            ExamSpec.objects.exclude(id__in=file_ids).delete()
        ProcedureCode.objects.filter(exam_id__in=file_ids).delete()
        SeriesProtocol.objects.filter(exam_id__in=file_ids).delete()
        to_update = [p.exam for p in exams if p.exam.id in existing]
        to_create = [p.exam for p in exams if p.exam.id not in existing]
        ExamSpec.objects.bulk_create(to_create)
        if to_update:
            fields = [f.name for f in ExamSpec._meta.concrete_fields if not f.primary_key and f.name != "created_at"]
            for exam in to_update:
                exam.save(update_fields=fields)  # save() so auto_now moves updated_at
        ProcedureCode.objects.bulk_create([c for p in exams for c in p.codes])
        SeriesProtocol.objects.bulk_create([s for p in exams for s in p.series])

        current = {(i.icd10, i.text): i.pk for i in Indication.objects.only("pk", "icd10", "text")}
        new_keys = {(i.icd10, i.text) for i in indications}
        if replace:
            stale = [pk for key, pk in current.items() if key not in new_keys]
            ind_deleted = len(stale)
            Indication.objects.filter(pk__in=stale).delete()
        ind_update = []
        for ind in indications:
            ind.pk = current.get((ind.icd10, ind.text))
            if ind.pk is not None:
                ind_update.append(ind)
        Indication.objects.bulk_create([i for i in indications if i.pk is None])
        if ind_update:
            Indication.objects.bulk_update(
                ind_update, [f.name for f in Indication._meta.concrete_fields if f.name not in {"id", "icd10", "text"}]
            )
    return LoadResult(len(to_create), len(to_update), deleted,
                      len(indications) - len(ind_update), len(ind_update), ind_deleted)


def _num(value: Decimal | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def dump_catalog() -> dict:
    """The whole catalog as a version-1 document (exams by id, codes and series in order)."""
    exams = ExamSpec.objects.prefetch_related("codes", "series").order_by("id")
    return {
        "format": FORMAT,
        "version": VERSION,
        "exams": [
            {
                "id": e.id, "name": e.name, "description": e.description, "modality": e.modality,
                "body_part": e.body_part, "laterality": e.laterality, "care_settings": e.care_settings,
                "weight": e.weight, "min_age": e.min_age, "max_age": e.max_age, "required_sex": e.required_sex,
                "contrast": e.contrast, "contrast_agent": e.contrast_agent,
                "contrast_volume_ml": _num(e.contrast_volume_ml),
                "estimated_duration_min": e.estimated_duration_min, "purpose": e.purpose, "active": e.active,
                "codes": [{"code": c.code, "scheme": c.scheme, "display": c.display} for c in e.codes.all()],
                "series": [
                    {"number": s.number, "description": s.description, "protocol_name": s.protocol_name,
                     "instances": s.instance_count, "role": s.role, "plane": s.plane,
                     "sequence_name": s.sequence_name, "weighting": s.weighting, "fat_sat": s.fat_sat,
                     "slice_thickness_mm": _num(s.slice_thickness_mm), "kvp": s.kvp,
                     "contrast_phase": s.contrast_phase, "kernel": s.kernel, "view_position": s.view_position,
                     "image_laterality": s.image_laterality,
                     # optional keys, written only when curated (the shipped file carries them on those series)
                     **({"window": s.window} if s.window else {}),
                     **({"projection": s.projection} if s.projection else {}),
                     # written only for a multi-frame series, so single-frame lines stay as they were
                     **({"frames": s.frames} if s.frames != 1 else {}),
                     **({"scene": s.scene} if s.scene else {})}
                    for s in e.series.all()
                ],
            }
            for e in exams
        ],
        "indications": [
            {"text": i.text, "icd10": i.icd10, "body_part": i.body_part, "modality": i.modality,
             "laterality": i.laterality, "min_age": i.min_age, "max_age": i.max_age, "sex": i.sex,
             "weight": i.weight, "active": i.active, "purpose": i.purpose,
             "secondary_icd10": i.secondary_icd10, "secondary_text": i.secondary_text}
            for i in Indication.objects.order_by("icd10", "text")
        ],
    }
