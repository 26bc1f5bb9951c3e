"""The MLLP listener under messages it must not accept (issue 13, "Receivers under hostile peers").

Before: MSH-12 "9.9", MSH-11 "X" and MSH-9 "ZZZ^Z99" were answered AA; a block over the size limit
was dropped with the connection and no answer; partial blocks of many connections together could
take hundreds of MB. HL7 v2.5.1 2.9.2.2 says AR for unsupported MSH-9/MSH-11/MSH-12, with the ERR-3
codes of table 0357. Raw sockets on a real listener; the ACKs parsed with python-hl7.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest

from simulations.transport.mllp_server import MllpServer, MllpServerThread
from tests.transport.test_mllp_server import FS_CR, VT, closed_by_peer, connect, read_ack


def message(control_id: str = "MSG1", *, message_type: str = "ORM^O01^ORM_O01", processing: str = "P",
            version: str = "2.5.1", body: str = "") -> bytes:
    return (
        f"MSH|^~\\&|YEETER|RADIOLOGY|RIS|HOSPITAL|20240517093000||{message_type}|{control_id}|{processing}|{version}\r"
        f"PID|1||MRN0001^^^HOSP^MR||DOE^JANE||19700101|F\r{body}"
    ).encode()


@pytest.fixture
def listener() -> Iterator[MllpServerThread]:
    handle = MllpServer(max_message_bytes=1024 * 1024, buffer_budget=3 * 1024 * 1024).start_in_thread()
    yield handle
    handle.stop()


def exchange(port: int, payload: bytes) -> hl7.Message:
    with connect(port) as sock:
        sock.sendall(VT + payload + FS_CR)
        return read_ack(sock)


def err3(ack: hl7.Message) -> str:
    return str(ack.segment("ERR")[3][0][0])


@pytest.mark.parametrize(
    ("fields", "code", "text"),
    [
        ({"version": "9.9"}, "203", "MSH-12 version '9.9'"),
        ({"processing": "X"}, "202", "MSH-11 processing ID 'X'"),
        ({"message_type": "ZZZ^Z99"}, "200", "MSH-9 message type 'ZZZ'"),
        ({"message_type": "ADT^Z99^ADT_A01"}, "201", "trigger event 'Z99'"),
    ],
    ids=["version", "processing-id", "message-type", "event"],
)
def test_an_unsupported_msh_9_11_or_12_is_answered_ar_with_its_table_0357_code(
    listener: MllpServerThread, fields: dict[str, str], code: str, text: str
) -> None:
    ack = exchange(listener.port, message("REFUSE-ME", **fields))

    msa = ack.segment("MSA")
    assert (str(msa[1]), str(msa[2])) == ("AR", "REFUSE-ME")
    assert err3(ack) == code
    assert str(ack.segment("ERR")[4]) == "E"
    assert text in str(ack.segment("ERR")[8])
    assert str(ack.segment("MSH")[12]) == "2.5.1"  # answered in a version we speak
    assert listener.messages[-1].ack_code == "AR"


@pytest.mark.parametrize(
    "fields",
    [{"version": "2.3"}, {"version": "2.5.1^ISO"}, {"processing": "T"}, {"processing": "D^I"},
     {"message_type": "ADT^A04^ADT_A01"}, {"message_type": "ORU^R01"}, {"message_type": "ACK"}],
    ids=["v2.3", "version-with-components", "training", "debug-with-mode", "adt", "oru", "ack"],
)
def test_supported_versions_processing_ids_and_types_are_still_answered_aa(
    listener: MllpServerThread, fields: dict[str, str]
) -> None:
    assert str(exchange(listener.port, message(**fields)).segment("MSA")[1]) == "AA"


def test_a_block_over_the_size_limit_gets_an_ar_naming_it_before_the_close(listener: MllpServerThread) -> None:
    with connect(listener.port) as sock:
        sock.sendall(VT + message("TOO-BIG", body="OBX|1|ED|PDF||" + "A" * (1100 * 1024) + "\r"))
        ack = read_ack(sock)
        assert closed_by_peer(sock)

    assert (str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])) == ("AR", "TOO-BIG")
    assert err3(ack) == "207"
    assert "limit of 1048576 bytes" in str(ack.segment("ERR")[8])


def test_partial_blocks_of_all_connections_together_stay_within_the_buffer_budget(
    listener: MllpServerThread,
) -> None:
    # Six peers each start a 900 KiB message (under the 1 MiB limit) and never finish it: 5.3 MiB
    # against a 3 MiB budget.
    chunk = VT + message("PARTIAL", body="OBX|1|ED|PDF||" + "B" * (900 * 1024))
    peers = [connect(listener.port) for _ in range(6)]
    try:
        for sock in peers:
            sock.sendall(chunk)
        refused = []
        for sock in peers:
            sock.settimeout(1.0)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue  # held: its block fits in the budget
            refused.append(data)
            assert listener.server.buffered <= 3 * 1024 * 1024
        assert len(refused) >= 3
        for data in refused:
            ack = hl7.parse(data.split(FS_CR)[0][1:].decode())
            assert str(ack.segment("MSA")[1]) == "AR" and err3(ack) == "207"
            assert "no buffer space" in str(ack.segment("ERR")[8])
        assert str(exchange(listener.port, message("BYSTANDER")).segment("MSA")[1]) == "AA"
    finally:
        for sock in peers:
            sock.close()
    deadline = time.monotonic() + 5
    while listener.server.buffered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.server.buffered == 0  # every byte given back when the peers went away


_LISTENER_PROCESS = """
import sys
from simulations.transport.mllp_server import MllpServer
handle = MllpServer().start_in_thread()
print(handle.port, flush=True)
sys.stdin.read()
handle.stop()
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_twenty_connections_of_15_mb_partial_messages_do_not_grow_the_listener_past_its_budget() -> None:
    """The issue's measurement: 20 × 15 MB took a listener from 135 to 442 MB. With the default budget
    (64 MiB) the process grows by about the budget, whatever the number of connections."""
    proc = subprocess.Popen([sys.executable, "-c", _LISTENER_PROCESS], cwd=Path(__file__).resolve().parents[2],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    peers: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        before = _rss_mb(proc.pid)
        block = VT + message("BIG", body="OBX|1|ED|PDF||" + "C" * (15 * 1024 * 1024))

        def send(sock: socket.socket) -> None:
            try:
                sock.sendall(block)
            except OSError:
                pass  # refused and closed by the listener part-way: expected beyond the budget

        peers = [connect(port) for _ in range(20)]
        senders = [threading.Thread(target=send, args=(sock,)) for sock in peers]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=60)
        time.sleep(0.5)
        grown = _rss_mb(proc.pid) - before
    finally:
        for sock in peers:
            sock.close()
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    assert grown < 140, f"the listener grew by {grown:.0f} MB"
