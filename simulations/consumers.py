"""Live run events over WebSockets, and the page's run actions.

``ws/runs/<run id>/?after=<seq>`` sends every recorded event with a larger ``seq``, in order, then
the new ones as they are recorded — no gap and no duplicate: the consumer joins the run's group
*before* it reads anything, and every frame comes from the ``RunEvent`` rows by ``seq`` (a group
message only wakes the consumer up). The rows are also polled, so a run executed by another process
(``manage.py runsim``, a Celery worker) is seen live even on the in-memory channel layer, which
cannot cross processes.

Refusals are distinguishable close codes: **4401** not logged in, **4404** no such run or not one
this user may see (:mod:`simulations.selectors`, the same rule as REST and the pages; a malformed id
is simply not found). The socket is accepted and then closed with the code: a close before accepting
is an HTTP 403 to a browser, which cannot tell the reasons apart. Actions (JSON frames; each answered with ``{"reply": action, "ok": ...}``)::

    {"action": "start", ...runs API fields...}   same validation and messages as POST /api/simulator/runs
    {"action": "cancel"}                          ask the run to stop
    {"action": "rate", "rate_per_hour": 30}       a Poisson run's next arrivals follow the new rate

``ws/runs/`` (no id) takes only ``start``. A run never depends on its socket: closing it stops nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.urls import reverse
from rest_framework import exceptions

from simulations.events import InOrder, events_after, group_name
from simulations.models import Run
from simulations.selectors import run_visible_to
from simulations.services import LimitExceeded, run_cancel, run_set_rate
from simulations.steps import ScenarioError

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
BATCH = 500
# How often the recorded events are read without a wake-up: often on the in-memory layer (another
# process's run sends it nothing), rarely as a safety net on Redis; slowly once the run has ended.
POLL_S_MEMORY = 0.5
POLL_S_SHARED = 2.0
POLL_S_FINISHED = 5.0


class RunGone(Exception):
    """The watched run was deleted."""


async def refuse(consumer, code: int) -> None:
    """Accept, then close with ``code``, so the browser sees the code (a pre-accept close is a 403)."""
    await consumer.accept()
    await consumer.close(code=code)


class RunEventsConsumer(AsyncJsonWebsocketConsumer):
    run_pk: uuid.UUID | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await refuse(self, CLOSE_UNAUTHENTICATED)
            return
        run_id = self.scope["url_route"]["kwargs"].get("run_id")
        if run_id is None:  # ws/runs/: a socket to start runs from
            await self.accept()
            return
        run = await self._visible_run(run_id)
        if run is None:
            await refuse(self, CLOSE_NOT_FOUND)
            return
        self.run_pk = run.pk
        self.order = InOrder(self._after())
        self.sent_status: tuple | None = None
        self.wake = asyncio.Event()
        self.group = group_name(run.pk)
        # Subscribe first, read second: an event recorded in between is in the rows and wakes us.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.tail = asyncio.create_task(self._tail())

    def _after(self) -> int:
        query = dict(part.split("=", 1) for part in self.scope.get("query_string", b"").decode("latin-1").split("&")
                     if "=" in part)
        value = query.get("after", "0")
        return min(int(value), 2**63 - 1) if value.isascii() and value.isdigit() else 0

    async def disconnect(self, code: int) -> None:
        tail = getattr(self, "tail", None)
        if tail is not None:
            tail.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_event(self, message: dict) -> None:
        """``{"type": "run.event", ...}`` from the run's group: new rows to read."""
        self.wake.set()

    # -- the tail: every frame from the rows, in seq order ----------------------------------------
    async def _tail(self) -> None:
        poll = POLL_S_MEMORY if isinstance(self.channel_layer, InMemoryChannelLayer) else POLL_S_SHARED
        try:
            while True:
                finished = await self._drain()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=POLL_S_FINISHED if finished else poll)
                except TimeoutError:
                    pass
                self.wake.clear()
        except asyncio.CancelledError:
            raise
        except RunGone:  # deleted while watched
            await self.close(code=CLOSE_NOT_FOUND)
        except Exception:  # noqa: BLE001 - a broken tail must end the socket, not hang it silently
            logger.exception("event tail of run %s failed", self.run_pk)
            await self.close(code=1011)

    async def _drain(self) -> bool:
        """Send every recorded event after the last one sent, in order; True once the run has ended."""
        while True:
            events, status = await self._rows_after(self.order.last_seq)
            for event in self.order.take(events, now=time.monotonic()):
                await self.send_json(event)
            if status != self.sent_status:
                self.sent_status = status
                await self.send_json({"run_status": status[0], "finished": status[1], "error": status[2]})
            if len(events) < BATCH or self.order.waiting:
                return status[1]

    @database_sync_to_async
    def _rows_after(self, after: int) -> tuple[list[dict], tuple[str, bool, str]]:
        events = events_after(self.run_pk, after, BATCH)
        run = Run.objects.only("status", "error").filter(pk=self.run_pk).first()
        if run is None:
            raise RunGone
        return events, (run.status, run.is_finished, run.error)

    @database_sync_to_async
    def _visible_run(self, run_id) -> Run | None:
        return run_visible_to(self.scope["user"], run_id)

    # -- actions ----------------------------------------------------------------------------------
    async def receive_json(self, content, **kwargs) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        handler = {"start": self._start, "cancel": self._cancel, "rate": self._rate}.get(action)
        if handler is None:
            await self._refuse(action, "invalid", 'Send {"action": "start" | "cancel" | "rate", ...}.')
            return
        if action != "start" and self.run_pk is None:
            await self._refuse(action, "invalid", f"{action} needs a run: use ws/runs/<run id>/.")
            return
        await handler(content)

    async def decode_json(self, text_data):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # answered as an invalid action, never a crash

    async def _refuse(self, action, code: str, message: str, details: Any = None) -> None:
        await self.send_json({"reply": action, "ok": False,
                              "error": {"code": code, "message": message, "details": details}})

    async def _start(self, content: dict) -> None:
        body = {k: v for k, v in content.items() if k != "action"}
        try:
            run = await database_sync_to_async(self._start_sync)(body)
        except exceptions.ValidationError as exc:
            detail = _plain(exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail})
            field, messages = next(iter(detail.items()))
            first = messages[0] if isinstance(messages, list) and messages else messages
            where = "" if field == "non_field_errors" else f"{field}: "
            await self._refuse("start", "invalid", f"The request is not valid: {where}{first}", detail)
            return
        except ScenarioError as exc:
            await self._refuse("start", "invalid_scenario", f"The scenario is not valid: {exc.problems[0]}",
                               {"problems": exc.problems})
            return
        except LimitExceeded as exc:  # a quota of the runs API, named
            await self._refuse("start", "limit_exceeded", exc.message,
                               {"limit": exc.limit, "value": exc.value, "setting": exc.setting})
            return
        await self.send_json({"reply": "start", "ok": True, "run": str(run.pk), "status": run.status,
                              "url": reverse("simulator:run", kwargs={"run_id": str(run.pk)}),
                              "ws": f"/ws/runs/{run.pk}/"})

    def _start_sync(self, body: dict) -> Run:
        from simulations.apis import run_start_from_input

        return run_start_from_input(body, principal=self.scope["user"])

    async def _cancel(self, content: dict) -> None:
        run = await self._visible_run(self.run_pk)
        if run is None:
            await self._refuse("cancel", "not_found", "This run is gone.")
            return
        if run.is_finished:
            await self._refuse("cancel", "run_finished", f"Run {run.pk} already finished ({run.status}); "
                                                         "there is nothing to cancel.")
            return
        await database_sync_to_async(run_cancel)(run=run)
        await self.send_json({"reply": "cancel", "ok": True, "cancel_requested": True})

    async def _rate(self, content: dict) -> None:
        run = await self._visible_run(self.run_pk)
        if run is None:
            await self._refuse("rate", "not_found", "This run is gone.")
            return
        try:
            run = await database_sync_to_async(run_set_rate)(run=run, rate_per_hour=content.get("rate_per_hour"))
        except ScenarioError as exc:
            await self._refuse("rate", "invalid", exc.problems[0], {"problems": exc.problems})
            return
        await self.send_json({"reply": "rate", "ok": True, "rate_per_hour": run.rate_per_hour})


def _plain(detail: Any) -> Any:
    """DRF error details as plain JSON (``{"field": ["message"]}``), as the API's ``details``."""
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


class NoRouteConsumer(AsyncWebsocketConsumer):
    """Any other ``ws/`` path: refused as not found (never an error in the server log)."""

    async def connect(self) -> None:
        await refuse(self, CLOSE_NOT_FOUND)
