"""A run's options (what ``Run.options`` holds) and the process identity that executes it."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

TRANSFER_SYNTAX_UIDS = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpegls": JPEGLSLossless}


def worker_id() -> str:
    """``host:pid`` of this process, as recorded in ``Run.worker`` (the reaper checks the pid on this host)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path | None = None  # None: YEETER_DATA_DIR/runs/<run id>, decided by run_create
    send: bool = True
    validate_hl7: bool = False
    transfer_syntax: str = "explicit"
    max_instances_per_series: int | None = None
    speed: float = 1.0
    pixel_workers: int = 2
    sending_application: str = "YEETER"
    sending_facility: str = "YEETER_HOSP"
    station_ae_title: str = "MODALITY1"
    mrn_format: str = "MRN{n:07d}"
    # Identifiers (UIDs, accession and order numbers) from the seed too, as an earlier run with that seed had
    # them; by default they come from the run's own id, so two runs never share a UID (runsim --replay-ids).
    replay_ids: bool = False
    # Endpoint kinds served by built-in receivers started for this run (none given for them).
    builtin_kinds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["output_dir"] = str(self.output_dir) if self.output_dir else None
        data["builtin_kinds"] = list(self.builtin_kinds)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunOptions":
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["output_dir"] = Path(values["output_dir"]) if values.get("output_dir") else None
        values["builtin_kinds"] = tuple(values.get("builtin_kinds", ()))
        return cls(**values)


