"""Run events reach WebSocket clients: backlog first, then live, through the in-memory and Redis layers."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import missing_peer
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from simulations.events import EventRecorder
from simulations.models import Run, RunPatient
from simulations.routing import websocket_urlpatterns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["memory", "redis"])
def layer(request, settings):
    if request.param == "redis":
        if not _redis_up():
            missing_peer("Redis is not listening on 127.0.0.1:6379")
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                               "CONFIG": {"hosts": ["redis://127.0.0.1:6379/15"]}}}
    channel_layers.backends = {}  # rebuild the layer from the (overridden) settings
    yield request.param
    channel_layers.backends = {}


async def _run_and_user():
    user = await sync_to_async(User.objects.create_user)("watcher", password="x" * 12)
    run = await sync_to_async(Run.objects.create)(steps=[{"step_type": "WAIT"}], patient_count=1, seed=1, owner=user)
    return run, user


async def _next_event(communicator) -> dict:
    """The next event frame (run status frames, which carry no seq, are skipped)."""
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if "seq" in frame:
            return frame


def _communicator(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    return communicator


async def test_a_client_gets_the_backlog_then_live_events(layer):
    run, user = await _run_and_user()
    recorder = EventRecorder(run.pk)
    await recorder.emit("run.started", "Run started")
    await recorder.emit("exam.bound", "Bound exam CT-HEAD-WO", payload={"exam_id": "CT-HEAD-WO"})
    communicator = _communicator(f"/ws/runs/{run.pk}/?after=1", user)
    connected, _ = await communicator.connect()
    try:
        assert connected
        backlog = await _next_event(communicator)
        assert (backlog["seq"], backlog["type"], backlog["payload"]) == (2, "exam.bound", {"exam_id": "CT-HEAD-WO"})
        patient = await sync_to_async(RunPatient.objects.create)(run=run, index=0)
        await recorder.emit("patient.passed", "Patient 1 passed", patient_pk=patient.pk, patient_index=0)
        live = await _next_event(communicator)
        assert (live["seq"], live["type"], live["patient"]) == (3, "patient.passed", 1)
        assert await communicator.receive_nothing(timeout=0.2)
    finally:
        await communicator.disconnect()


async def test_anonymous_clients_and_unknown_runs_are_refused(layer):
    run, user = await _run_and_user()
    # Accepted, then closed with the code: a browser cannot see the code of a close before accepting.
    for path, who, code in ((f"/ws/runs/{run.pk}/", AnonymousUser(), 4401),
                            ("/ws/runs/00000000-0000-0000-0000-000000000000/", user, 4404)):
        communicator = _communicator(path, who)
        assert (await communicator.connect())[0]
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": code}
