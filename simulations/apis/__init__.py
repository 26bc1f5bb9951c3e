"""The runs, scenarios and endpoints API: thin views over :mod:`simulations.services`.

Runs: ``POST runs`` (202, executed in the background), ``GET runs`` (paginated, ``?status=``),
``GET runs/<id>``, ``GET runs/<id>/events?after=<seq>`` (polling), ``POST runs/<id>/cancel``.
Scenarios and endpoints: read for every API client, write for staff sessions only;
``POST endpoints/<id>/check`` does a C-ECHO (PS3.7 §9.1.5) or an MLLP NMD^N02 round trip.

One module a resource: :mod:`.runs`, :mod:`.scenarios`, :mod:`.endpoints`; what several of them answer
is in :mod:`.serializers`. ``simulations.urls`` routes to the names below.
"""

from __future__ import annotations

from simulations.apis.endpoints import CHECK_TIMEOUT_CAP_S, EndpointCheckApi, EndpointListCreateApi
from simulations.apis.runs import RunCancelApi, RunDetailApi, RunEventsApi, RunListCreateApi, run_start_from_input
from simulations.apis.scenarios import ScenarioListCreateApi

__all__ = [
    "CHECK_TIMEOUT_CAP_S", "EndpointCheckApi", "EndpointListCreateApi", "RunCancelApi", "RunDetailApi", "RunEventsApi",
    "RunListCreateApi", "ScenarioListCreateApi", "run_start_from_input",
]
