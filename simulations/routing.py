from __future__ import annotations

from django.urls import path, re_path

from simulations.consumers import NoRouteConsumer, RunEventsConsumer

websocket_urlpatterns = [
    # str, not uuid: a malformed id reaches the consumer and is refused as not found (4404), never a 500.
    path("ws/runs/", RunEventsConsumer.as_asgi()),
    path("ws/runs/<str:run_id>/", RunEventsConsumer.as_asgi()),
    re_path(r"", NoRouteConsumer.as_asgi()),
]
