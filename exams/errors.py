"""Domain errors of the catalog: raised instead of returning None or falling back to something random."""

from __future__ import annotations


class CatalogLookupError(Exception):
    """Base of the catalog's lookup errors; ``message`` is a full sentence for API/CLI users."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExamNotFound(CatalogLookupError):
    """No active exam has the id or CPT code asked for."""


class NoMatchingExam(CatalogLookupError):
    """No active exam satisfies every filter; the message names the filters."""

    def __init__(self, filters: dict) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in filters.items() if v not in (None, "")) or "no filters"
        super().__init__(f"No active exam in the catalog matches {shown}.")
        self.filters = filters


class NoIndication(CatalogLookupError):
    """No indication in the vocabulary fits the exam and patient."""
