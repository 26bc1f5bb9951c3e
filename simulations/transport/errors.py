"""The one domain error of the transport layer (healthchecks ``TransportError`` habit)."""

from __future__ import annotations


class SendError(Exception):
    """An exchange with a peer failed.

    ``permanent`` is True when retrying cannot help (HL7 AR reject, association rejected
    permanently, DICOM failure status the peer will repeat); the runner records the message on
    the step and retries only non-permanent errors.
    """

    def __init__(self, message: str, *, permanent: bool = False, status: int | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status

    def __str__(self) -> str:
        return self.message
