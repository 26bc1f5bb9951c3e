"""The run WebSocket: refusals, replay then live with no gap and no duplicate, runs of another
process seen live, start / cancel / rate over the socket, no group left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User

from simulations.events import EventRecorder, group_name
from simulations.models import Run, RunEvent, Scenario
from simulations.routing import websocket_urlpatterns
from tests.page.conftest import join_run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_layer():
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


def _socket(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    return communicator


async def _user(name: str, *, staff: bool = False) -> User:
    return await sync_to_async(User.objects.create_user)(name, password="x" * 12, is_staff=staff)


async def _refusal(path: str, user) -> int:
    """The close code a refused socket gets (accepted, then closed, so browsers see the code)."""
    communicator = _socket(path, user)
    connected, _ = await communicator.connect()
    assert connected
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message["code"]


async def _events_until_end(communicator, *, timeout: float = 60) -> list[dict]:
    """Every event frame until the run's final event (run.finished / run.cancelled)."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await communicator.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        if "seq" in frame:
            events.append(frame)
            if frame["type"] in ("run.finished", "run.cancelled"):
                return events


async def test_it_refuses_anonymous_sockets_with_4401():
    run = await sync_to_async(Run.objects.create)(steps=[], patient_count=1, seed=1)
    assert await _refusal(f"/ws/runs/{run.pk}/", AnonymousUser()) == 4401


async def test_it_refuses_runs_the_user_may_not_see_and_malformed_ids_with_4404():
    owner, other, staff = await _user("owner"), await _user("other"), await _user("boss", staff=True)
    run = await sync_to_async(Run.objects.create)(steps=[], patient_count=1, seed=1, owner=owner)
    for path in (f"/ws/runs/{run.pk}/", "/ws/runs/not-a-uuid/", "/ws/runs/%00/", "/ws/elsewhere/",
                 "/ws/runs/00000000-0000-0000-0000-000000000000/"):
        assert await _refusal(path, other) == 4404, path
    for user in (owner, staff):
        communicator = _socket(f"/ws/runs/{run.pk}/", user)
        connected, _ = await communicator.connect()
        assert connected
        assert (await communicator.receive_json_from(timeout=5))["run_status"] == "pending"
        await communicator.disconnect()


async def test_a_late_joiner_gets_every_event_once_in_order_while_the_run_records_more():
    """Replay and live never race: frames come from the rows by seq, the group only wakes the socket."""
    user = await _user("watcher")
    run = await sync_to_async(Run.objects.create)(steps=[], patient_count=1, seed=1, owner=user)
    recorder = EventRecorder(run.pk)
    for i in range(5):
        await recorder.emit("step.note", f"before {i}")

    async def writer():
        for i in range(80):
            await recorder.emit("step.note", f"during {i}")
            if i % 20 == 0:
                await asyncio.sleep(0)
        await recorder.emit("run.finished", "done")

    sockets = [_socket(f"/ws/runs/{run.pk}/?after={after}", user) for after in (0, 3)]
    writing = asyncio.create_task(writer())
    for s in sockets:
        assert (await s.connect())[0]
    try:
        await writing
        total = await sync_to_async(RunEvent.objects.filter(run=run).count)()
        for s, after in zip(sockets, (0, 3)):
            seqs = [e["seq"] for e in await _events_until_end(s)]
            assert seqs == list(range(after + 1, total + 1))
            assert await s.receive_nothing(timeout=0.3) or "seq" not in await s.receive_json_from()
    finally:
        for s in sockets:
            await s.disconnect()


async def test_replay_then_live_has_no_gap_and_no_duplicate_under_a_concurrent_run(catalog_tx):
    """A real run (built-in receivers on loopback) executes while two sockets join at different moments."""
    from simulations.apis import run_start_from_input

    user = await _user("engineer")
    body = {"steps": [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"},
                      {"step_type": "SEND_HL7"}, {"step_type": "GENERATE_DICOM"}, {"step_type": "SEND_DICOM"},
                      {"step_type": "SEND_REPORT"}],
            "patients": 3, "max_instances_per_series": 1, "seed": 3}
    # Started as the page starts it: executed by the dispatch thread, beside this event loop.
    run = await sync_to_async(run_start_from_input)(body, principal=user)
    early = _socket(f"/ws/runs/{run.pk}/", user)
    assert (await early.connect())[0]
    while not await sync_to_async(RunEvent.objects.filter(run=run, seq__gte=4).exists)():
        await asyncio.sleep(0.05)
    late = _socket(f"/ws/runs/{run.pk}/?after=2", user)
    assert (await late.connect())[0]
    try:
        first = await _events_until_end(early)
        second = await _events_until_end(late)
        rows = await sync_to_async(lambda: list(RunEvent.objects.filter(run=run).values_list("seq", flat=True)))()
        assert [e["seq"] for e in first] == rows
        assert [e["seq"] for e in second] == rows[2:]
        assert [e["type"] for e in first].count("patient.passed") == 3
        assert {e["patient"] for e in first if e["patient"] is not None} == {1, 2, 3}
    finally:
        await early.disconnect()
        await late.disconnect()
        await sync_to_async(join_run_threads)()


