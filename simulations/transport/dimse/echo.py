"""C-ECHO SCU (PS3.7 §9.1.5, Verification SOP Class PS3.4 Annex A): is the peer there?"""

from __future__ import annotations

import time

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from simulations.transport.dimse.common import DicomPeer, associate
from simulations.transport.errors import SendError

def echo(peer: DicomPeer) -> float:
    """Send one C-ECHO-RQ to ``peer`` and return the round-trip time of the exchange in seconds.

    The association set-up is not counted. Raises SendError when the association is rejected
    or aborted, the peer cannot be reached, or the status is not Success (0x0000).
    """
    assoc = associate(peer, [(Verification, None)], purpose="verification")
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

