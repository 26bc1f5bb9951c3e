"""Catalog routes under /api/simulator/ (no trailing slash, exactly as the spec lists them)."""

from __future__ import annotations

from django.urls import path

from exams.apis import ExamDetailApi, ExamListApi, ExamModalitiesApi, ExamSelectApi

app_name = "exams"

urlpatterns = [
    path("exams", ExamListApi.as_view(), name="list"),
    # Before the detail route: "modalities" and "select" are not exam ids.
    path("exams/modalities", ExamModalitiesApi.as_view(), name="modalities"),
    path("exams/select", ExamSelectApi.as_view(), name="select"),
    path("exams/<path:exam_id>", ExamDetailApi.as_view(), name="detail"),
]
