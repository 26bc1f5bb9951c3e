"""What the peer stored: query the PACS for a study just sent and compare with what was sent (VERIFY_PACS).

The check is a closed loop over the network: Study Root C-FIND (PS3.4 C.4.1) at STUDY level for the
Study Instance UID, then at SERIES level inside it, and the answers compared with the study as sent
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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.query import find_study_root, level_query

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
    studies = find_study_root(peer, study_query(uid), timeout=timeout)
    series = find_study_root(peer, series_query(uid), timeout=timeout) if len(studies) == 1 else []
    counted: dict[str, int] = {}
    for answer in series:
        series_uid = _text(answer, "SeriesInstanceUID")
        if series_uid and not _text(answer, "NumberOfSeriesRelatedInstances"):
            images = find_study_root(peer, level_query("IMAGE", {"StudyInstanceUID": uid,
                                                                 "SeriesInstanceUID": series_uid,
                                                                 "SOPInstanceUID": ""}), timeout=timeout)
            counted[series_uid] = len({_text(i, "SOPInstanceUID") for i in images})
    return PacsVerification(sent, studies, series, compare(sent, studies, series, counted))
