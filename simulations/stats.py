"""RunStats: what a patient story (and, summed, a run) sent and made, as typed counters.

Each patient keeps its own (``RunPatient.stats``, written when its story ends); a run's summary is the sum
of its patients', whichever process or worker executed them (:func:`run_summary`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class RunStats:
    hl7_sent: int = 0
    acks: Counter[str] = field(default_factory=Counter)  # MSA-1 code -> messages
    worklist_published: int = 0
    worklist_found: int = 0
    mpps_sent: int = 0
    instances_generated: int = 0
    bytes_generated: int = 0
    instances_stored: int = 0
    instances_failed: int = 0
    committed: int = 0
    reports: int = 0
    verified: int = 0
    step_seconds: Counter[str] = field(default_factory=Counter)  # step type -> seconds spent

    def add(self, other: RunStats) -> RunStats:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, f.name, mine + theirs)
        return self

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["acks"] = dict(self.acks)
        data["step_seconds"] = {k: round(v, 3) for k, v in sorted(self.step_seconds.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RunStats:
        data = data or {}
        stats = cls(**{f.name: data[f.name] for f in fields(cls)
                       if f.name in data and f.name not in ("acks", "step_seconds")})
        stats.acks = Counter(data.get("acks") or {})
        stats.step_seconds = Counter(data.get("step_seconds") or {})
        return stats


def run_summary(stats: RunStats, *, patients: int, passed: int, failed: int, cancelled: int,
                elapsed: float) -> dict[str, Any]:
    """``Run.summary``: the patients' outcome, the summed counters and the rates over ``elapsed`` seconds."""
    mb = stats.bytes_generated / 1e6
    return {
        "patients": patients, "passed": passed, "failed": failed, "cancelled": cancelled,
        "hl7_messages": stats.hl7_sent, "acks": dict(stats.acks),
        "worklist_published": stats.worklist_published, "worklist_found": stats.worklist_found,
        "mpps": stats.mpps_sent, "instances_generated": stats.instances_generated,
        "instances_stored": stats.instances_stored, "instances_failed": stats.instances_failed,
        "megabytes": round(mb, 2), "committed": stats.committed, "reports": stats.reports,
        "verified": stats.verified, "duration_s": round(elapsed, 3),
        "patients_per_minute": round(passed / elapsed * 60, 2) if elapsed else 0.0,
        "instances_per_second": round(stats.instances_generated / elapsed, 1) if elapsed else 0.0,
        "megabytes_per_second": round(mb / elapsed, 2) if elapsed else 0.0,
        "step_seconds": {k: round(v, 3) for k, v in sorted(stats.step_seconds.items())},
    }
