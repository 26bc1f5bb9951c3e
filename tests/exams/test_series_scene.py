"""The scene of an NM or US series: curated in the catalog, checked by the model, admin and loader alike."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from exams.catalog_io import SHIPPED_CATALOG, CatalogError, dump_catalog, load_catalog, read_catalog_file
from exams.models import ExamSpec, SeriesProtocol
from generators.terms import Scene
from tests.exams.documents import small_catalog
from tests.exams.test_admin import _form

pytestmark = pytest.mark.django_db


def _series_of(doc: dict, modality: str) -> dict:
    return next(e for e in doc["exams"] if e["modality"] == modality)["series"][0]


@pytest.mark.parametrize(("exam_id", "scene", "message"), [
    ("US-ABD-COMPLETE", "", "a US series needs a scene (what it shows): one of abdomen, gallbladder, kidney"),
    ("US-ABD-COMPLETE", "renal", "'renal' is not a US scene; use one of abdomen"),
    ("NM-BONE-WB", "kidney", "'kidney' is not an NM scene; use one of bone, heart"),
    ("MR-KNEE-RIGHT-WO", "bone", "a scene ('bone') applies to NM and US series only; leave it blank for MR"),
])
def test_the_model_checks_a_series_scene_against_its_exams_modality(catalog, exam_id, scene, message):
    series = SeriesProtocol.objects.filter(exam_id=exam_id).first()
    series.scene = scene
    with pytest.raises(ValidationError) as caught:
        series.full_clean()
    assert any(m.startswith(message) for m in caught.value.message_dict["scene"])


def test_the_model_accepts_a_scene_of_the_exams_modality_and_carries_it_to_the_generators(catalog):
    series = SeriesProtocol.objects.get(exam_id="NM-BONE-WB", number=1)
    series.scene = "pinhole"  # any NM scene will do for the model; what it shows is the curator's choice
    series.full_clean()
    series.save()
    assert ExamSpec.objects.get(id="NM-BONE-WB").to_info().series[0].scene is Scene.PINHOLE
    mr = SeriesProtocol.objects.filter(exam_id="MR-KNEE-RIGHT-WO").first()
    mr.full_clean()  # blank: right for every modality but NM and US
    assert mr.to_spec().scene is Scene.NONE


def test_it_loads_and_dumps_the_scene_of_nm_and_us_series_only():
    load_catalog(small_catalog())
    assert SeriesProtocol.objects.get(exam_id="US-ABD-COMPLETE", number=1).scene == "abdomen"
    dumped = dump_catalog()
    assert _series_of(dumped, "US")["scene"] == "abdomen" and _series_of(dumped, "NM")["scene"] == "bone"
    assert "scene" not in _series_of(dumped, "CT")  # absent where there is none, like the shipped file
    load_catalog(dumped)
    assert dump_catalog() == dumped


@pytest.mark.parametrize(("modality", "scene", "message"), [
    ("US", None, "exam US-ABD-COMPLETE: series #1: field scene: a US series needs a scene (what it shows)"),
    ("NM", "", "exam NM-BONE-WB: series #1: field scene: an NM series needs a scene (what it shows): one of bone"),
    ("NM", "kidney", "exam NM-BONE-WB: series #1: field scene: 'kidney' is not an NM scene; use one of bone"),
    ("CT", "abdomen", "exam CT-ABDPEL-W: series #1: field scene: a scene ('abdomen') applies to NM and US series "
                      "only; leave it blank for CT."),
    ("US", "liver", "exam US-ABD-COMPLETE: series #1: field scene: Value 'liver' is not a valid choice."),
    ("US", 3, "exam US-ABD-COMPLETE: series #1: field scene: must be a string or null, got 3."),
])
def test_the_loader_refuses_a_series_whose_scene_does_not_fit_and_names_exam_and_series(modality, scene, message):
    doc = small_catalog()
    series = _series_of(doc, modality)
    if scene is None:
        del series["scene"]
    else:
        series["scene"] = scene
    with pytest.raises(CatalogError) as caught:
        load_catalog(doc)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert ExamSpec.objects.count() == 0


def test_the_shipped_catalog_names_the_scene_of_every_nm_and_us_series():
    load_catalog(read_catalog_file(SHIPPED_CATALOG))
    series = SeriesProtocol.objects.select_related("exam")
    assert all(bool(s.scene) == (s.exam.modality in {"NM", "US"}) for s in series)
    scenes = {(s.exam_id, s.number): s.scene for s in series if s.scene}
    # series of one body part that only their scene tells apart
    assert (scenes["NM-CHEST-VQ", 1], scenes["NM-CHEST-VQ", 2]) == ("vq-vent", "vq-perf")
    assert (scenes["NM-THYROID-UPTAKE", 1], scenes["NM-THYROID-UPTAKE", 2]) == ("thyroid", "pinhole")
    assert (scenes["US-PELVIS-TV", 1], scenes["US-PELVIS-TV", 2]) == ("pelvis-ta", "pelvis-tv")


def _nm_form(scene: str, *, modality: str = "NM") -> dict:
    return _form("NM-BONE-LTD", modality=modality, laterality="", body_part="WHOLEBODY",
                 codes=[("0", "C4", "78300", "Bone and/or joint imaging; limited area")],
                 series=[("1", "SPOT VIEWS", "NM_BONE_SPOT", "2", "", "")], **{"series-0-scene": scene})


@pytest.mark.parametrize(("scene", "message"), [
    ("", "an NM series needs a scene (what it shows)"),
    ("kidney", "&#x27;kidney&#x27; is not an NM scene"),
    ("liver", "Select a valid choice. liver is not one of the available choices."),
])
def test_the_admin_refuses_an_nm_series_without_an_nm_scene_and_saves_nothing(admin_client, db, scene, message):
    response = admin_client.post(reverse("admin:exams_examspec_add"), _nm_form(scene))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ExamSpec.objects.filter(id="NM-BONE-LTD").exists()


def test_the_admin_saves_the_scene_curated_in_the_series_inline(admin_client, db):
    response = admin_client.post(reverse("admin:exams_examspec_add"), _nm_form("bone"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert SeriesProtocol.objects.get(exam_id="NM-BONE-LTD").scene == "bone"
    page = admin_client.get(reverse("admin:exams_examspec_change", args=["NM-BONE-LTD"])).content.decode()
    assert 'name="series-0-scene"' in page and '<option value="bone" selected>' in page


def test_the_admin_refuses_a_scene_on_a_series_that_is_not_nm_or_us(admin_client, db):
    data = _form(**{"series-0-scene": "bone"})
    response = admin_client.post(reverse("admin:exams_examspec_add"), data)
    assert response.status_code == 200
    assert "a scene (&#x27;bone&#x27;) applies to NM and US series only" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_the_shipped_exams_existing_series_their_scene():
    before, after = [("exams", "0004_series_window_projection_frames_pet_xa")], [("exams", "0005_series_scene")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        exam_model, series_model = apps.get_model("exams", "ExamSpec"), apps.get_model("exams", "SeriesProtocol")
        for exam_id, modality, numbers in (("NM-CHEST-VQ", "NM", (1, 2)), ("NM-OWN-EXAM", "NM", (1,)),
                                           ("CT-HEAD-WO", "CT", (1,))):
            exam = exam_model.objects.create(id=exam_id, name=exam_id, description=exam_id, modality=modality,
                                             body_part="CHEST")
            for n in numbers:
                series_model.objects.create(exam=exam, number=n, description=f"S{n}", protocol_name="P")
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        apps = executor.loader.project_state(after).apps
        scenes = {(s.exam_id, s.number): s.scene for s in apps.get_model("exams", "SeriesProtocol").objects.all()}
        # the shipped exam's rows by series number; an exam the shipped catalog does not have stays to curate
        assert scenes == {("NM-CHEST-VQ", 1): "vq-vent", ("NM-CHEST-VQ", 2): "vq-perf", ("NM-OWN-EXAM", 1): "",
                          ("CT-HEAD-WO", 1): ""}
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
