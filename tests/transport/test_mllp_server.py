"""The MLLP listener (HL7 v2.5.1 Appendix C framing, 2.9 original-mode ACKs) driven by raw sockets.

Every test talks to a real listener on 127.0.0.1 through plain sockets, so what is asserted is the
bytes on the wire: the ACK's MSH/MSA/ERR fields, and which connections survive hostile senders.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import hl7
import pytest

from simulations.transport.mllp import MllpClient
from simulations.transport.mllp_server import MllpServer, MllpServerThread, ReceivedMessage

VT, FS_CR = b"\x0b", b"\x1c\x0d"


def order(control_id: str = "MSG00001", *, msh18: str = "") -> str:
    """A small ORM^O01 (HL7 v2.5.1 4.4.1) as plain text, built here on purpose (no generator)."""
    return (
        f"MSH|^~\\&|YEETER|RADIOLOGY|RIS|HOSPITAL|20240517093000||ORM^O01^ORM_O01|{control_id}|P|2.5.1"
        f"|||AL|NE||{msh18}\r"
        "PID|1||MRN0001^^^HOSP^MR||DOE^JANE||19700101|F\r"
        "ORC|NW|ORD0001^YEETER\r"
        "OBR|1|ORD0001^YEETER||71046^XR CHEST 2 VIEWS^CPT4\r"
    )


@pytest.fixture
def start_listener() -> Iterator[Callable[..., MllpServerThread]]:
    handles: list[MllpServerThread] = []

    def start(**options: object) -> MllpServerThread:
        handle = MllpServer(**options).start_in_thread()  # type: ignore[arg-type]
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def listener(start_listener) -> MllpServerThread:
    return start_listener(idle_timeout=30.0)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_acks(sock: socket.socket, count: int) -> list[hl7.Message]:
    """Read ``count`` ACK blocks, assert their framing byte-exactly, and parse them."""
    data = b""
    while data.count(FS_CR) < count:
        chunk = sock.recv(65536)
        assert chunk, f"listener closed the connection after {data!r}"
        data += chunk
    *blocks, rest = data.split(FS_CR)
    assert rest == b"" and len(blocks) == count
    assert all(block.startswith(VT) and block.count(VT) == 1 for block in blocks)
    return [hl7.parse(block[1:].decode()) for block in blocks]


def read_ack(sock: socket.socket) -> hl7.Message:
    return read_acks(sock, 1)[0]


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_it_acknowledges_with_aa_swapping_sender_and_receiver(listener) -> None:
    with connect(listener.port) as sock:
        sock.sendall(VT + order("ORD-42").encode() + FS_CR)
        ack = read_ack(sock)
    msh, msa = ack.segment("MSH"), ack.segment("MSA")
    assert [str(msh[n]) for n in (3, 4, 5, 6)] == ["RIS", "HOSPITAL", "YEETER", "RADIOLOGY"]
    assert str(msh[9]) == "ACK^O01^ACK"
    assert (str(msh[11]), str(msh[12])) == ("P", "2.5.1")
    assert str(msh[10]) and str(msh[10]) != "ORD-42"  # the ACK has a control id of its own
    assert (str(msa[1]), str(msa[2])) == ("AA", "ORD-42")


def test_it_stores_messages_with_control_ids_in_a_bounded_history(start_listener) -> None:
    handle = start_listener(history=3)
    with connect(handle.port) as sock:
        for i in range(5):
            sock.sendall(VT + order(f"H{i}").encode() + FS_CR)
            read_ack(sock)
    stored = handle.messages
    assert [m.control_id for m in stored] == ["H2", "H3", "H4"]
    assert all(m.ack_code == "AA" and m.message_type == "ORM^O01^ORM_O01" for m in stored)
    assert stored[-1].raw == order("H4")
    assert stored[-1].peer.startswith("127.0.0.1:")
    assert handle.server.received_count == 5


def test_it_skips_garbage_before_a_block_and_still_answers_aa(listener) -> None:
    with connect(listener.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\x00\xff" + VT + order("AFTER-GARBAGE").encode() + FS_CR)
        ack = read_ack(sock)
    assert (str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])) == ("AA", "AFTER-GARBAGE")


def test_it_answers_a_block_trickled_byte_by_byte(listener) -> None:
    block = VT + order("SLOW01").encode() + FS_CR
    with connect(listener.port) as sock:
        for i in range(len(block)):
            sock.send(block[i : i + 1])
            time.sleep(0.001)
        ack = read_ack(sock)
    assert str(ack.segment("MSA")[2]) == "SLOW01"


def test_it_answers_two_blocks_in_one_write_in_order_and_accepts_fs_without_cr(listener) -> None:
    with connect(listener.port) as sock:
        sock.sendall(VT + order("PAIR1").encode() + FS_CR + VT + order("PAIR2").encode() + b"\x1c")
        first, second = read_acks(sock, 2)
    assert [str(a.segment("MSA")[2]) for a in (first, second)] == ["PAIR1", "PAIR2"]


def test_it_answers_ae_with_err_for_a_message_without_msh(listener) -> None:
    with connect(listener.port) as sock:
        sock.sendall(VT + b"PID|1||MRN1\rOBR|1\r" + FS_CR)
        ack = read_ack(sock)
    msa, err = ack.segment("MSA"), ack.segment("ERR")
    assert (str(msa[1]), str(msa[2])) == ("AE", "")
    assert str(err[3]) == "100^Segment sequence error^HL70357"
    assert str(err[4]) == "E"
    assert "does not start with an MSH segment" in str(err[8])
    assert listener.messages[-1].ack_code == "AE"


def test_it_answers_ae_echoing_msh10_when_the_encoding_characters_are_bad(listener) -> None:
    bad = "MSH|^^\\&|YEETER|RADIOLOGY|RIS|HOSPITAL|20240517093000||ORM^O01|BADENC1|P|2.5.1\rPID|1\r"
    with connect(listener.port) as sock:
        sock.sendall(VT + bad.encode() + FS_CR)
        ack = read_ack(sock)
    assert (str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])) == ("AE", "BADENC1")
    assert str(ack.segment("ERR")[3]).startswith("102^")
    assert "MSH-2 encoding characters" in ack.unescape(str(ack.segment("ERR")[8]))


def test_it_answers_ae_when_msh10_is_missing(listener) -> None:
    with connect(listener.port) as sock:
        sock.sendall(VT + order("").encode() + FS_CR)
        ack = read_ack(sock)
    assert str(ack.segment("MSA")[1]) == "AE"
    assert str(ack.segment("ERR")[3]).startswith("101^Required field missing")
    assert str(ack.segment("MSH")[9]) == "ACK^O01^ACK"


def test_it_decodes_latin1_declared_in_msh18_and_rejects_undeclared_bytes(listener) -> None:
    latin = order("LATIN1", msh18="8859/1").replace("DOE^JANE", "MÜLLER^JOSÉ")
    undeclared = order("NODECL").replace("DOE^JANE", "MÜLLER^JOSÉ")
    with connect(listener.port) as sock:
        sock.sendall(VT + latin.encode("latin-1") + FS_CR)
        accepted = read_ack(sock)
        sock.sendall(VT + undeclared.encode("latin-1") + FS_CR)
        refused = read_ack(sock)
    assert str(accepted.segment("MSA")[1]) == "AA"
    assert "MÜLLER^JOSÉ" in listener.messages[-2].raw
    assert (str(refused.segment("MSA")[1]), str(refused.segment("MSA")[2])) == ("AE", "NODECL")


def test_a_client_vanishing_mid_block_does_not_disturb_the_next_one(listener) -> None:
    with connect(listener.port) as vanishing:
        vanishing.sendall(VT + order("LOST").encode()[:40])
        # SO_LINGER 0: close with a reset, the way a crashed sender disappears.
        vanishing.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with connect(listener.port) as sock:
        sock.sendall(VT + order("NEXT").encode() + FS_CR)
        assert str(read_ack(sock).segment("MSA")[2]) == "NEXT"
    assert [m.control_id for m in listener.messages] == ["NEXT"]


def test_an_oversize_block_closes_only_that_connection(start_listener) -> None:
    handle = start_listener(max_message_bytes=2048)
    with connect(handle.port) as bystander, connect(handle.port) as offender:
        offender.sendall(VT + order("BEFORE-BIG").encode() + FS_CR + VT + b"x" * 4096)
        before, refusal = read_acks(offender, 2)
        assert str(before.segment("MSA")[2]) == "BEFORE-BIG"  # earlier blocks still answered
        assert str(refusal.segment("MSA")[1]) == "AR"  # then the big one its refusal, before the close
        assert closed_by_peer(offender)
        bystander.sendall(VT + order("BYSTANDER").encode() + FS_CR)
        assert str(read_ack(bystander).segment("MSA")[2]) == "BYSTANDER"


def test_it_keeps_the_connection_when_the_callback_raises(start_listener) -> None:
    seen: list[ReceivedMessage] = []

    def broken_callback(message: ReceivedMessage) -> None:
        seen.append(message)
        raise RuntimeError("database down")

    handle = start_listener(on_message=broken_callback)
    with connect(handle.port) as sock:
        for control_id in ("CB1", "CB2"):
            sock.sendall(VT + order(control_id).encode() + FS_CR)
            assert str(read_ack(sock).segment("MSA")[1]) == "AA"
    assert [m.control_id for m in seen] == ["CB1", "CB2"]
    assert handle.server.connections_accepted == 1


def test_it_closes_idle_connections_after_idle_timeout(start_listener) -> None:
    handle = start_listener(idle_timeout=0.2)
    with connect(handle.port) as sock:
        started = time.perf_counter()
        assert closed_by_peer(sock)
        assert 0.15 <= time.perf_counter() - started < 1.5


def test_it_sets_tcp_nodelay_on_accepted_sockets(listener) -> None:
    with connect(listener.port) as sock:
        sock.sendall(VT + order("NODELAY").encode() + FS_CR)
        read_ack(sock)
        (connection,) = listener.server._connections
        accepted = connection.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_it_serves_many_concurrent_clients(listener) -> None:
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with MllpClient("127.0.0.1", listener.port, read_timeout=5.0, retries=0) as client:
                for i in range(5):
                    assert client.send(order(f"C{n:02d}-{i}")).code == "AA"
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert sorted(m.control_id for m in listener.messages) == sorted(f"C{n:02d}-{i}" for n in range(20) for i in range(5))
    assert listener.server.connections_accepted == 20


def test_stop_closes_open_connections_and_frees_the_port(start_listener) -> None:
    handle = start_listener()
    port = handle.port
    sock = connect(port)
    handle.stop()
    assert closed_by_peer(sock)
    sock.close()
    again = MllpServer(port=port).start_in_thread()
    try:
        assert again.port == port
    finally:
        again.stop()


def test_start_in_thread_reports_a_port_already_in_use(listener) -> None:
    with pytest.raises(OSError):
        MllpServer(port=listener.port).start_in_thread()
