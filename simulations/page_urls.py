"""The simulator page (/simulator/...): catalog, launch form, run view, patient story, history, files."""

from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from simulations import views

app_name = "simulator"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="simulator:catalog", permanent=False), name="home"),
    path("simulator/", views.catalog, name="catalog"),
    path("simulator/launch/", views.launch, name="launch"),
    path("simulator/endpoints/<int:endpoint_id>/check/", views.endpoint_check_view, name="endpoint-check"),
    path("simulator/runs/", views.history, name="history"),
    path("simulator/runs/<str:run_id>/", views.run_view, name="run"),
    path("simulator/runs/<str:run_id>/cancel/", views.run_cancel_view, name="run-cancel"),
    path("simulator/runs/<str:run_id>/again/", views.run_again, name="run-again"),
    path("simulator/runs/<str:run_id>/patients/<int:number>/", views.patient_story, name="patient"),
    path("simulator/runs/<str:run_id>/patients/<int:number>/study.zip", views.study_zip, name="study-zip"),
    path("simulator/runs/<str:run_id>/files/<path:relpath>", views.run_file, name="run-file"),
]
