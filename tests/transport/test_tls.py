"""TLS on every client transport, against real TLS peers on loopback.

MLLP (IHE ATNA practice: MLLP framing inside TLS) against our listener with a server context;
DICOM TLS (PS3.15 Annex B) against a pynetdicom AE serving with ``ssl_context`` and dcmtk
``storescp +tls``. The certificates are made for this session with the ``openssl`` CLI: a test CA,
a server certificate for localhost/127.0.0.1 signed by it, a certificate for another host name
signed by it, and a second CA that signed nothing we serve (an untrusted issuer).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    Verification,
)

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.echo import echo
from simulations.transport.dimse.mpps import mpps_create
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.store import StoreError, send_instances
from simulations.transport.dimse.worklist import find_worklist
from simulations.transport.errors import SendError
from simulations.transport.mllp import AsyncMllpClient, MllpClient, mllp_ping
from simulations.transport.mllp_server import MllpServer, MllpServerThread
from simulations.transport.tls import TlsConfigError, client_context, server_context
from tests.conftest import free_port, require_binary
from tests.pki import Pki
from tests.transport.dicom_files import dataset_bytes, storescp, write_ct_series


@pytest.fixture(scope="session")
def trusting(pki: Pki) -> ssl.SSLContext:
    """A client context that trusts the test CA."""
    return client_context(verify=True, ca_file=pki.ca)


@pytest.fixture(scope="session")
def untrusting(pki: Pki) -> ssl.SSLContext:
    """A client context that trusts only the other CA: our server's chain cannot verify."""
    return client_context(verify=True, ca_file=pki.other_ca)


# --------------------------------------------------------------------------------------------
# tls.client_context / server_context
# --------------------------------------------------------------------------------------------


def test_it_builds_a_verifying_client_context_of_tls_1_2_or_newer(pki: Pki) -> None:
    context = client_context(verify=True, ca_file=pki.ca)

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "Yeeter test ca"),),)]


def test_it_builds_a_non_verifying_client_context_without_reading_the_ca_file(tmp_path: Path) -> None:
    context = client_context(verify=False, ca_file=tmp_path / "absent.pem")

    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_it_reports_a_missing_ca_file_as_a_permanent_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"TLS CA file .*absent\.pem does not exist") as caught:
        client_context(ca_file=tmp_path / "absent.pem")

    assert isinstance(caught.value, ValueError) and isinstance(caught.value, SendError)
    assert caught.value.permanent


def test_it_rejects_a_ca_file_that_is_a_directory_or_holds_no_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")

    with pytest.raises(TlsConfigError, match="is not a file"):
        client_context(ca_file=tmp_path)
    with pytest.raises(TlsConfigError, match="holds no usable certificate"):
        client_context(ca_file=junk)


def test_it_rejects_a_server_key_that_does_not_match_the_certificate(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="cannot be used together"):
        server_context(cert_file=pki.cert, key_file=pki.elsewhere_key)


# --------------------------------------------------------------------------------------------
# HL7 MLLP over TLS
# --------------------------------------------------------------------------------------------


def order(control_id: str = "TLS00001") -> str:
    """A small ORM^O01 (HL7 v2.5.1 4.4.1), built here on purpose (no generator)."""
    return (
        f"MSH|^~\\&|YEETER|RADIOLOGY|RIS|HOSPITAL|20261125093000||ORM^O01^ORM_O01|{control_id}|P|2.5.1\r"
        "PID|1||MRN0001^^^HOSP^MR||DOE^JANE||19700101|F\r"
        "ORC|NW|ORD0001^YEETER\r"
        "OBR|1|ORD0001^YEETER||71046^XR CHEST 2 VIEWS^CPT4\r"
    )


@pytest.fixture
def tls_listener(pki: Pki) -> Iterator[MllpServerThread]:
    server = MllpServer("127.0.0.1", 0, ssl_context=server_context(cert_file=pki.cert, key_file=pki.key))
    handle = server.start_in_thread()
    yield handle
    handle.stop()


@pytest.fixture
def elsewhere_listener(pki: Pki) -> Iterator[MllpServerThread]:
    """A TLS listener whose certificate names another host."""
    context = server_context(cert_file=pki.elsewhere_cert, key_file=pki.elsewhere_key)
    handle = MllpServer("127.0.0.1", 0, ssl_context=context).start_in_thread()
    yield handle
    handle.stop()


