"""MLLP round trips per second: our listener against a bare asyncio echo server, in one run.

A lean driver (one connection, one ~1 KB ORM^O01 in flight at a time, waits for the whole ACK
block before sending the next) measures each server on the same event loop, so the ratio isolates
what the listener does per message (find the block, read the MSH, build and write the ACK, record
the message) from the cost of the event loop and the sockets. The bare server answers every block
with one precomputed ACK frame and reads nothing. Rounds alternate between the two servers and the
best round of each counts, because the machine is shared. Also measured: our own clients
(``AsyncMllpClient``, ``MllpClient``: full ACK parse and MSA checks) against our listener.

Prints one JSON object. ``python bench/mllp.py --messages 5000 --seconds 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.transport.mllp import AsyncMllpClient, MllpClient  # noqa: E402
from simulations.transport.mllp_framing import frame  # noqa: E402
from simulations.transport.mllp_server import MllpServer  # noqa: E402

ORM_TEMPLATE = (
    "MSH|^~\\&|YEETER|RADIOLOGY|RIS|HOSPITAL|20240517093000||ORM^O01^ORM_O01|{control_id}|P|2.5.1|||AL|NE\r"
    "PID|1||MRN00012345^^^HOSP^MR||DOE^JANE^MARIE^^^^L||19700101|F|||12 MAIN STREET^^SPRINGFIELD^IL^62701^USA"
    "||^PRN^PH^^^217^5550123|||||ACC-778899\r"
    "PV1|1|O|RAD^XR1^01^HOSPITAL||||1234567^SMITH^JOHN^A^^^MD|||||||||||V000123^^^HOSP^VN\r"
    "ORC|NW|ORD-000123^YEETER|FIL-000123^RIS||SC||^^^20240517100000^^R||20240517093000|CLERK^ANNA|||"
    "RAD^Radiology^HOSPITAL\r"
    "OBR|1|ORD-000123^YEETER|FIL-000123^RIS|71046^XR CHEST 2 VIEWS^CPT4|||20240517093000|||||||||"
    "1234567^SMITH^JOHN^A^^^MD||ACC-778899|RP-000123|SPS-000123||||CR|||1^^^20240517100000^^R||||"
    "cough, rule out pneumonia\r"
    "ZDS|1.2.826.0.1.3680043.8.498.12345678901234567890123456789012^YEETER^Application^DICOM\r"
    "NTE|1||Patient ambulatory. Prior chest radiograph 2023-11-02 available for comparison. Contrast: none.\r"
    "NTE|2||Clinical history: productive cough for 10 days, fever 38.4 C, crackles right lower zone; "
    "smoker 20 pack-years. Please compare with prior and report urgently if consolidation.\r"
)
BARE_ACK = frame(b"MSH|^~\\&|RIS|HOSPITAL|YEETER|RADIOLOGY|20240517093000||ACK^O01^ACK|1|P|2.5.1\rMSA|AA|1\r")


class _BareEcho(asyncio.Protocol):
    """The reference: answers each received block with the fixed ACK frame, nothing else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        blocks = data.count(b"\x1c")
        if blocks:
            self.transport.write(BARE_ACK * blocks)


class _Driver(asyncio.Protocol):
    """Sends pre-framed messages one at a time; each complete ACK block releases the next."""

    def __init__(self, blocks: list[bytes], deadline: float, done: asyncio.Future[int]) -> None:
        self.blocks = blocks
        self.deadline = deadline
        self.done = done
        self.sent = 0
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._next()

    def _next(self) -> None:
        if self.sent == len(self.blocks) or time.perf_counter() > self.deadline:
            self.done.set_result(self.sent)
            return
        self.transport.write(self.blocks[self.sent])
        self.sent += 1

    def data_received(self, data: bytes) -> None:
        self.pending += data
        if self.pending.endswith(b"\x1c\x0d"):
            self.pending = b""
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"server closed the connection: {exc}"))


def _messages(count: int) -> list[str]:
    return [ORM_TEMPLATE.format(control_id=f"B{index:08d}") for index in range(count)]


async def _drive(port: int, blocks: list[bytes], seconds: float) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    started = time.perf_counter()
    transport, _ = await loop.create_connection(
        lambda: _Driver(blocks, started + seconds, done), "127.0.0.1", port
    )
    sent = await done
    elapsed = time.perf_counter() - started
    transport.close()
    return sent / elapsed


async def _servers(messages: list[str], rounds: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    blocks = [frame(message.encode()) for message in messages]
    ours = MllpServer(history=1000)
    await ours.start()
    bare = await loop.create_server(_BareEcho, "127.0.0.1", 0)
    bare_port = bare.sockets[0].getsockname()[1]
    best_ours = best_bare = 0.0
    try:
        await _drive(ours.port, blocks[:200], seconds)  # warm-up
        await _drive(bare_port, blocks[:200], seconds)
        for _ in range(rounds):
            best_ours = max(best_ours, await _drive(ours.port, blocks, seconds))
            best_bare = max(best_bare, await _drive(bare_port, blocks, seconds))
        if ours.received_count < len(blocks):
            raise RuntimeError(f"listener recorded {ours.received_count} messages, expected {len(blocks)}+")
        async with AsyncMllpClient("127.0.0.1", ours.port) as client:
            started = time.perf_counter()
            sent = 0
            for message in messages:
                await client.send(message)
                sent += 1
                if time.perf_counter() - started > seconds:
                    break
            async_client = sent / (time.perf_counter() - started)
    finally:
        await ours.stop()
        bare.close()
        await bare.wait_closed()
    return {"listener": best_ours, "bare": best_bare, "async_client": async_client}


def _sync_client(messages: list[str], seconds: float) -> float:
    handle = MllpServer(history=1000).start_in_thread()
    try:
        with MllpClient("127.0.0.1", handle.port) as client:
            started = time.perf_counter()
            sent = 0
            for message in messages:
                client.send(message)
                sent += 1
                if time.perf_counter() - started > seconds:
                    break
            return sent / (time.perf_counter() - started)
    finally:
        handle.stop()


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages per measurement (default 5000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="cap per measurement in seconds (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server, best counts")
    args = parser.parse_args(argv)
    messages = _messages(args.messages)
    figures = asyncio.run(_servers(messages, args.rounds, args.seconds))
    sync_client = _sync_client(messages, args.seconds)
    result: dict[str, object] = {
        "benchmark": "mllp_roundtrips",
        "message_bytes": len(messages[0].encode()),
        "messages": args.messages,
        "rounds": args.rounds,
        "listener_roundtrips_per_s": round(figures["listener"]),
        "bare_echo_roundtrips_per_s": round(figures["bare"]),
        "ratio": round(figures["listener"] / figures["bare"], 3),
        "async_client_to_listener_per_s": round(figures["async_client"]),
        "sync_client_to_threaded_listener_per_s": round(sync_client),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
