"""C-ECHO SCU (PS3.7 §9.1.5, Verification SOP Class PS3.4 Annex A): is the peer there?"""

from __future__ import annotations

import time

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from simulations.transport.dimse.common import DicomPeer, set_nodelay
from simulations.transport.errors import SendError

# A-ASSOCIATE-RJ (result source, reason) -> text, PS3.8 §9.3.4 Table 9-21
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def reject_reason(source: int, reason: int) -> str:
    """Text of an A-ASSOCIATE-RJ reason/diagnostic (PS3.8 Table 9-21)."""
    return _REJECT_REASONS.get((source, reason), f"reason {reason} (source {source})")


def association_error(assoc: Association, peer: DicomPeer, purpose: str = "association") -> SendError:
    """The SendError for an association that did not get established: rejected, aborted, or no peer.

    A rejection with result 1 (rejected-permanent, PS3.8 §9.3.4) is permanent; result 2
    (rejected-transient), aborts and connection failures may succeed later.
    """
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = getattr(primitive, "result", None)
        source = getattr(primitive, "result_source", None) or 0
        diagnostic = getattr(primitive, "diagnostic", None) or 0
        kind = "permanently" if result == 0x01 else "transiently"
        return SendError(
            f"{peer} rejected the {purpose} association {kind}: {reject_reason(source, diagnostic)}",
            permanent=result == 0x01,
            status=f"A-ASSOCIATE-RJ {result}/{source}/{diagnostic}",
        )
    if assoc.is_aborted:
        return SendError(f"{peer} aborted the {purpose} association during negotiation")
    return SendError(f"cannot open a {purpose} association with {peer}: no answer or connection refused")


def echo(peer: DicomPeer) -> float:
    """Send one C-ECHO-RQ to ``peer`` and return the round-trip time of the exchange in seconds.

    The association set-up is not counted. Raises SendError when the association is rejected
    or aborted, the peer cannot be reached, or the status is not Success (0x0000).
    """
    ae = AE(ae_title=peer.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout
    ae.connection_timeout = peer.timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise association_error(assoc, peer, "verification")
    set_nodelay(assoc)
    try:
        start = time.perf_counter()
        status = assoc.send_c_echo()
        elapsed = time.perf_counter() - start
        if assoc.is_aborted:
            raise SendError(f"{peer} aborted the association during C-ECHO")
        if not status or "Status" not in status:
            raise SendError(f"{peer} gave no C-ECHO response within {peer.timeout:g} s")
        code = int(status.Status)
        if code != 0x0000:
            raise SendError(f"{peer} answered C-ECHO with status 0x{code:04X}", status=code)
        return elapsed
    finally:
        if assoc.is_established:
            assoc.release()