@pytest.fixture
def plain_listener() -> Iterator[MllpServerThread]:
    handle = MllpServer("127.0.0.1", 0).start_in_thread()
    yield handle
    handle.stop()


def test_it_sends_an_order_over_tls_and_gets_an_aa(tls_listener: MllpServerThread, trusting: ssl.SSLContext) -> None:
    with MllpClient("127.0.0.1", tls_listener.port, ssl_context=trusting) as client:
        first = client.send(order("TLS00001"))
        second = client.send(order("TLS00002"))
        cipher = client._sock.cipher() if isinstance(client._sock, ssl.SSLSocket) else None

    assert (first.code, first.control_id, second.code, second.control_id) == ("AA", "TLS00001", "AA", "TLS00002")
    assert client.connections_opened == 1  # the idle check does not mistake TLS 1.3 tickets for data
    assert cipher is not None and cipher[1] in ("TLSv1.2", "TLSv1.3")
    assert [m.control_id for m in tls_listener.messages] == ["TLS00001", "TLS00002"]


def test_it_checks_a_tls_peer_by_host_name_too(pki: Pki, trusting: ssl.SSLContext) -> None:
    server = MllpServer("localhost", 0, ssl_context=server_context(cert_file=pki.cert, key_file=pki.key))
    handle = server.start_in_thread()
    try:
        assert mllp_ping("localhost", handle.port, timeout=5, ssl_context=trusting) > 0
    finally:
        handle.stop()


@pytest.mark.asyncio
async def test_the_async_client_sends_over_tls_and_gets_an_aa(pki: Pki, trusting: ssl.SSLContext) -> None:
    server = MllpServer("127.0.0.1", 0, ssl_context=server_context(cert_file=pki.cert, key_file=pki.key))
    async with server:
        async with AsyncMllpClient("127.0.0.1", server.port, ssl_context=trusting) as client:
            acks = await asyncio.gather(*(client.send(order(f"ASYNCTLS{n}")) for n in (1, 2, 3)))

    assert [(a.code, a.control_id) for a in acks] == [("AA", "ASYNCTLS1"), ("AA", "ASYNCTLS2"), ("AA", "ASYNCTLS3")]
    assert client.connections_opened == 1
    assert [m.control_id for m in server.messages] == ["ASYNCTLS1", "ASYNCTLS2", "ASYNCTLS3"]


def test_it_refuses_a_certificate_from_an_untrusted_ca_at_once_and_permanently(
    tls_listener: MllpServerThread, untrusting: ssl.SSLContext
) -> None:
    client = MllpClient("127.0.0.1", tls_listener.port, ssl_context=untrusting, retries=3, backoff=1.0)
    started = time.monotonic()
    with client, pytest.raises(SendError) as caught:
        client.send(order())

    message = str(caught.value)
    assert caught.value.permanent
    assert f"MLLP/TLS 127.0.0.1:{tls_listener.port}: TLS handshake failed" in message
    assert "certificate did not verify: unable to get local issuer certificate" in message
    assert time.monotonic() - started < 1.0  # no retry with backoff for a verdict that cannot change
    assert tls_listener.messages == []


def test_it_refuses_a_certificate_issued_for_another_host(
    elsewhere_listener: MllpServerThread, trusting: ssl.SSLContext
) -> None:
    with MllpClient("127.0.0.1", elsewhere_listener.port, ssl_context=trusting) as client:
        with pytest.raises(SendError, match="certificate did not verify: IP address mismatch") as caught:
            client.send(order())

    assert caught.value.permanent
    assert elsewhere_listener.messages == []


def test_it_accepts_any_certificate_when_verification_is_off(elsewhere_listener: MllpServerThread) -> None:
    with MllpClient("127.0.0.1", elsewhere_listener.port, ssl_context=client_context(verify=False)) as client:
        ack = client.send(order("NOVERIFY1"))

    assert ack.code == "AA"
    assert [m.control_id for m in elsewhere_listener.messages] == ["NOVERIFY1"]


