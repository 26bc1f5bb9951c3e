"""Storage Commitment Push Model (PS3.4 Annex J; IHE RAD-10 "Storage Commitment").

The SCU asks with N-ACTION (Action Type 1, "Request Storage Commitment") on the well-known
SOP Instance 1.2.840.10008.1.20.1.1 and learns the outcome from an N-EVENT-REPORT (Event Type
1 "all committed", 2 "failures exist") that the SCP sends either on the same association or on
one it opens back to us (PS3.4 J.3.3). :func:`request_commitment` accepts both; reports on new
associations arrive at one :class:`CommitmentListener` per run, matched by Transaction UID. The report
sender here and the data sets (:mod:`.commitment_info`) are shared with the built-in SCP (``storage_scp``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from simulations.transport.dimse.commitment_info import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    CommitmentReport,
    CommitmentResult,
    commitment_request,
    parse_commitment_report,
)
from simulations.transport.dimse.common import NO_ACCEPTED_CONTEXT, DicomPeer, associate, handle_conn_open
from simulations.transport.errors import SendError

LOGGER = logging.getLogger(__name__)

_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]


class CommitmentNotOffered(SendError):
    """The peer accepted the association but not the Storage Commitment Push Model SOP class
    (dcmtk ``storescp`` and many archives): there is nobody to ask, which is not a storage failure."""


class _Waiters:
    """Reports awaited by Transaction UID (PS3.4 J.3.3: the report names the transaction it answers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[threading.Event, list[CommitmentResult]]] = {}

    def expect(self, transaction_uid: str) -> None:
        with self._lock:
            self._pending[transaction_uid] = (threading.Event(), [])

    def forget(self, transaction_uid: str) -> None:
        with self._lock:
            self._pending.pop(transaction_uid, None)

    def deliver(self, result: CommitmentResult) -> bool:
        """Hand ``result`` to whoever waits for its transaction; False when nobody does."""
        with self._lock:
            entry = self._pending.get(result.transaction_uid)
        if entry is None:
            return False
        entry[1].append(result)
        entry[0].set()
        return True

    def wait(self, transaction_uid: str, timeout: float) -> CommitmentResult | None:
        with self._lock:
            entry = self._pending.get(transaction_uid)
        if entry is None or not entry[0].wait(timeout):
            return None
        return entry[1][0]


def _report_handler(waiters: _Waiters, *, same_association: bool):
    def handle_report(event: Any) -> tuple[int, None]:
        """N-EVENT-REPORT (PS3.4 J.3.3): the SCP's verdict for one transaction."""
        if str(event.request.AffectedSOPClassUID) != StorageCommitmentPushModel:
            return 0x0122, None  # SOP class not supported
        if event.request.EventTypeID not in (EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST):
            return 0x0113, None  # no such event type
        try:
            result = parse_commitment_report(event.event_information)
        except (AttributeError, ValueError, TypeError, KeyError) as exc:
            LOGGER.warning("unreadable Storage Commitment report: %s", exc)
            return 0x0110, None
        result.same_association = same_association
        if not waiters.deliver(result):
            # Late (after a timeout) or for another run: acknowledged, so the SCP does not resend forever.
            LOGGER.info("Storage Commitment report for transaction %s that nobody awaits", result.transaction_uid)
        return 0x0000, None

    return handle_report


