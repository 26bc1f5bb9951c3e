"""Scenarios saved in admin get the runs API's validation: unknown exams and CPT codes are refused on save."""

from __future__ import annotations

import json
from html import unescape

import pytest
from django.urls import reverse

from simulations.models import Scenario


def _form(steps) -> dict:
    return {"name": "Broken knee", "description": "", "steps": json.dumps(steps), "default_patients": "1",
            "concurrency": "1", "arrival": "all_at_once", "rate_per_hour": ""}


@pytest.mark.parametrize(("order", "message"), [
    ({"exam_id": "MR-KNEE-NOPE-WO"}, "MR-KNEE-NOPE-WO"),
    ({"cpt_code": "99999"}, "No active exam has CPT code '99999'"),
])
def test_admin_refuses_a_scenario_naming_an_exam_or_cpt_code_that_does_not_exist(admin_client, catalog, order,
                                                                                   message) -> None:
    steps = [{"step_type": "GENERATE_HL7", **order}, {"step_type": "SEND_HL7"}]
    response = admin_client.post(reverse("admin:simulations_scenario_add"), _form(steps))
    assert response.status_code == 200
    page = unescape(response.content.decode())
    assert "step 1 (GENERATE_HL7)" in page and message in page
    assert not Scenario.objects.filter(name="Broken knee").exists()


def test_admin_and_the_runs_api_give_the_same_message(admin_client, catalog) -> None:
    from simulations.services import scenario_validate
    from simulations.steps import ScenarioError

    steps = [{"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-NOPE-WO"}]
    with pytest.raises(ScenarioError) as raised:
        scenario_validate(steps_json=steps)
    page = unescape(admin_client.post(reverse("admin:simulations_scenario_add"), _form(steps)).content.decode())
    assert all(problem in page for problem in raised.value.problems)


def test_admin_saves_a_scenario_whose_exam_exists(admin_client, catalog) -> None:
    steps = [{"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO"}, {"step_type": "SEND_HL7"}]
    response = admin_client.post(reverse("admin:simulations_scenario_add"), _form(steps))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Scenario.objects.filter(name="Broken knee").exists()