async def test_a_run_started_by_runsim_in_another_process_is_seen_live(catalog_tx):
    """On the in-memory layer (another process's events reach it only through the rows it polls) and, on the
    scale-out pass, on Redis with the patients executed by the session's Celery workers."""
    from tests.celery_workers import database_url

    staff = await _user("ops", staff=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": await sync_to_async(database_url)()}
    if settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"):
        env.pop("REDIS_URL", None)
    before = set(await sync_to_async(lambda: list(Run.objects.values_list("pk", flat=True)))())
    process = subprocess.Popen([sys.executable, "manage.py", "runsim", "--exam", "DX-CHEST-2V", "--patients", "3",
                                "--concurrency", "1", "--max-instances", "1", "--json"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run = None
        deadline = time.monotonic() + 60
        while run is None and time.monotonic() < deadline and process.poll() is None:
            run = await sync_to_async(lambda: Run.objects.exclude(pk__in=before).first())()
            await asyncio.sleep(0.05)
        assert run is not None, process.communicate(timeout=30)
        communicator = _socket(f"/ws/runs/{run.pk}/", staff)
        assert (await communicator.connect())[0]
        try:
            status_at_connect = await sync_to_async(lambda: Run.objects.get(pk=run.pk).status)()
            assert status_at_connect in (Run.Status.PENDING, Run.Status.RUNNING)  # joined while it ran
            events = await _events_until_end(communicator)
        finally:
            await communicator.disconnect()
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()[-2000:]
        rows = await sync_to_async(lambda: list(RunEvent.objects.filter(run=run).values_list("seq", flat=True)))()
        assert [e["seq"] for e in events] == rows
        assert [e["type"] for e in events].count("patient.passed") == 3
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_start_over_the_socket_uses_the_apis_validation_and_a_run_never_needs_its_socket(catalog_tx):
    user = await _user("starter")
    communicator = _socket("/ws/runs/", user)
    assert (await communicator.connect())[0]
    try:
        await communicator.send_json_to({"action": "start", "scenario": "Outpatient MR knee", "patients": 0})
        refused = await communicator.receive_json_from(timeout=10)
        assert refused == {"reply": "start", "ok": False, "error": {
            "code": "invalid", "message": "The request is not valid: patients: Ensure this value is greater than or "
                                          "equal to 1.",
            "details": {"patients": ["Ensure this value is greater than or equal to 1."]}}}
        await communicator.send_json_to({"action": "start", "steps": [{"step_type": "GENERATE_HL7",
                                                                       "exam_id": "NOPE"}], "send": False})
        scenario_error = await communicator.receive_json_from(timeout=10)
        assert scenario_error["error"]["code"] == "invalid_scenario"
        assert "field exam_id" in scenario_error["error"]["message"]
        await communicator.send_to(text_data="{not json")
        assert (await communicator.receive_json_from(timeout=5))["ok"] is False
        await communicator.send_json_to({"action": "cancel"})
        assert "needs a run" in (await communicator.receive_json_from(timeout=5))["error"]["message"]
        await communicator.send_json_to({"action": "start", "send": False, "patients": 1, "steps": [
            {"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"}, {"step_type": "WAIT", "seconds": 1}]})
        started = await communicator.receive_json_from(timeout=10)
        assert started["ok"] and started["url"] == f"/simulator/runs/{started['run']}/"
    finally:
        await communicator.disconnect()  # the run goes on without its socket
    run = await sync_to_async(Run.objects.select_related("owner").get)(pk=started["run"])
    assert run.owner == user
    deadline = time.monotonic() + 30
    while run.status != Run.Status.SUCCEEDED and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        run = await sync_to_async(Run.objects.get)(pk=run.pk)
    assert run.status == Run.Status.SUCCEEDED
    await sync_to_async(join_run_threads)()


async def test_cancel_over_the_socket_stops_the_run_and_a_finished_run_says_so(catalog_tx):
    user = await _user("canceller")
    starter = _socket("/ws/runs/", user)
    assert (await starter.connect())[0]
    await starter.send_json_to({"action": "start", "send": False, "patients": 2, "concurrency": 1, "steps": [
        {"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"}, {"step_type": "WAIT", "seconds": 60}]})
    run_id = (await starter.receive_json_from(timeout=10))["run"]
    await starter.disconnect()
    communicator = _socket(f"/ws/runs/{run_id}/", user)
    assert (await communicator.connect())[0]
    try:
        while True:  # wait until the first patient is in its WAIT step
            frame = await communicator.receive_json_from(timeout=30)
            if frame.get("type") == "hl7.built":
                break
        await communicator.send_json_to({"action": "cancel"})
        replies, events = [], []
        while not any(e["type"] == "run.cancelled" for e in events):
            frame = await communicator.receive_json_from(timeout=30)
            (replies if "reply" in frame else events if "seq" in frame else []).append(frame)
        assert replies == [{"reply": "cancel", "ok": True, "cancel_requested": True}]
        while (await sync_to_async(Run.objects.get)(pk=run_id)).status != Run.Status.CANCELLED:
            await asyncio.sleep(0.1)
        await communicator.send_json_to({"action": "cancel"})
        while "reply" not in (frame := await communicator.receive_json_from(timeout=10)):
            pass
        assert frame["ok"] is False and frame["error"]["code"] == "run_finished"
    finally:
        await communicator.disconnect()
        await sync_to_async(join_run_threads)()


async def test_a_rate_change_over_the_socket_applies_to_the_next_arrivals_and_is_an_event(catalog_tx):
    user = await _user("dispatcher")
    await sync_to_async(Scenario.objects.create)(
        name="slow trickle", arrival="poisson", rate_per_hour=0.5, default_patients=3, concurrency=3,
        steps=[{"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"}])
    starter = _socket("/ws/runs/", user)
    assert (await starter.connect())[0]
    await starter.send_json_to({"action": "start", "scenario": "slow trickle", "send": False})
    run_id = (await starter.receive_json_from(timeout=10))["run"]
    await starter.disconnect()
    communicator = _socket(f"/ws/runs/{run_id}/", user)
    assert (await communicator.connect())[0]
    try:
        while (await communicator.receive_json_from(timeout=30)).get("type") != "patient.passed":
            pass  # patient 1 arrives at once; patient 2 would wait about two hours at 0.5 per hour
        for bad in (0, -1, "fast", None, float("1e9")):
            await communicator.send_json_to({"action": "rate", "rate_per_hour": bad})
            while "reply" not in (frame := await communicator.receive_json_from(timeout=10)):
                pass
            assert frame["ok"] is False and frame["error"]["message"].startswith("rate_per_hour:"), bad
        await communicator.send_json_to({"action": "rate", "rate_per_hour": 360000})
        events = []
        started = time.monotonic()
        while not any(e["type"] == "run.finished" for e in events):
            frame = await communicator.receive_json_from(timeout=30)
            if "seq" in frame:
                events.append(frame)
        assert time.monotonic() - started < 20
        changes = [e for e in events if e["type"] == "run.rate_changed"]
        assert [c["payload"] for c in changes] == [{"from": 0.5, "to": 360000.0}]
        assert [e["type"] for e in events].count("patient.passed") == 2
    finally:
        await communicator.disconnect()
    await sync_to_async(join_run_threads)()
    run = await sync_to_async(Run.objects.get)(pk=run_id)
    assert (run.status, run.rate_per_hour) == (Run.Status.SUCCEEDED, 360000.0)


async def test_a_disconnected_socket_leaves_no_group_behind():
    user = await _user("leaver")
    run = await sync_to_async(Run.objects.create)(steps=[], patient_count=1, seed=1, owner=user)
    layer = get_channel_layer()
    communicator = _socket(f"/ws/runs/{run.pk}/", user)
    assert (await communicator.connect())[0]
    assert await _members(layer, group_name(run.pk)) == 1
    await communicator.disconnect()
    assert await _members(layer, group_name(run.pk)) == 0


async def _members(layer, group: str) -> int:
    """Channels in ``group``: the in-memory layer's dict, or channels_redis's sorted set (the scale-out pass)."""
    if hasattr(layer, "groups"):
        return len(layer.groups.get(group, {}))
    return await layer.connection(layer.consistent_hash(group)).zcard(layer._group_key(group))


async def test_a_run_deleted_while_watched_closes_the_socket_as_not_found():
    user = await _user("deleter", staff=True)
    run = await sync_to_async(Run.objects.create)(steps=[], patient_count=1, seed=1)
    communicator = _socket(f"/ws/runs/{run.pk}/", user)
    assert (await communicator.connect())[0]
    assert "run_status" in await communicator.receive_json_from(timeout=5)
    await sync_to_async(Run.objects.filter(pk=run.pk).delete)()
    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4404}
    await communicator.disconnect()
