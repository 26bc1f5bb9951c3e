"""Query/Retrieve - FIND, Study Root (PS3.4 Annex C): a C-FIND SCU and an SCP over what our Storage SCP received.

* :func:`find_study_root` - C-FIND on the Study Root Query/Retrieve Information Model of any PACS
  (Orthanc, dcm4chee, our own), one level at a time (C.4.1.2: the identifier names the level in
  Query/Retrieve Level (0008,0052) and carries the unique keys of the levels above it).
* :class:`StudyRootQueryScp` - our built-in Q/R FIND SCP. It answers from the files the Storage
  SCP filed under ``storage_dir/<StudyInstanceUID>/<SOPInstanceUID>.dcm``: headers are read once
  per file (cached by path, size and mtime), grouped into study, series and image records with the
  computed Number of Study/Series Related Series/Instances and Modalities in Study (C.3.4,
  Table C.6-5), and matched with the C.2.2.2 rules of :func:`~simulations.transport.dimse.worklist.match_worklist_item`
  (the matching rules are the same for every information model). Hierarchical queries only
  (C.4.1.2.1): a SERIES or IMAGE query needs the Study Instance UID (and, for IMAGE, the Series
  Instance UID) of its parent; Relational queries are refused with 0xA900 (the SCP did not
  negotiate them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification  # type: ignore[attr-defined]

from generators.vr import clip
from simulations.transport.dimse.common import DicomPeer, PynetdicomScp
from simulations.transport.dimse.worklist import (
    CANCELLED,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    PENDING,
    SOURCE_FAILED,
    SUCCESS,
    QueryError,
    c_find,
    match_worklist_item,
)

logger = logging.getLogger(__name__)

LEVELS = ("STUDY", "SERIES", "IMAGE")

# Attributes kept per level (PS3.4 Table C.6-5 and the Patient keys a Study Root query may carry at STUDY level).
_STUDY_TAGS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "IssuerOfPatientID", "StudyInstanceUID",
               "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
               "SpecificCharacterSet")
_SERIES_TAGS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
                "Laterality", "SeriesDate", "SeriesTime")
_IMAGE_TAGS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")
_READ_TAGS = list(dict.fromkeys((*_STUDY_TAGS, *_SERIES_TAGS, *_IMAGE_TAGS)))


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = clip(comment)
    return ds


# --- SCU ------------------------------------------------------------------------------------------


def find_study_root(peer: DicomPeer, query: Dataset, *, timeout: float | None = None) -> list[Dataset]:
    """C-FIND ``query`` (with its QueryRetrieveLevel) on the Study Root FIND model of ``peer`` (PS3.4 C.4.1).

    Returns the identifiers of the pending responses; raises :class:`SendError` when the peer is
    absent, does not offer the model, or ends with a failure status (``.status`` carries it).
    """
    return c_find(peer, StudyRootQueryRetrieveInformationModelFind, query, purpose="Study Root C-FIND",
                  timeout=timeout)


def level_query(level: str, keys: dict[str, object]) -> Dataset:
    """A C-FIND identifier at ``level`` with ``keys`` (keyword -> value; "" asks for the value back)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


# --- the index over received files ------------------------------------------------------------------


@dataclass
class _Series:
    attributes: Dataset
    images: dict[str, Dataset] = field(default_factory=dict)


@dataclass
class _Study:
    attributes: Dataset
    series: dict[str, _Series] = field(default_factory=dict)


