from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from exams.models import ExamSpec, Indication

pytestmark = pytest.mark.django_db


def _form(exam_id="MR-ANKLE-RIGHT-WO", *, modality="MR", laterality="R", body_part="ANKLE", codes=None, series=None,
          **extra):
    codes = codes if codes is not None else [("0", "C4", "73721", "MRI joint lower extremity w/o contrast")]
    series = series if series is not None else [("1", "SAG PD FS", "ANKLE_SAG_PD_FS", "20", "TSE", "PD")]
    data = {
        "id": exam_id, "name": "MRI Ankle Right", "description": "MRI ANKLE RIGHT WO CONTRAST",
        "modality": modality, "body_part": body_part, "laterality": laterality, "active": "on",
        "for_outpatient": "on", "weight": "5", "min_age": "", "max_age": "", "required_sex": "",
        "contrast": "none", "contrast_agent": "", "contrast_volume_ml": "", "estimated_duration_min": "30",
        "purpose": "diagnostic",
        "codes-TOTAL_FORMS": str(len(codes)), "codes-INITIAL_FORMS": "0",
        "series-TOTAL_FORMS": str(len(series)), "series-INITIAL_FORMS": "0",
    }
    for i, (order, scheme, code, display) in enumerate(codes):
        data.update({f"codes-{i}-order": order, f"codes-{i}-scheme": scheme, f"codes-{i}-code": code,
                     f"codes-{i}-display": display})
    for i, (number, desc, proto, count, seq, weighting) in enumerate(series):
        data.update({f"series-{i}-number": number, f"series-{i}-description": desc,
                     f"series-{i}-protocol_name": proto, f"series-{i}-instance_count": count,
                     f"series-{i}-role": "PRIMARY", f"series-{i}-plane": "SAG",
                     f"series-{i}-sequence_name": seq, f"series-{i}-weighting": weighting})
    data.update(extra)
    return data


def test_the_changelist_shows_exams_and_filters(admin_client, catalog):
    url = reverse("admin:exams_examspec_changelist")
    response = admin_client.get(url, {"modality__exact": "MR", "setting": "inpatient"})
    assert response.status_code == 200
    content = response.content.decode()
    assert "MR-KNEE-RIGHT-WO" in content and "CT-ABDPEL-W" not in content
    for title in ("By modality", "By body part", "By care setting", "By contrast", "By active"):
        assert title in content


def test_search_finds_exams_by_cpt_code(admin_client, catalog):
    response = admin_client.get(reverse("admin:exams_examspec_changelist"), {"q": "77067"})
    assert "MG-SCREEN-BILAT" in response.content.decode()
    assert "MR-KNEE-RIGHT-WO" not in response.content.decode()


def test_the_change_form_has_code_and_series_inlines(admin_client, catalog):
    response = admin_client.get(reverse("admin:exams_examspec_change", args=["MR-KNEE-RIGHT-WO"]))
    content = response.content.decode()
    assert response.status_code == 200
    assert 'name="codes-0-code"' in content and 'value="73721"' in content
    assert 'name="series-2-description"' in content and "AX T2 FS" in content


