"""Runs, scenarios and endpoints routes under /api/simulator/ (no trailing slash, like the catalog's)."""

from __future__ import annotations

from django.urls import path

from simulations.apis import (
    EndpointCheckApi,
    EndpointListCreateApi,
    RunCancelApi,
    RunDetailApi,
    RunEventsApi,
    RunListCreateApi,
    ScenarioListCreateApi,
)

app_name = "simulations"

urlpatterns = [
    path("runs", RunListCreateApi.as_view(), name="run-list"),
    path("runs/<str:run_id>", RunDetailApi.as_view(), name="run-detail"),
    path("runs/<str:run_id>/events", RunEventsApi.as_view(), name="run-events"),
    path("runs/<str:run_id>/cancel", RunCancelApi.as_view(), name="run-cancel"),
    path("scenarios", ScenarioListCreateApi.as_view(), name="scenario-list"),
    path("endpoints", EndpointListCreateApi.as_view(), name="endpoint-list"),
    path("endpoints/<str:endpoint_id>/check", EndpointCheckApi.as_view(), name="endpoint-check"),
]
