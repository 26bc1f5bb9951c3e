"""Live run events over WebSockets: the consumer only relays (STYLE.md, channels' habit).

``ws/runs/<run id>/?after=<seq>`` sends the events already recorded after ``seq`` (so a page that
reconnects misses nothing), then every new one as the runner emits it to the run's group.
"""

from __future__ import annotations

import uuid

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from simulations.events import event_dict, group_name
from simulations.models import Run, RunEvent

BACKLOG_LIMIT = 1000


class RunEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        if not await self._run_exists(self.run_id):
            await self.close(code=4404)
            return
        self.group = group_name(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        after = self._after()
        for event in await self._backlog(self.run_id, after):
            await self.send_json(event)

    def _after(self) -> int:
        query = dict(part.split("=", 1) for part in self.scope.get("query_string", b"").decode().split("&")
                     if "=" in part)
        try:
            return max(0, int(query.get("after", "0")))
        except ValueError:
            return 0

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_event(self, message: dict) -> None:
        """Handler of ``{"type": "run.event", "event": {...}}`` group messages."""
        await self.send_json(message["event"])

    async def receive_json(self, content, **kwargs) -> None:
        """Clients only listen; anything they send is ignored."""

    @database_sync_to_async
    def _run_exists(self, run_id: uuid.UUID) -> bool:
        return Run.objects.filter(pk=run_id).exists()

    @database_sync_to_async
    def _backlog(self, run_id: uuid.UUID, after: int) -> list[dict]:
        events = (RunEvent.objects.filter(run_id=run_id, seq__gt=after).select_related("patient")
                  .order_by("seq")[:BACKLOG_LIMIT])
        return [event_dict(e, e.patient.index if e.patient else None) for e in events]
