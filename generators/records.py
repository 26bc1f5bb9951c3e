"""The one record of a DICOM instance on disk: what the generator wrote, what C-STORE sends (from
``dataset_offset``, without decoding), what MPPS lists and what a store result refers to. No heavy imports:
the transport layer uses it too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    dataset_offset: int  # where the data set starts (after preamble and File Meta): C-STORE sends from there
    series_instance_uid: str = ""  # known when we wrote the file; a file read from disk leaves them empty
    series_number: int = 0
    instance_number: int = 0
    size: int = 0