@pytest.mark.asyncio
async def test_the_async_client_refuses_an_untrusted_certificate_permanently(
    pki: Pki, untrusting: ssl.SSLContext
) -> None:
    server = MllpServer("127.0.0.1", 0, ssl_context=server_context(cert_file=pki.cert, key_file=pki.key))
    async with server:
        client = AsyncMllpClient("127.0.0.1", server.port, ssl_context=untrusting, retries=3, backoff=1.0)
        started = time.monotonic()
        async with client:
            with pytest.raises(SendError, match="certificate did not verify: unable to get local issuer") as caught:
                await client.send(order())

    assert caught.value.permanent
    assert time.monotonic() - started < 1.0
    assert server.messages == []


def test_a_plain_client_fails_fast_against_a_tls_listener(tls_listener: MllpServerThread) -> None:
    client = MllpClient("127.0.0.1", tls_listener.port, retries=0, connect_timeout=3, read_timeout=3)
    started = time.monotonic()
    with client, pytest.raises(SendError) as caught:
        client.send(order())

    elapsed = time.monotonic() - started
    # A TLS listener drops a connection whose first bytes are not a ClientHello (no alert is sent).
    assert f"MLLP 127.0.0.1:{tls_listener.port}: peer closed the connection before the ACK" in str(caught.value)
    assert elapsed < 2.0, f"took {elapsed:.1f} s"
    assert tls_listener.messages == []


# Our plain listener skips the ClientHello as bytes outside a block and waits, unless its random
# bytes happen to hold a VT ... FS pair: then it answers an AE ACK, which is not TLS. Either way
# the client must fail within its timeout and say the peer does not seem to speak TLS.
PLAIN_PEER = r"(no answer within 1 s|timed out after 1\.0 s) \(does the peer speak TLS on this port\?\)|does not speak TLS"


def test_a_tls_client_fails_within_its_timeout_against_a_plain_listener(
    plain_listener: MllpServerThread, trusting: ssl.SSLContext
) -> None:
    client = MllpClient("127.0.0.1", plain_listener.port, ssl_context=trusting, retries=0, connect_timeout=1.0)
    started = time.monotonic()
    with client, pytest.raises(SendError, match=PLAIN_PEER) as caught:
        client.send(order())

    elapsed = time.monotonic() - started
    assert not caught.value.permanent  # the peer may yet be switched to TLS: worth a later retry
    assert elapsed < 3.0, f"took {elapsed:.1f} s"


@pytest.mark.asyncio
async def test_the_async_tls_client_fails_within_its_timeout_against_a_plain_listener(
    trusting: ssl.SSLContext,
) -> None:
    async with MllpServer("127.0.0.1", 0) as server:
        client = AsyncMllpClient("127.0.0.1", server.port, ssl_context=trusting, retries=0, connect_timeout=1.0)
        started = time.monotonic()
        async with client:
            with pytest.raises(SendError, match=PLAIN_PEER) as caught:
                await client.send(order())

    assert not caught.value.permanent
    assert time.monotonic() - started < 3.0


def test_a_tls_client_gives_up_on_a_silent_peer_after_its_connect_timeout(trusting: ssl.SSLContext) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never reads or answers
    try:
        client = MllpClient(
            "127.0.0.1", listener.getsockname()[1], ssl_context=trusting, retries=0, connect_timeout=0.5
        )
        started = time.monotonic()
        with client, pytest.raises(SendError) as caught:
            client.send(order())
        elapsed = time.monotonic() - started
    finally:
        listener.close()

    assert "TLS handshake failed: no answer within 0.5 s (does the peer speak TLS on this port?)" in str(caught.value)
    assert not caught.value.permanent
    assert 0.45 < elapsed < 2.0, f"took {elapsed:.1f} s"


def test_a_tls_client_says_so_when_a_plain_peer_answers_with_non_tls_bytes(trusting: ssl.SSLContext) -> None:
    # A plain MLLP receiver that NAKs whatever it gets: our ClientHello is answered with an MLLP block.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_plainly() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"\x0bMSH|^~\\&|RIS|HOSP|||20261125||ACK|1|P|2.5.1\rMSA|AR|\r\x1c\x0d")
            try:
                conn.recv(4096)  # until the client gives up
            except OSError:
                pass  # the client's reset is the expected end

    thread = threading.Thread(target=answer_plainly, daemon=True)
    thread.start()
    try:
        client = MllpClient("127.0.0.1", port, ssl_context=trusting, retries=0, connect_timeout=5)
        with client, pytest.raises(SendError, match="does not speak TLS on this port") as caught:
            client.send(order())
    finally:
        listener.close()
        thread.join(timeout=5)

    assert not caught.value.permanent


