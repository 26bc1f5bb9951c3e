"""What the peer stored: query the PACS for a study just sent and compare with what was sent (VERIFY_PACS).

The check is a closed loop over the network: Study Root C-FIND (PS3.4 C.4.1) at STUDY level for the
Study Instance UID, then at SERIES level inside it (or the same two searches over DICOMweb QIDO-RS,
PS3.18 §10.6, for a PACS that speaks it), and the answers compared with the study as sent
(:class:`SentStudy`, read from the headers of the files that were stored, one per series, so it is
literally what went on the wire):

=====================================  ======================================================
attribute                              compared with
=====================================  ======================================================
PatientID, PatientName                 the sent header (names without trailing empty components)
AccessionNumber, StudyDescription      the sent header
StudyInstanceUID                       exactly one study answers for it
NumberOfStudyRelatedSeries             the number of series sent
SeriesInstanceUID                      every series sent is there, and no other
Modality (per series)                  the sent series' modality
NumberOfSeriesRelatedInstances         the instances stored in that series (an IMAGE-level C-FIND
                                       counts them when the PACS leaves this optional key empty)
=====================================  ======================================================

Pure comparison (:func:`compare`) is separate from the network (:func:`verify_pacs`), so a test can
feed answers of any shape.
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.query import find_study_root, level_query
from simulations.transport.qido import qido_search

STUDY_KEYS = ("PatientID", "PatientName", "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances")
_HEADER_KEYS = ["PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID", "StudyDescription",
                "SeriesInstanceUID", "Modality", "SeriesNumber"]


@dataclass(frozen=True, slots=True)
class SentSeries:
    series_instance_uid: str
    modality: str
    number: str
    instances: int


@dataclass(frozen=True, slots=True)
class SentStudy:
    """The study as it went to the PACS (identity from the first stored file of each series)."""

    patient_id: str
    patient_name: str
    accession_number: str
    study_instance_uid: str
    study_description: str
    series: tuple[SentSeries, ...]

    @classmethod
    def from_files(cls, stored: Iterable[Path]) -> "SentStudy":
        """From the files stored (successfully) at the PACS; reads one header per series."""
        counts: Counter[str] = Counter()
        first: dict[str, Dataset] = {}
        for path in sorted(stored):
            series_key = path.name.split("_", 1)[0]  # generator names: <series>_<instance>.dcm
            counts[series_key] += 1
            if series_key not in first:
                first[series_key] = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_KEYS)
        if not first:
            raise ValueError("no stored instance to compare with")
        head = next(iter(first.values()))
        series = tuple(
            SentSeries(str(ds.SeriesInstanceUID), str(ds.get("Modality", "")), str(ds.get("SeriesNumber", "")),
                       counts[key])
            for key, ds in first.items()
        )
        return cls(patient_id=str(head.get("PatientID", "")), patient_name=_name(head.get("PatientName", "")),
                   accession_number=str(head.get("AccessionNumber", "")),
                   study_instance_uid=str(head.StudyInstanceUID),
                   study_description=str(head.get("StudyDescription", "")), series=series)

    @property
    def instance_count(self) -> int:
        return sum(s.instances for s in self.series)


@dataclass(frozen=True, slots=True)
class Difference:
    """One attribute where the PACS disagrees with what was sent."""

    attribute: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.attribute}: expected {self.expected!r}, found {self.found!r}"

    def to_json(self) -> dict[str, str]:
        return {"artifact": "pacs", "field": self.attribute, "expected": self.expected, "actual": self.found}


def _name(value: object) -> str:
    # PS3.5 6.2: trailing empty components of a PN carry nothing; PACS differ in keeping them.
    return str(value or "").rstrip("^= ")


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def compare(sent: SentStudy, studies: list[Dataset], series: list[Dataset],
            counted: dict[str, int] | None = None) -> list[Difference]:
    """Differences between ``sent`` and the PACS's STUDY-level and SERIES-level answers.

    ``counted`` gives, per Series Instance UID, the instances an IMAGE-level query found, for
    series whose NumberOfSeriesRelatedInstances the PACS left empty.
    """
    uid = sent.study_instance_uid
    if not studies:
        return [Difference(f"study {uid}", "stored", "not found by a STUDY-level C-FIND")]
    if len(studies) > 1:
        return [Difference(f"study {uid}", "1 match", f"{len(studies)} matches")]
    study = studies[0]
    out: list[Difference] = []
    for attribute, expected, found in (
        ("PatientID", sent.patient_id, _text(study, "PatientID")),
        ("PatientName", sent.patient_name, _name(study.get("PatientName", ""))),
        ("AccessionNumber", sent.accession_number, _text(study, "AccessionNumber")),
        ("StudyDescription", sent.study_description, _text(study, "StudyDescription")),
    ):
        if expected != found:
            out.append(Difference(attribute, expected, found))
    if _text(study, "NumberOfStudyRelatedSeries") not in ("", str(len(sent.series))):
        out.append(Difference("NumberOfStudyRelatedSeries", str(len(sent.series)),
                              _text(study, "NumberOfStudyRelatedSeries")))
    found_series = {_text(s, "SeriesInstanceUID"): s for s in series}
    if len(found_series) != len(sent.series):
        out.append(Difference("number of series", str(len(sent.series)), str(len(found_series))))
    counted = counted or {}
    for expected in sent.series:
        label = f"series {expected.number or '?'} ({expected.series_instance_uid})"
        answer = found_series.get(expected.series_instance_uid)
        if answer is None:
            out.append(Difference(f"{label} SeriesInstanceUID", expected.series_instance_uid, "absent"))
            continue
        if _text(answer, "Modality") != expected.modality:
            out.append(Difference(f"{label} Modality", expected.modality, _text(answer, "Modality")))
        number = _text(answer, "NumberOfSeriesRelatedInstances")
        if not number and expected.series_instance_uid in counted:
            number = str(counted[expected.series_instance_uid])
        if number != str(expected.instances):
            out.append(Difference(f"{label} NumberOfSeriesRelatedInstances", str(expected.instances),
                                  number or "not given"))
    sent_uids = {s.series_instance_uid for s in sent.series}
    for extra in sorted(set(found_series) - sent_uids):
        out.append(Difference(f"series {extra}", "not sent", "present in the PACS"))
    return out


def study_query(uid: str) -> Dataset:
    return level_query("STUDY", {"StudyInstanceUID": uid, **{k: "" for k in STUDY_KEYS}})


def series_query(uid: str) -> Dataset:
    return level_query("SERIES", {"StudyInstanceUID": uid, **{k: "" for k in SERIES_KEYS}})


@dataclass(frozen=True)
class PacsVerification:
    sent: SentStudy
    studies: list[Dataset]
    series: list[Dataset]
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict:
        return {"ok": self.ok, "study_instance_uid": self.sent.study_instance_uid,
                "series_sent": len(self.sent.series), "instances_sent": self.sent.instance_count,
                "studies_found": [s.to_json_dict() for s in self.studies],
                "series_found": [s.to_json_dict() for s in self.series],
                "differences": [d.to_json() for d in self.differences]}


def verify_pacs(peer: DicomPeer, sent: SentStudy, *, timeout: float | None = None) -> PacsVerification:
    """C-FIND ``peer`` for ``sent`` at STUDY and SERIES level and compare (raises SendError on network failure)."""
    uid = sent.study_instance_uid

    def images(series_uid: str) -> list[Dataset]:
        return find_study_root(peer, level_query("IMAGE", {"StudyInstanceUID": uid, "SeriesInstanceUID": series_uid,
                                                           "SOPInstanceUID": ""}), timeout=timeout)

    return _verify(sent, lambda: find_study_root(peer, study_query(uid), timeout=timeout),
                   lambda: find_study_root(peer, series_query(uid), timeout=timeout), images)


def verify_pacs_qido(base_url: str, sent: SentStudy, *, timeout: float = 30.0) -> PacsVerification:
    """The same comparison over DICOMweb: QIDO-RS study and series searches (PS3.18 §10.6) at ``base_url``."""
    uid = sent.study_instance_uid

    def fields(keywords: tuple[str, ...]) -> list[str]:
        return [f"{tag_for_keyword(k):08X}" for k in keywords]

    quoted = urllib.parse.quote(uid, safe="")
    return _verify(
        sent,
        lambda: qido_search(base_url, "studies", {"StudyInstanceUID": uid, "includefield": fields(STUDY_KEYS)},
                            timeout=timeout),
        lambda: qido_search(base_url, f"studies/{quoted}/series", {"includefield": fields(SERIES_KEYS)},
                            timeout=timeout),
        lambda series_uid: qido_search(base_url, f"studies/{quoted}/series/{urllib.parse.quote(series_uid, safe='')}"
                                                 "/instances", {"includefield": fields(("SOPInstanceUID",))},
                                       timeout=timeout),
    )


def _verify(sent: SentStudy, find_studies: Callable[[], list[Dataset]], find_series: Callable[[], list[Dataset]],
            find_images: Callable[[str], list[Dataset]]) -> PacsVerification:
    studies = find_studies()
    series = find_series() if len(studies) == 1 else []
    counted: dict[str, int] = {}
    for answer in series:
        series_uid = _text(answer, "SeriesInstanceUID")
        if series_uid and not _text(answer, "NumberOfSeriesRelatedInstances"):
            counted[series_uid] = len({_text(i, "SOPInstanceUID") for i in find_images(series_uid)})
    return PacsVerification(sent, studies, series, compare(sent, studies, series, counted))
