"""DICOM studies for an order: PS3.3 image IODs with synthetic anatomy, written fast (PS3.10 files).

Public API: :func:`write_study` / :func:`iter_study` (:mod:`generators.dicom.study`) and
:func:`write_preview_png` (:mod:`generators.dicom.preview`).
"""

from __future__ import annotations

from generators.dicom.preview import write_preview_png
from generators.records import InstanceRecord
from generators.dicom.study import SeriesRecord, StudyResult, iter_study, write_study

__all__ = ["InstanceRecord", "SeriesRecord", "StudyResult", "iter_study", "write_preview_png", "write_study"]
