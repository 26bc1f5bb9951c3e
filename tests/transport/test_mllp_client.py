"""MLLP senders (HL7 v2.5.1 Appendix C framing, 2.9 ACK semantics) against real loopback peers.

The peers are our listener and small hostile socket servers written here: each answers the way
a broken or unfriendly receiver would (AE, AR, garbage, silence, half an ACK, a foreign MSA-2).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator

import hl7
import pytest

from simulations.transport.errors import SendError
from simulations.transport.mllp import AckError, AsyncMllpClient, MllpClient, async_mllp_ping, mllp_ping
from simulations.transport.mllp_ack import parse_msh
from simulations.transport.mllp_server import MllpServer, MllpServerThread
from tests.conftest import free_port

VT, FS_CR = b"\x0b", b"\x1c\x0d"


def order(control_id: str = "MSG00001") -> str:
    """A small ORM^O01 (HL7 v2.5.1 4.4.1) as plain text, built here on purpose (no generator)."""
    return (
        f"MSH|^~\\&|YEETER|RADIOLOGY|RIS|HOSPITAL|20240517093000||ORM^O01^ORM_O01|{control_id}|P|2.5.1\r"
        "PID|1||MRN0001^^^HOSP^MR||DOE^JANE||19700101|F\r"
        "ORC|NW|ORD0001^YEETER\r"
        "OBR|1|ORD0001^YEETER||71046^XR CHEST 2 VIEWS^CPT4\r"
    )


def ack_for(payload: bytes, code: str, *, text: str = "", control_id: str | None = None, err: str = "") -> bytes:
    """An ACK block a peer would send for ``payload`` (MSA-2 = its MSH-10 unless overridden)."""
    incoming = parse_msh(payload.decode())
    msa2 = incoming.control_id if control_id is None else control_id
    body = f"MSH|^~\\&|RIS|HOSPITAL|YEETER|RADIOLOGY|20240517093001||ACK^O01^ACK|A1|P|2.5.1\rMSA|{code}|{msa2}|{text}\r"
    return VT + (body + err).encode() + FS_CR


class RawPeer:
    """A threaded TCP server on 127.0.0.1 that hands each accepted socket to ``handler``."""

    def __init__(self, handler: Callable[[socket.socket, RawPeer], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.accepts = 0
        self.blocks: list[bytes] = []  # whole blocks as received on the wire, VT and FS CR included
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepts += 1
            self.connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(conn, self)
        except OSError:
            pass  # the client went away, which several tests cause on purpose

    def read_block(self, conn: socket.socket) -> bytes:
        """Read one whole block and return its payload (what lies between VT and FS)."""
        data = b""
        while not data.endswith(FS_CR):
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("client closed")
            data += chunk
        self.blocks.append(data)
        return data[1:-2]

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for conn in self.connections:
            conn.close()
        self._thread.join(2)


@pytest.fixture
def peer_factory() -> Iterator[Callable[[Callable[[socket.socket, RawPeer], None]], RawPeer]]:
    peers: list[RawPeer] = []

    def start(handler: Callable[[socket.socket, RawPeer], None]) -> RawPeer:
        peer = RawPeer(handler)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
def listener() -> Iterator[MllpServerThread]:
    handle = MllpServer(idle_timeout=30.0).start_in_thread()
    yield handle
    handle.stop()


def answering(code: str, *, text: str = "", err: str = "") -> Callable[[socket.socket, RawPeer], None]:
    def handler(conn: socket.socket, peer: RawPeer) -> None:
        while True:
            conn.sendall(ack_for(peer.read_block(conn), code, text=text, err=err))

    return handler


def client_for(port: int, **options: float | int) -> MllpClient:
    settings: dict[str, float | int] = {"connect_timeout": 1.0, "read_timeout": 1.0, "retries": 0, "backoff": 0.05}
    settings.update(options)
    return MllpClient("127.0.0.1", port, **settings)  # type: ignore[arg-type]


def test_it_frames_a_message_as_vt_message_fs_cr_on_the_wire(peer_factory) -> None:
    peer = peer_factory(answering("AA"))
    message = order("FRAME1")
    with client_for(peer.port) as client:
        client.send(message)
    assert peer.blocks == [b"\x0b" + message.encode() + b"\x1c\x0d"]


def test_it_round_trips_an_order_with_our_listener_and_checks_msa2(listener) -> None:
    with client_for(listener.port) as client:
        ack = client.send(order("RT0001"))
    assert (ack.code, ack.control_id, ack.attempts) == ("AA", "RT0001", 1)
    assert ack.accepted and 0 < ack.latency_s < 1.0
    parsed = hl7.parse(ack.raw)
    assert str(parsed.segment("MSH")[9]) == "ACK^O01^ACK"
    assert [m.control_id for m in listener.messages] == ["RT0001"]


def test_it_reuses_one_connection_for_many_messages(listener) -> None:
    with client_for(listener.port) as client:
        acks = [client.send(order(f"REUSE{i:03d}")) for i in range(20)]
        assert client.connections_opened == 1
        assert client._sock is not None
        assert client._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert [ack.control_id for ack in acks] == [f"REUSE{i:03d}" for i in range(20)]
    assert listener.server.connections_accepted == 1


def test_it_reconnects_after_the_listener_restarts_without_spending_a_retry() -> None:
    first = MllpServer().start_in_thread()
    port = first.port
    with client_for(port) as client:
        assert client.send(order("BEFORE")).code == "AA"
        first.stop()
        second = MllpServer(port=port).start_in_thread()
        try:
            ack = client.send(order("AFTER"))
        finally:
            second.stop()
    assert (ack.code, ack.attempts, client.connections_opened) == ("AA", 1, 2)
    assert [m.control_id for m in second.messages] == ["AFTER"]


def test_it_raises_our_listeners_ae_with_its_text_once(listener) -> None:
    no_type = order("NOTYPE1").replace("ORM^O01^ORM_O01", "")
    with client_for(listener.port) as client, pytest.raises(AckError) as raised:
        client.send(no_type)
    ack = raised.value.ack
    assert (ack.code, ack.control_id) == ("AE", "NOTYPE1")
    assert ack.text == "MSH-9 message type is empty"  # MSA-3 and ERR-8 say the same, reported once
    assert str(raised.value).endswith("(AE): MSH-9 message type is empty")


def test_it_is_safe_to_share_one_client_between_threads(listener) -> None:
    errors: list[BaseException] = []
    with client_for(listener.port) as client:

        def worker(n: int) -> None:
            try:
                for i in range(10):
                    assert client.send(order(f"T{n}-{i}")).control_id == f"T{n}-{i}"
            except BaseException as exc:  # collected and asserted on below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert len(listener.messages) == 40
    assert listener.server.connections_accepted == 1


def test_it_reports_an_application_error_with_its_text_and_does_not_retry(peer_factory) -> None:
    err = "ERR|||101^Required field missing^HL70357|E||||PID-3 patient identifier is empty\r"
    peer = peer_factory(answering("AE", text="cannot file order", err=err))
    with client_for(peer.port, retries=3) as client, pytest.raises(AckError) as raised:
        client.send(order("AE0001"))
    assert raised.value.permanent and raised.value.status == "AE"
    assert "cannot file order" in str(raised.value)
    assert "PID-3 patient identifier is empty" in str(raised.value)
    assert raised.value.ack.control_id == "AE0001"
    assert len(peer.blocks) == 1


def test_it_treats_a_reject_as_permanent_after_exactly_one_attempt(peer_factory) -> None:
    peer = peer_factory(answering("AR", text="unsupported message type"))
    with client_for(peer.port, retries=3) as client, pytest.raises(SendError) as raised:
        client.send(order("AR0001"))
    assert raised.value.permanent
    assert raised.value.status == "AR"
    assert "unsupported message type" in str(raised.value)
    assert (peer.accepts, len(peer.blocks)) == (1, 1)


def test_it_reports_garbage_instead_of_an_ack_without_hanging(peer_factory) -> None:
    def http_server(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        time.sleep(2)

    peer = peer_factory(http_server)
    started = time.perf_counter()
    with client_for(peer.port, read_timeout=5.0) as client, pytest.raises(SendError) as raised:
        client.send(order("GARB01"))
    assert time.perf_counter() - started < 1.0
    assert "not an MLLP block" in str(raised.value) and "HTTP/1.1 400" in str(raised.value)
    assert not raised.value.permanent


def test_it_times_out_within_read_timeout_when_the_peer_never_answers(peer_factory) -> None:
    def silent(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        time.sleep(3)

    peer = peer_factory(silent)
    started = time.perf_counter()
    with client_for(peer.port, read_timeout=0.3) as client, pytest.raises(SendError) as raised:
        client.send(order("SILENT"))
    elapsed = time.perf_counter() - started
    assert 0.3 <= elapsed < 1.5
    assert "no complete ACK within 0.3 s" in str(raised.value)
    assert not raised.value.permanent


def test_it_resends_the_same_message_on_a_new_connection_after_a_timeout(peer_factory) -> None:
    def silent(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        time.sleep(3)

    peer = peer_factory(silent)
    with client_for(peer.port, read_timeout=0.2, retries=1) as client, pytest.raises(SendError) as raised:
        client.send(order("RESEND"))
    assert "gave up after 2 attempts" in str(raised.value)
    assert peer.accepts == 2
    assert peer.blocks == [VT + order("RESEND").encode() + FS_CR] * 2


def test_it_retries_when_the_peer_closes_mid_ack_and_reports_it(peer_factory) -> None:
    def half_ack(conn: socket.socket, peer: RawPeer) -> None:
        whole = ack_for(peer.read_block(conn), "AA")
        conn.sendall(whole[: len(whole) // 2])
        conn.close()

    peer = peer_factory(half_ack)
    with client_for(peer.port, retries=1) as client, pytest.raises(SendError) as raised:
        client.send(order("HALF01"))
    assert "closed the connection before the ACK was complete" in str(raised.value)
    assert not raised.value.permanent
    assert peer.accepts == 2


def test_it_rejects_an_ack_for_another_control_id(peer_factory) -> None:
    def foreign(conn: socket.socket, peer: RawPeer) -> None:
        conn.sendall(ack_for(peer.read_block(conn), "AA", control_id="SOMEONE-ELSE"))
        time.sleep(1)

    peer = peer_factory(foreign)
    with client_for(peer.port) as client, pytest.raises(SendError) as raised:
        client.send(order("MINE01"))
    assert "'SOMEONE-ELSE'" in str(raised.value) and "'MINE01'" in str(raised.value)
    assert client._sock is None  # the connection is out of step: dropped, not reused


def test_it_tolerates_line_ends_around_ack_blocks_but_not_a_second_block(peer_factory) -> None:
    def sloppy(conn: socket.socket, peer: RawPeer) -> None:
        payload = peer.read_block(conn)
        conn.sendall(b"\r\n" + ack_for(payload, "AA") + b"\n")  # "FS CR LF", as some engines send
        payload = peer.read_block(conn)
        conn.sendall(ack_for(payload, "AA") + ack_for(payload, "AA"))
        time.sleep(1)

    peer = peer_factory(sloppy)
    with client_for(peer.port) as client:
        assert client.send(order("SLOPPY1")).code == "AA"
        with pytest.raises(SendError, match="sent data after the ACK block"):
            client.send(order("SLOPPY2"))


def test_it_reports_an_ack_without_msa(peer_factory) -> None:
    def no_msa(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        conn.sendall(VT + b"MSH|^~\\&|RIS|H|Y|R|20240101||ACK|1|P|2.5.1\rPID|1\r" + FS_CR)
        time.sleep(1)

    peer = peer_factory(no_msa)
    with client_for(peer.port) as client, pytest.raises(SendError, match="without an MSA segment"):
        client.send(order("NOMSA1"))


def test_it_refuses_an_oversize_ack_block(peer_factory) -> None:
    def flood(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        conn.sendall(VT + b"x" * 5000)
        time.sleep(1)

    peer = peer_factory(flood)
    started = time.perf_counter()
    with client_for(peer.port, max_message_bytes=1024, read_timeout=3.0) as client:
        with pytest.raises(SendError, match="larger than 1024 bytes"):
            client.send(order("BIG001"))
    assert time.perf_counter() - started < 1.0


def test_it_gives_up_after_retries_with_backoff_when_nothing_listens() -> None:
    port = free_port()
    started = time.perf_counter()
    with client_for(port, retries=2, backoff=0.1) as client, pytest.raises(SendError) as raised:
        client.send(order("NOBODY"))
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.1 + 0.2  # two backoffs: 0.1 s then 0.2 s
    assert "connect failed" in str(raised.value) and "gave up after 3 attempts" in str(raised.value)
    assert not raised.value.permanent


def test_it_refuses_to_send_a_message_without_msh10() -> None:
    with client_for(free_port()) as client, pytest.raises(SendError) as raised:
        client.send("MSH|^~\\&|A|B|C|D|20240101||ORM^O01||P|2.5.1\r")
    assert raised.value.permanent and "MSH-10" in str(raised.value)


def test_ping_measures_a_round_trip_to_our_listener(listener) -> None:
    latency = mllp_ping("127.0.0.1", listener.port, timeout=1.0)
    assert 0 < latency < 1.0
    assert listener.messages[-1].message_type == "NMD^N02^NMD_N02"


def test_ping_counts_a_reject_as_alive_but_not_garbage(peer_factory) -> None:
    rejecting = peer_factory(answering("AR", text="unsupported"))
    assert mllp_ping("127.0.0.1", rejecting.port, timeout=1.0) > 0

    def http_server(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        time.sleep(1)

    garbage = peer_factory(http_server)
    with pytest.raises(SendError):
        mllp_ping("127.0.0.1", garbage.port, timeout=1.0)


@pytest.mark.asyncio
async def test_the_async_client_round_trips_and_reuses_its_connection() -> None:
    async with MllpServer() as server:
        async with AsyncMllpClient("127.0.0.1", server.port, read_timeout=1.0) as client:
            acks = await asyncio.gather(*(client.send(order(f"ASYNC{i}")) for i in range(10)))
            assert client.connections_opened == 1
        assert sorted(ack.control_id for ack in acks) == sorted(f"ASYNC{i}" for i in range(10))
        assert all(ack.code == "AA" for ack in acks)
        assert server.connections_accepted == 1
        assert await async_mllp_ping("127.0.0.1", server.port, timeout=1.0) > 0


@pytest.mark.asyncio
async def test_the_async_client_reconnects_after_the_listener_restarts() -> None:
    first = MllpServer()
    await first.start()
    port = first.port
    async with AsyncMllpClient("127.0.0.1", port, read_timeout=1.0, retries=1, backoff=0.05) as client:
        assert (await client.send(order("A-BEFORE"))).code == "AA"
        await first.stop()
        async with MllpServer(port=port) as second:
            ack = await client.send(order("A-AFTER"))
        assert (ack.code, client.connections_opened) == ("AA", 2)
        assert [m.control_id for m in second.messages] == ["A-AFTER"]


@pytest.mark.asyncio
async def test_the_async_client_does_not_retry_a_reject(peer_factory) -> None:
    peer = peer_factory(answering("AR", text="no such procedure"))
    async with AsyncMllpClient("127.0.0.1", peer.port, read_timeout=1.0, retries=3) as client:
        with pytest.raises(SendError) as raised:
            await client.send(order("AAR001"))
    assert raised.value.permanent and "no such procedure" in str(raised.value)
    assert len(peer.blocks) == 1


@pytest.mark.asyncio
async def test_the_async_client_times_out_and_retries_on_a_silent_peer(peer_factory) -> None:
    def silent(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        time.sleep(3)

    peer = peer_factory(silent)
    started = time.perf_counter()
    async with AsyncMllpClient("127.0.0.1", peer.port, read_timeout=0.2, retries=1, backoff=0.05) as client:
        with pytest.raises(SendError, match="no complete ACK within 0.2 s") as raised:
            await client.send(order("ASIL01"))
    assert not raised.value.permanent
    assert 0.45 <= time.perf_counter() - started < 2.0
    assert peer.accepts == 2


@pytest.mark.asyncio
async def test_the_async_client_reports_garbage_and_refused_connections(peer_factory) -> None:
    def http_server(conn: socket.socket, peer: RawPeer) -> None:
        peer.read_block(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        time.sleep(1)

    peer = peer_factory(http_server)
    async with AsyncMllpClient("127.0.0.1", peer.port, read_timeout=3.0) as client:
        with pytest.raises(SendError, match="not an MLLP block"):
            await client.send(order("AGAR01"))
    async with AsyncMllpClient("127.0.0.1", free_port(), retries=1, backoff=0.05) as client:
        with pytest.raises(SendError, match="connect failed") as raised:
            await client.send(order("AREF01"))
    assert not raised.value.permanent
