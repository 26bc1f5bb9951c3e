"""What a run keeps on disk: per patient, the identity set and every message actually sent.

Layout under the run's directory (``<YEETER_DATA_DIR>/runs/<run id>/`` by default)::

    <StudyInstanceUID>/<series>_<instance>.dcm      the generated study (generators.dicom layout)
    patients/<index>-<accession>/order.json         the identity set minted for the order
    patients/<index>-<accession>/adt.hl7, orm.hl7, oru.hl7, cancel.hl7
    patients/<index>-<accession>/worklist.json      the MWL item (DICOM JSON model)
    patients/<index>-<accession>/worklist-found.json the item as the worklist SCP answered it
    patients/<index>-<accession>/mpps-create.json, mpps-set.json

``manage.py verify_run`` works from these files alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset

from generators.types import Order


@dataclass(frozen=True)
class PatientFiles:
    root: Path

    @classmethod
    def for_order(cls, run_dir: Path, index: int, accession: str) -> "PatientFiles":
        return cls(run_dir / "patients" / f"{index:05d}-{accession}")

    def path(self, name: str) -> Path:
        return self.root / name

    def write_text(self, name: str, text: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(name)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
        return path

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True))

    def write_dataset(self, name: str, ds: Dataset) -> Path:
        return self.write_json(name, ds.to_json_dict())

    def read_text(self, name: str) -> str | None:
        """The file's text exactly as written (no newline translation: HL7 segments end in CR)."""
        path = self.path(name)
        if not path.exists():
            return None
        with path.open(encoding="utf-8", newline="") as f:
            return f.read()

    def read_json(self, name: str) -> Any | None:
        text = self.read_text(name)
        return json.loads(text) if text is not None else None

    def read_dataset(self, name: str) -> Dataset | None:
        data = self.read_json(name)
        return Dataset.from_json(data) if data is not None else None


def identity_json(order: Order) -> dict[str, Any]:
    """The identity set every message must carry (what verification compares against)."""
    p = order.patient
    return {
        "patient_id": p.mrn,
        "issuer": p.issuer,
        "patient_name": p.name.dicom,
        "birth_date": p.birth_date.strftime("%Y%m%d"),
        "sex": p.sex.value,
        "accession_number": order.accession_number,
        "requested_procedure_id": order.requested_procedure_id,
        "sps_id": order.sps_id,
        "study_instance_uid": order.study_instance_uid,
        "mpps_uid": order.mpps_uid,
        "pps_id": order.pps_id,
        "placer_order_number": order.placer_order_number,
        "filler_order_number": order.filler_order_number,
        "exam_id": order.exam.id,
        "modality": order.exam.modality.value,
        "body_part": order.exam.body_part,
        "laterality": order.exam.laterality.value,
        "description": order.exam.description,
        "procedure_code": order.exam.primary_code.code,
        "procedure_scheme": order.exam.primary_code.scheme.value,
        "series_count": len(order.exam.series),
        "setting": order.setting.value,
        "priority": order.priority.name,
        "indication": {"text": order.indication.text, "icd10": order.indication.icd10},
    }
