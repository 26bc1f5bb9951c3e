"""Key Object Selection Document (PS3.3 A.35.4, SOP Class 1.2.840.10008.5.1.4.1.1.88.59), TID 2010.

Modules: Patient, General Study, Patient Study, Key Object Document Series (C.17.6.1, Modality KO,
Referenced Performed Procedure Step), General Equipment, Key Object Document (C.17.6.2: Instance
Number, Content Date/Time, Referenced Request Sequence, Current Requested Procedure Evidence Sequence
listing every referenced instance), SR Document Content and SOP Common.

TID 2010 Key Object Selection: a root CONTAINER titled from CID 7010 (Key Object Selection Document
Title, e.g. (113000, DCM, "Of Interest")), an optional Key Object Description TEXT, then one IMAGE
item (no concept name) per selected instance.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence as Seq

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from generators.dicom.sr import items as sr
from generators.dicom.sr.document import (
    DocumentSeries,
    ImageRef,
    StudyContext,
    attach_content,
    base_dataset,
    evidence,
    referenced_request,
)
from generators.terms import SeriesRole
from generators.types import Order

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
# CID 7010 Key Object Selection Document Title
OF_INTEREST = ("113000", "DCM", "Of Interest")
KEY_OBJECT_DESCRIPTION = ("113012", "DCM", "Key Object Description")


def choose_key_images(study: StudyContext, *, rng: random.Random, limit: int = 4) -> list[tuple[str, ImageRef]]:
    """Key images a radiologist flags: one instance near the middle of each diagnostic series (localizers
    skipped unless nothing else was acquired), at most ``limit``, in series order."""
    candidates = [s for s in study.series if s.instances and s.spec.role != SeriesRole.LOCALIZER]
    candidates = candidates or [s for s in study.series if s.instances]
    chosen = sorted(rng.sample(range(len(candidates)), min(limit, len(candidates))))
    picks = []
    for i in chosen:
        series = candidates[i]
        middle = len(series.instances) // 2
        index = min(len(series.instances) - 1, max(0, middle + rng.choice((-1, 0, 0, 1))))
        picks.append((series.series_instance_uid, series.instances[index]))
    return picks


def build_kos(order: Order, study: StudyContext, doc: DocumentSeries, references: Seq[tuple[str, ImageRef]], *,
              now: dt.datetime, title: sr.CodeTriple = OF_INTEREST, description: str = "") -> Dataset:
    """A Key Object Selection document flagging ``references`` ((Series Instance UID, instance) pairs)."""
    if not references:
        raise ValueError("a key object selection references at least one instance")
    ds = base_dataset(order, study, doc, sop_class_uid=KEY_OBJECT_SELECTION, modality="KO", now=now,
                      texts=[description])
    ds.ReferencedRequestSequence = Sequence([referenced_request(order)])
    ds.CurrentRequestedProcedureEvidenceSequence = evidence(order, references)
    content = []
    if description:
        content.append(sr.text(sr.CONTAINS, KEY_OBJECT_DESCRIPTION, description))
    content += [sr.image(sr.CONTAINS, None, ref.sop_class_uid, ref.sop_instance_uid) for _, ref in references]
    attach_content(ds, title, content, template="2010")
    return ds