def test_adding_a_valid_exam_saves_it_with_its_inlines(admin_client, db):
    response = admin_client.post(reverse("admin:exams_examspec_add"), _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    exam = ExamSpec.objects.get(id="MR-ANKLE-RIGHT-WO")
    assert exam.codes.get().code == "73721" and exam.series.get().weighting == "PD"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_form(min_age="60", max_age="20"), "minimum age 60 is above maximum age 20"),
        (_form(laterality="L"), "the id MR-ANKLE-RIGHT-WO names side &#x27;R&#x27;"),
        (_form(codes=[]), "an exam needs at least one procedure code"),
        (_form(series=[]), "an exam needs at least one series protocol"),
        (_form(series=[("1", "SAG PD", "P1", "20", "", "PD")]), "needs a sequence name"),
        (_form(series=[("1", "A", "P1", "20", "TSE", "PD"), ("1", "B", "P2", "20", "TSE", "T1")]),
         "Please correct the duplicate data for number"),
    ],
)
def test_a_failing_clean_shows_a_clear_message_and_saves_nothing(admin_client, db, data, message):
    response = admin_client.post(reverse("admin:exams_examspec_add"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ExamSpec.objects.filter(id="MR-ANKLE-RIGHT-WO").exists()


def test_the_model_clean_checks_laterality_against_the_body_part(catalog):
    exam = ExamSpec.objects.get(id="DX-CHEST-2V")
    exam.laterality = "R"
    with pytest.raises(ValidationError, match="CHEST is not a paired body part"):
        exam.full_clean()


def test_duplicate_action_copies_codes_and_series_as_an_inactive_exam(admin_client, catalog):
    url = reverse("admin:exams_examspec_changelist")
    response = admin_client.post(url, {"action": "duplicate_exams", "_selected_action": ["MR-KNEE-RIGHT-WO"]})
    assert response.status_code == 302
    copy = ExamSpec.objects.get(id="MR-KNEE-RIGHT-WO-COPY")
    assert not copy.active
    assert [s.description for s in copy.series.all()] == ["SAG PD FS", "COR T1", "AX T2 FS"]
    assert [c.code for c in copy.codes.all()] == ["73721", "36489-5"]
    admin_client.post(url, {"action": "duplicate_exams", "_selected_action": ["MR-KNEE-RIGHT-WO"]})
    assert ExamSpec.objects.filter(id="MR-KNEE-RIGHT-WO-COPY2").exists()


def test_activate_and_deactivate_actions(admin_client, catalog):
    url = reverse("admin:exams_examspec_changelist")
    admin_client.post(url, {"action": "deactivate_exams", "_selected_action": ["NM-BONE-WB", "US-ABD-COMPLETE"]})
    assert set(ExamSpec.objects.filter(active=False).values_list("id", flat=True)) == {"NM-BONE-WB", "US-ABD-COMPLETE"}
    admin_client.post(url, {"action": "activate_exams", "_selected_action": ["NM-BONE-WB"]})
    assert list(ExamSpec.objects.filter(active=False).values_list("id", flat=True)) == ["US-ABD-COMPLETE"]


def test_the_indication_admin_lists_and_validates(admin_client, catalog):
    response = admin_client.get(reverse("admin:exams_indication_changelist"), {"q": "M25.561"})
    assert "Right knee pain" in response.content.decode()
    response = admin_client.post(reverse("admin:exams_indication_add"), {
        "text": "Bad code", "icd10": "123", "body_part": "", "modality": "", "laterality": "", "min_age": "",
        "max_age": "", "sex": "", "weight": "1", "active": "on", "purpose": "diagnostic"})
    assert response.status_code == 200 and "Not an ICD-10-CM code" in response.content.decode()
    assert not Indication.objects.filter(text="Bad code").exists()


def test_an_exam_page_lists_the_indications_its_orders_can_draw(admin_client, catalog):
    page = admin_client.get(reverse("admin:exams_examspec_change", args=["MR-KNEE-RIGHT-WO"])).content.decode()
    assert "Indications its orders can draw" in page
    assert "M25.561 Right knee pain (diagnostic, weight 3)" in page
    assert "Left knee pain" not in page  # the other side's reason is not drawn
    mammo = admin_client.get(reverse("admin:exams_examspec_change", args=["MG-SCREEN-BILAT"])).content.decode()
    assert "Z12.31" in mammo and "(screening, weight 1)" in mammo
    assert "Abdominal pain" not in mammo  # a screening exam never draws a symptom


def test_the_indication_admin_refuses_a_pregnancy_code_for_men(admin_client, catalog):
    response = admin_client.post(reverse("admin:exams_indication_add"), {
        "text": "Threatened miscarriage", "icd10": "O20.0", "body_part": "", "modality": "US", "laterality": "",
        "min_age": "12", "max_age": "55", "sex": "M", "weight": "1", "active": "on", "purpose": "diagnostic",
        "secondary_icd10": "", "secondary_text": ""})
    assert response.status_code == 200
    assert "O20.0 is a pregnancy code: the indication needs sex F." in response.content.decode()
    assert not Indication.objects.filter(icd10="O20.0").exists()