# --------------------------------------------------------------------------------------------
# DICOM TLS through pynetdicom (echo; MWL, MPPS and commitment share common.associate)
# --------------------------------------------------------------------------------------------


def handle_find(event: object) -> Iterator[tuple[int, Dataset | None]]:
    """C-FIND (PS3.4 K.4.1.3): one worklist item, whatever the query."""
    item = Dataset()
    item.PatientID = "TLS0001"
    item.AccessionNumber = "A-TLS-1"
    yield 0xFF00, item


def handle_create(event: object) -> tuple[int, Dataset]:
    """N-CREATE (PS3.4 F.7.2.1): accept the MPPS as sent."""
    return 0x0000, event.attribute_list  # type: ignore[attr-defined]


@pytest.fixture
def tls_echo_scp(pki: Pki) -> Iterator[int]:
    """A pynetdicom AE serving Verification, MWL C-FIND and MPPS over TLS only."""
    ae = AE(ae_title="TLSECHO")
    for abstract_syntax in (Verification, ModalityWorklistInformationFind, ModalityPerformedProcedureStep):
        ae.add_supported_context(abstract_syntax)
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        ssl_context=server_context(cert_file=pki.cert, key_file=pki.key),
        evt_handlers=[(evt.EVT_C_FIND, handle_find), (evt.EVT_N_CREATE, handle_create)],
    )
    yield server.server_address[1]
    ae.shutdown()


def test_it_echoes_a_pynetdicom_scp_over_tls(tls_echo_scp: int, trusting: ssl.SSLContext) -> None:
    peer = DicomPeer("127.0.0.1", tls_echo_scp, "TLSECHO", timeout=5, tls=trusting)

    assert echo(peer) > 0
    assert str(peer) == f"TLSECHO@127.0.0.1:{tls_echo_scp} (TLS)"


def test_worklist_queries_and_mpps_run_over_tls_like_echo(tls_echo_scp: int, trusting: ssl.SSLContext) -> None:
    peer = DicomPeer("127.0.0.1", tls_echo_scp, "TLSECHO", timeout=5, tls=trusting)
    query = Dataset()
    query.PatientID = ""
    query.AccessionNumber = ""
    performed = Dataset()
    performed.PerformedProcedureStepStatus = "IN PROGRESS"

    items = find_worklist(peer, query)
    status = mpps_create(peer, performed, mpps_uid="1.2.826.0.1.3680043.10.1.1")

    assert [(i.PatientID, i.AccessionNumber) for i in items] == [("TLS0001", "A-TLS-1")]
    assert status == 0x0000


def test_a_tls_context_does_not_change_what_a_peer_is(trusting: ssl.SSLContext) -> None:
    plain = DicomPeer("127.0.0.1", 104, "PACS")
    secured = DicomPeer("127.0.0.1", 104, "PACS", tls=trusting)

    assert plain == secured and hash(plain) == hash(secured)
    assert "SSLContext" not in repr(secured)


def test_an_echo_to_a_tls_scp_with_an_untrusted_certificate_fails_naming_it(
    tls_echo_scp: int, untrusting: ssl.SSLContext
) -> None:
    peer = DicomPeer("127.0.0.1", tls_echo_scp, "TLSECHO", timeout=5, tls=untrusting)

    with pytest.raises(SendError, match="certificate did not verify: unable to get local issuer certificate") as caught:
        echo(peer)

    assert caught.value.permanent


def test_an_echo_over_tls_to_a_plain_scp_fails_clearly_within_the_timeout(trusting: ssl.SSLContext) -> None:
    ae = AE(ae_title="PLAIN")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    peer = DicomPeer("127.0.0.1", server.server_address[1], "PLAIN", timeout=3, tls=trusting)
    started = time.monotonic()
    try:
        with pytest.raises(SendError, match="TLS handshake failed") as caught:
            echo(peer)
    finally:
        ae.shutdown()

    assert not caught.value.permanent
    assert time.monotonic() - started < 8.0  # pynetdicom's attempt and our diagnosis, each bounded