class ReceivedIndex:
    """Study/series/image records of the files under ``storage_dir/<StudyUID>/*.dcm`` (headers cached)."""

    def __init__(self, storage_dir: Path) -> None:
        self.storage_dir = Path(storage_dir)
        self._lock = threading.Lock()
        self._headers: dict[Path, tuple[tuple[int, int], Dataset]] = {}

    def _header(self, path: Path) -> Dataset | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._headers.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_READ_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            logger.warning("query index: cannot read %s: %s", path, exc)
            return None
        with self._lock:
            self._headers[path] = (key, ds)
        return ds

    def studies(self, study_uids: list[str] | None = None) -> list[_Study]:
        """The studies on disk (only those of ``study_uids`` when given), in folder name order."""
        if study_uids is not None:
            folders = [self.storage_dir / uid for uid in study_uids if uid and "/" not in uid and uid[0] != "."]
        else:
            try:
                folders = sorted(p for p in self.storage_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                folders = []
        studies = []
        for folder in folders:
            study = self._study(folder)
            if study is not None:
                studies.append(study)
        return studies

    def _study(self, folder: Path) -> _Study | None:
        study: _Study | None = None
        try:
            paths = sorted(folder.glob("*.dcm"))
        except OSError:
            return None
        for path in paths:
            ds = self._header(path)
            if ds is None or not ds.get("SeriesInstanceUID") or not ds.get("SOPInstanceUID"):
                continue
            if study is None:
                study = _Study(_pick(ds, _STUDY_TAGS))
            series = study.series.get(str(ds.SeriesInstanceUID))
            if series is None:
                series = study.series[str(ds.SeriesInstanceUID)] = _Series(_pick(ds, _SERIES_TAGS))
            series.images[str(ds.SOPInstanceUID)] = _pick(ds, _IMAGE_TAGS)
        return study


def _pick(ds: Dataset, keywords: tuple[str, ...]) -> Dataset:
    out = Dataset()
    for keyword in keywords:
        if keyword in ds:
            out[keyword] = ds[keyword]
    return out


def _study_record(study: _Study) -> Dataset:
    record = Dataset()
    record.update(study.attributes)
    modalities = sorted({str(s.attributes.get("Modality", "")) for s in study.series.values()} - {""})
    record.ModalitiesInStudy = modalities
    record.NumberOfStudyRelatedSeries = len(study.series)
    record.NumberOfStudyRelatedInstances = sum(len(s.images) for s in study.series.values())
    return record


def _series_record(study: _Study, series: _Series) -> Dataset:
    record = Dataset()
    record.StudyInstanceUID = study.attributes.get("StudyInstanceUID", "")
    if "SpecificCharacterSet" in study.attributes:
        record.SpecificCharacterSet = study.attributes.SpecificCharacterSet
    record.update(series.attributes)
    record.NumberOfSeriesRelatedInstances = len(series.images)
    return record


def _image_record(study: _Study, series: _Series, image: Dataset) -> Dataset:
    record = Dataset()
    record.StudyInstanceUID = study.attributes.get("StudyInstanceUID", "")
    record.SeriesInstanceUID = series.attributes.get("SeriesInstanceUID", "")
    if "SpecificCharacterSet" in study.attributes:
        record.SpecificCharacterSet = study.attributes.SpecificCharacterSet
    record.update(image)
    return record


def _uids(query: Dataset, keyword: str) -> list[str] | None:
    """The UID list a unique key holds (None: universal)."""
    value = query.get(keyword)
    if value in (None, "", "*"):
        return None
    return [str(v) for v in value] if not isinstance(value, str) else [value]


def study_root_records(index: ReceivedIndex, query: Dataset) -> Iterator[Dataset]:
    """The records at the query's level whose parents its unique keys name (PS3.4 C.4.1.2.1 hierarchical)."""
    level = str(query.get("QueryRetrieveLevel", "") or "").strip()
    if level not in LEVELS:
        raise QueryError(f"Query/Retrieve Level {level!r} is not STUDY, SERIES or IMAGE for Study Root",
                         status=IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
    study_uids = _uids(query, "StudyInstanceUID")
    if level != "STUDY" and (study_uids is None or len(study_uids) != 1):
        raise QueryError(f"a {level} query needs one Study Instance UID (hierarchical query, PS3.4 C.4.1.2.1)",
                         status=IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
    series_uids = _uids(query, "SeriesInstanceUID")
    if level == "IMAGE" and (series_uids is None or len(series_uids) != 1):
        raise QueryError("an IMAGE query needs one Series Instance UID (hierarchical query, PS3.4 C.4.1.2.1)",
                         status=IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
    for study in index.studies(study_uids):
        if level == "STUDY":
            yield _study_record(study)
            continue
        for series in study.series.values():
            if level == "SERIES":
                yield _series_record(study, series)
            elif str(series.attributes.get("SeriesInstanceUID", "")) in (series_uids or []):
                for image in series.images.values():
                    yield _image_record(study, series, image)


# --- SCP ------------------------------------------------------------------------------------------


def handle_find(event: Event, index: ReceivedIndex) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """EVT_C_FIND on Study Root Q/R FIND (PS3.4 C.4.1.3): pending per match, then success; never raises."""
    try:
        query = event.identifier
        _ = list(query)
    except Exception as exc:  # pydicom raises various errors for a malformed identifier
        yield _failure(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"undecodable identifier: {exc}"), None
        return
    keys = Dataset()
    for elem in query:
        if elem.keyword != "QueryRetrieveLevel":
            keys.add(elem)
    try:
        records = study_root_records(index, query)
        for record in records:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            response = match_worklist_item(keys, record)
            if response is not None:
                response.QueryRetrieveLevel = query.QueryRetrieveLevel
                yield PENDING, response
    except QueryError as exc:
        yield _failure(exc.status, str(exc)), None
        return
    except OSError:
        logger.exception("Study Root C-FIND: the received files could not be read")
        yield _failure(SOURCE_FAILED, "the received files could not be read"), None
        return
    yield SUCCESS, None


class StudyRootQueryScp(PynetdicomScp):
    """Study Root Q/R FIND SCP over ``storage_dir`` (what our Storage SCP received); answers C-ECHO too."""

    default_ae_title = "YEETER_QR"

    def __init__(self, *, storage_dir: Path, ae_title: str = "YEETER_QR", host: str = "127.0.0.1",
                 port: int = 0, **limits: float) -> None:
        """``limits``: the ARTIM/idle/association limits of :class:`PynetdicomScp`."""
        super().__init__(ae_title=ae_title, host=host, port=port, **limits)
        self.index = ReceivedIndex(storage_dir)

    def supported_contexts(self) -> list[str]:
        return [StudyRootQueryRetrieveInformationModelFind, Verification]

    def event_handlers(self) -> list[tuple]:
        return [(evt.EVT_C_FIND, handle_find, [self.index])]


__all__ = ["LEVELS", "ReceivedIndex", "StudyRootQueryScp", "find_study_root", "level_query", "study_root_records"]
