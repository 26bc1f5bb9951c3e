"""SEND_DMWL: publish the worklist item (built-in MWL SCP and/or a worklist folder), then find it with a
C-FIND by accession number (IHE RAD-5), as the modality will."""

from __future__ import annotations

import asyncio
from pathlib import Path

from asgiref.sync import sync_to_async

from generators.worklist import build_worklist_item, query_dataset
from simulations.events import EventType
from simulations.handlers.base import RunContext, StepFailed, Story
from simulations.receivers import publish_worklist_entry
from simulations.steps import EndpointKind, Step
from simulations.transport.dimse.worklist import find_worklist, publish_worklist_item


async def send_dmwl(step: Step, story: Story, run: RunContext) -> None:
    order = story.order
    ds = build_worklist_item(order)
    story.files.write_dataset("worklist.json", ds)
    published: list[str] = []
    if run.endpoints.builtin_worklist:
        await sync_to_async(publish_worklist_entry)(
            accession_number=order.accession_number, dataset=ds, modality=order.exam.modality.value,
            station_ae_title=order.station_ae_title, scheduled_at=order.scheduled_at, patient=story.row)
        published.append("built-in worklist")
    folder = run.endpoints.get(EndpointKind.WORKLIST_FOLDER.value, step.endpoint)
    if folder is not None:
        published.append(str(await asyncio.to_thread(publish_worklist_item, ds, Path(folder))))
    story.stats.worklist_published += 1
    await story.emit(EventType.WORKLIST_PUBLISHED,
                     f"Worklist entry {order.sps_id} ({order.exam.modality.value} for {order.station_ae_title}) "
                     "published to " + (", ".join(published) or "nowhere"), step, published=published)
    peer = run.endpoints.get(EndpointKind.MWL.value, step.endpoint if not folder else None)
    if not step.spec.verify or peer is None or not run.sending:
        return
    query = query_dataset(AccessionNumber=order.accession_number)
    found = await run.exchange(peer, find_worklist, peer, query, timeout=peer.timeout)
    for _ in range(12):  # a RIS turns the order into an item a moment after its ACK: ask again for ~3 s
        if found or run.cancel.is_set():
            break
        await asyncio.sleep(0.25)
        found = await run.exchange(peer, find_worklist, peer, query, timeout=peer.timeout)
    if not found:
        raise StepFailed(f"the worklist entry for accession {order.accession_number} is not visible at {peer}")
    story.files.write_dataset("worklist-found.json", found[0])
    story.stats.worklist_found += 1
    await story.emit(EventType.WORKLIST_FOUND, f"Worklist entry found at {peer} by C-FIND ({len(found)} match)",
                     step, matches=len(found))