class CommitmentListener:
    """Where Storage Commitment reports arrive on a new association (PS3.4 J.3.3): one per run.

    Real archives (Orthanc, dcm4chee, most PACS) open an association back to the modality, by the
    AE title and address registered for it, to deliver the N-EVENT-REPORT. This listener accepts
    those associations on ``host:port`` under ``ae_title`` (any called AE title is accepted, as the
    PACS may spell it otherwise), proposing nothing itself, and hands each report to the
    :func:`request_commitment` call waiting for its Transaction UID, so any number of requests
    share it. The association requestor acts as Storage Commitment SCP: its role selection
    (PS3.7 D.3.3.4) is accepted.
    """

    def __init__(self, *, ae_title: str = "YEETER", host: str = "0.0.0.0", port: int = 0) -> None:
        self.ae_title = ae_title
        self.host = host
        self._requested_port = port
        self.waiters = _Waiters()
        self._server: Any = None

    def start(self) -> "CommitmentListener":
        """Bind and serve in background threads (``OSError`` when the port is taken)."""
        if self._server is not None:
            return self
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(StorageCommitmentPushModel, _SYNTAXES, scu_role=False, scp_role=True)
        self._server = ae.start_server(
            (self.host, self._requested_port),
            block=False,
            evt_handlers=[
                (evt.EVT_N_EVENT_REPORT, _report_handler(self.waiters, same_association=False)),
                (evt.EVT_CONN_OPEN, handle_conn_open),
            ],
        )
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the commitment listener is not started")
        return int(self._server.server_address[1])

    def __str__(self) -> str:
        port = self.port if self._server is not None else self._requested_port
        return f"{self.ae_title}@{self.host}:{port}"

    def __enter__(self) -> "CommitmentListener":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared_lock = threading.Lock()
_shared: dict[tuple[str, int], list[Any]] = {}  # (host, port) -> [listener, users]


def acquire_listener(*, ae_title: str, host: str, port: int) -> CommitmentListener:
    """The process's listener on ``host:port``, started on first use: runs in one process (the web
    server, a Celery worker) that share a commitment endpoint share its listener, as Transaction
    UIDs keep their reports apart. Pair every call with :func:`release_listener`."""
    with _shared_lock:
        entry = _shared.get((host, port))
        if entry is None:
            entry = _shared[(host, port)] = [CommitmentListener(ae_title=ae_title, host=host, port=port).start(), 0]
        entry[1] += 1
        return entry[0]


def release_listener(listener: CommitmentListener) -> None:
    """One user fewer; the last one stops the listener."""
    with _shared_lock:
        for key, entry in list(_shared.items()):
            if entry[0] is listener:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _shared[key]
                    listener.stop()
                return
    listener.stop()  # not shared: stop it anyway


def request_commitment(
    peer: DicomPeer,
    instances: Sequence[tuple[str, str]],
    *,
    transaction_uid: str,
    timeout: float = 30.0,
    listener: CommitmentListener | None = None,
    listen_port: int | None = None,
    listen_host: str = "127.0.0.1",
) -> CommitmentResult:
    """Ask ``peer`` to commit ``instances`` [(SOP class, SOP instance)] and wait for its verdict.

    PS3.4 J.3.2 N-ACTION, then J.3.3 N-EVENT-REPORT, accepted on this association (kept open
    while waiting) and, with ``listener`` (or a private one on ``listen_host:listen_port``), on
    an association the SCP opens back to us; the PACS must know that address for our calling
    AE title. Raises :class:`CommitmentNotOffered` when the peer does not offer the SOP class,
    and SendError when the request is refused or no report arrives within ``timeout`` seconds
    (its message names the address the PACS must report to).
    """
    if not instances:
        raise ValueError("request_commitment needs at least one instance")
    own = None
    if listener is None and listen_port is not None:
        own = listener = CommitmentListener(ae_title=peer.calling_ae_title, host=listen_host, port=listen_port).start()
    waiters = listener.waiters if listener is not None else _Waiters()
    waiters.expect(transaction_uid)
    try:
        try:
            assoc = associate(peer, [(StorageCommitmentPushModel, _SYNTAXES)], purpose="Storage Commitment",
                              evt_handlers=[(evt.EVT_N_EVENT_REPORT,
                                             _report_handler(waiters, same_association=True))])
        except SendError as exc:
            if exc.status == NO_ACCEPTED_CONTEXT:
                raise CommitmentNotOffered(f"{peer} does not offer Storage Commitment (it accepted no presentation "
                                           "context for the Storage Commitment Push Model SOP class)",
                                           permanent=True, status=exc.status) from None
            raise
        try:
            status, _ = assoc.send_n_action(
                commitment_request(transaction_uid, instances),
                1,
                StorageCommitmentPushModel,
                StorageCommitmentPushModelInstance,
            )
            if not status:
                raise SendError(f"{peer} did not answer the Storage Commitment N-ACTION")
            code = int(status.get("Status", 0xFFFF))
            if code != 0x0000:
                comment = status.get("ErrorComment", "")
                detail = f": {comment}" if comment else ""
                raise SendError(
                    f"{peer} refused Storage Commitment: N-ACTION status 0x{code:04X}{detail}",
                    permanent=code in (0x0122, 0x0123, 0x0112, 0x0120),
                    status=code,
                )
            # Keep this association open while waiting: the report may come on it or on a new one.
            result = waiters.wait(transaction_uid, timeout)
            if result is None:
                raise SendError(f"{peer} sent no Storage Commitment report within {timeout:g} s: "
                                + _where_to_report(peer, listener))
        finally:
            _release_bounded(assoc, timeout=min(peer.timeout, 10.0))
    finally:
        waiters.forget(transaction_uid)
        if own is not None:
            own.stop()
    return result


