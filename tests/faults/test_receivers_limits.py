"""Silent and greedy peers cannot lock the DICOM receivers out (issue 13, "Receivers under hostile peers").

Before: ten idle TCP connections locked MWL and MPPS out for ~30 s (pynetdicom's default of 10
associations and 30 s ACSE timeout) and 70 locked Storage out for ~60 s. Now a connection that sends
no A-ASSOCIATE-RQ is closed after the ARTIM timeout, and one address holds at most ``max_per_peer``
connections. The idle sockets come from 127.0.0.2 (still loopback), the real association from
127.0.0.1, as from two hosts.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.echo import echo
from simulations.transport.dimse.mpps import MppsScp
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.worklist import WorklistScp
from simulations.transport.errors import SendError


@contextmanager
def idle_sockets(port: int, count: int, source: str = "127.0.0.2") -> Iterator[list[socket.socket]]:
    """``count`` TCP connections to ``127.0.0.1:port`` from ``source`` that never send a byte."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes (EOF or reset) ``sock`` within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass  # an A-ABORT or A-ASSOCIATE-RJ before the close is fine
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def _storage(tmp_path: Path, **limits: float) -> StorageScp:
    return StorageScp(storage_dir=tmp_path / "store", **limits)  # type: ignore[arg-type]


SERVERS: dict[str, Callable[[Path], Callable[..., object]]] = {
    "storage": lambda tmp_path: lambda **limits: _storage(tmp_path, **limits),
    "mwl": lambda tmp_path: lambda **limits: WorklistScp(provider=list, **limits),
    "mpps": lambda tmp_path: lambda **limits: MppsScp(**limits),
}


@pytest.fixture(params=sorted(SERVERS))
def make_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., object]]:
    started: list = []

    def make(**limits: float) -> object:
        server = SERVERS[request.param](tmp_path)(**limits)
        server.start()  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def test_seventy_idle_connections_from_one_peer_leave_room_for_another(make_server: Callable[..., object]) -> None:
    server = make_server()
    peer: DicomPeer = server.peer  # type: ignore[attr-defined]
    with idle_sockets(peer.port, 70):
        started = time.monotonic()
        echo(DicomPeer(peer.host, peer.port, peer.ae_title, timeout=5))
        assert time.monotonic() - started < 3  # at once, not after an idle timeout


def test_connections_that_send_no_associate_request_are_closed_after_the_artim_timeout(
    make_server: Callable[..., object],
) -> None:
    server = make_server(artim_timeout=0.5)
    peer: DicomPeer = server.peer  # type: ignore[attr-defined]
    with idle_sockets(peer.port, 5, source="127.0.0.1") as sockets:
        assert all(closed_by_server(sock, within=3) for sock in sockets)
        echo(peer)  # and the slots they held are free again


def test_an_established_association_that_goes_silent_is_aborted_after_the_idle_timeout(
    make_server: Callable[..., object],
) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    server = make_server(network_timeout=0.5)
    peer: DicomPeer = server.peer  # type: ignore[attr-defined]
    ae = AE(ae_title="IDLER")
    ae.add_requested_context(Verification)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    assert assoc.is_established
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted


def _held(server: object, host: str) -> int:
    held = 0
    for assoc in server.active_associations:  # type: ignore[attr-defined]
        try:
            held += assoc.requestor.address == host
        except ValueError:
            continue
    return held


def _wait_until_held(server: object, host: str, count: int, seconds: float = 5.0) -> None:
    """Until ``server`` counts ``count`` connections of ``host`` (a pynetdicom SCP knows a peer's address only
    once its association thread has started); our own Storage SCP counts at accept, so a short pause does."""
    associations = getattr(server, "active_associations", None)
    if associations is None or not isinstance(associations, list):
        time.sleep(0.2)
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (_held(server, host) >= count) if count else (_held(server, host) == 0):
            return
        time.sleep(0.02)
    raise AssertionError(f"the server never counted {count} connections of {host}")


def test_one_peer_is_held_to_its_per_peer_limit(make_server: Callable[..., object]) -> None:
    server = make_server(max_per_peer=2)
    peer: DicomPeer = server.peer  # type: ignore[attr-defined]
    with idle_sockets(peer.port, 2):  # another address's connections do not count against ours
        echo(peer)
    _wait_until_held(server, "127.0.0.1", 0)  # the echo's association has gone: it must not count below
    with idle_sockets(peer.port, 2, source="127.0.0.1"):
        _wait_until_held(server, "127.0.0.1", 2)
        with pytest.raises(SendError):
            echo(DicomPeer(peer.host, peer.port, peer.ae_title, timeout=3))


@pytest.mark.parametrize("scp_class", [WorklistScp, MppsScp], ids=["mwl", "mpps"])
def test_the_worklist_and_mpps_servers_never_force_a_full_garbage_collection(
        scp_class: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom's acceptor runs ``gc.collect()`` every 60 requests: with a run's objects in the process, each
    pass held the GIL long enough to stall the run. Ours leaves collection to the collector's own schedule."""
    import gc

    forced: list[int] = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *args: forced.append(1) or real_collect(*args))
    server = scp_class(provider=list) if scp_class is WorklistScp else scp_class()
    server.start()
    try:
        for _ in range(65):  # past pynetdicom's 60
            echo(server.peer)
    finally:
        server.stop()
    assert forced == []