# --------------------------------------------------------------------------------------------
# C-STORE over TLS (our own socket code) to dcmtk storescp and to our StorageScp
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tls_storescp(tmp_path: Path, pki: Pki) -> Iterator[tuple[int, Path]]:
    binary = require_binary("storescp")
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    if "--enable-tls" not in help_text:
        pytest.skip("this storescp was built without OpenSSL (no --enable-tls)")
    port = free_port()
    received = tmp_path / "received"
    # +tls key cert: serve TLS; -pw: the key has no password; -ic: we present no client certificate,
    # so storescp needs no CA (+cf) of its own
    tls_args = ["+tls", str(pki.key), str(pki.cert), "-pw", "-ic"]
    with storescp(binary, received, port, extra=tls_args):
        yield port, received


@pytest.mark.interop
def test_it_stores_a_series_in_dcmtk_storescp_over_tls_byte_for_byte(
    tmp_path: Path, tls_storescp: tuple[int, Path], trusting: ssl.SSLContext
) -> None:
    port, received = tls_storescp
    # 128x128x2 bytes each: several 16 KiB PDUs per data set, so the coalescing send path is exercised
    files = write_ct_series(tmp_path / "series", count=5, rows=128, columns=128)

    results = send_instances(DicomPeer("127.0.0.1", port, "STORESCP", timeout=10, tls=trusting), files)

    assert [r.status for r in results] == [0x0000] * 5
    for path, result in zip(files, results):
        assert dataset_bytes(received / f"CT.{result.sop_instance_uid}") == dataset_bytes(path)


@pytest.mark.interop
def test_a_store_to_storescp_with_an_untrusted_certificate_sends_nothing(
    tmp_path: Path, tls_storescp: tuple[int, Path], untrusting: ssl.SSLContext
) -> None:
    port, received = tls_storescp
    files = write_ct_series(tmp_path / "series", count=2)

    with pytest.raises(StoreError, match="certificate did not verify: unable to get local issuer") as caught:
        send_instances(DicomPeer("127.0.0.1", port, "STORESCP", timeout=10, tls=untrusting), files)

    assert caught.value.permanent
    assert [ref.path for ref in caught.value.unsent] == files
    assert list(received.glob("CT.*")) == []


@pytest.mark.interop
def test_a_store_over_tls_to_a_plain_storescp_fails_clearly(tmp_path: Path, trusting: ssl.SSLContext) -> None:
    binary = require_binary("storescp")
    port = free_port()
    files = write_ct_series(tmp_path / "series", count=1)
    with storescp(binary, tmp_path / "received", port):
        with pytest.raises(StoreError, match="TLS handshake failed") as caught:
            send_instances(DicomPeer("127.0.0.1", port, "STORESCP", timeout=3, tls=trusting), files)

    assert not caught.value.permanent


@pytest.fixture
def tls_storage_scp(tmp_path: Path, pki: Pki) -> Iterator[StorageScp]:
    context = server_context(cert_file=pki.cert, key_file=pki.key)
    # A small maximum PDU so each data set crosses TLS as several PDUs
    with StorageScp(storage_dir=tmp_path / "store", ssl_context=context, max_pdu=16384, network_timeout=5) as scp:
        yield scp


def test_it_stores_a_series_in_our_storage_scp_over_tls(
    tmp_path: Path, tls_storage_scp: StorageScp, trusting: ssl.SSLContext
) -> None:
    files = write_ct_series(tmp_path / "series", count=4, rows=128, columns=128)
    peer = DicomPeer("127.0.0.1", tls_storage_scp.port, tls_storage_scp.ae_title, timeout=10, tls=trusting)

    results = send_instances(peer, files, associations=2)

    assert [r.status for r in results] == [0x0000] * 4
    stored = {s.sop_instance_uid: s.path for s in tls_storage_scp.stored()}
    for path, result in zip(files, results):
        assert dataset_bytes(stored[result.sop_instance_uid]) == dataset_bytes(path)


def test_a_plain_store_to_our_tls_storage_scp_fails_without_storing(
    tmp_path: Path, tls_storage_scp: StorageScp
) -> None:
    files = write_ct_series(tmp_path / "series", count=1)
    started = time.monotonic()

    with pytest.raises(StoreError, match="closed the connection|connection to .* lost") as caught:
        send_instances(tls_storage_scp.peer, files)

    assert not caught.value.permanent
    assert time.monotonic() - started < 3.0
    assert tls_storage_scp.stored() == []