def _where_to_report(peer: DicomPeer, listener: CommitmentListener | None) -> str:
    """What the user checks when no report came: the address the PACS must report to."""
    if listener is None:
        return (f"{peer.ae_title} may report on a new association: pass --commit-listen [AET@][HOST:]PORT (or set "
                f"the commitment endpoint's listen port) and register {peer.calling_ae_title} at that address in "
                "the PACS")
    host = listener.host if listener.host not in ("", "0.0.0.0") else "this-host"
    return (f"register {listener.ae_title}@{host}:{listener.port} in the PACS ({peer.ae_title}) as the modality "
            "that receives its reports, or pass --commit-listen with the address it already knows")


def _release_bounded(assoc: Any, *, timeout: float) -> None:
    """Release in the background, and never hang: abort when the release does not complete within ``timeout``.

    pynetdicom's ``Association.release()`` pauses the reactor by spinning until it reports itself
    paused; when the peer's N-EVENT-REPORT is being served at that moment the spin can last forever
    (pynetdicom issue #820, seen here about once in 50 commitments under load). The verdict is already
    in hand, so the caller goes on at once: a watchdog thread releases, and cuts a stuck release short
    with an A-ABORT, which also ends the spin. (Waiting here held a patient for the whole ``timeout``.)
    """
    if not assoc.is_established:
        return

    def release_or_abort() -> None:
        done = threading.Event()

        def release() -> None:
            try:
                assoc.release()
            finally:
                done.set()

        threading.Thread(target=release, name="commitment-release", daemon=True).start()
        if not done.wait(timeout):
            LOGGER.warning("Storage Commitment association release did not complete in %g s; aborting it", timeout)
            assoc.abort()

    threading.Thread(target=release_or_abort, name="commitment-release-watchdog", daemon=True).start()


def send_commitment_report(target: DicomPeer, report: CommitmentReport) -> None:
    """As Storage Commitment SCP, deliver an N-EVENT-REPORT on a new association (PS3.4 J.3.3.1)."""
    assoc = associate(target, [(StorageCommitmentPushModel, _SYNTAXES)], purpose="Storage Commitment report",
                      ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)])
    try:
        status, _ = assoc.send_n_event_report(
            report.dataset(), report.event_type, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        code = int(status.get("Status", 0xFFFF)) if status else None
        if code != 0x0000:
            raise SendError(f"{target} answered the Storage Commitment report with status {code!r}")
    finally:
        if assoc.is_established:
            assoc.release()


__all__ = [
    "CommitmentListener",
    "CommitmentNotOffered",
    "acquire_listener",
    "release_listener",
    "request_commitment",
    "send_commitment_report",
]
