"""Synthetic patients: determinism, honoured constraints, never-real identifiers, realistic names."""

from __future__ import annotations

import datetime as dt
import random
import re

import pytest

from generators.patients import age_at, generate_patient
from generators.terms import Sex
from generators.types import Patient

TODAY = dt.date(2026, 11, 25)
LEAP_DAY = dt.date(2028, 2, 29)


def _patients(count: int, seed: int = 1) -> list[Patient]:
    rng = random.Random(seed)
    return [generate_patient(rng, today=TODAY) for _ in range(count)]


def test_it_gives_the_same_patient_for_the_same_seed() -> None:
    first = [generate_patient(random.Random(seed), today=TODAY) for seed in range(20)]
    again = [generate_patient(random.Random(seed), today=TODAY) for seed in range(20)]
    assert first == again
    assert len({p.mrn for p in first}) > 15  # and different seeds give different patients


def test_it_gives_the_same_sequence_from_one_rng_even_when_interleaved_with_other_rngs() -> None:
    rng_a, rng_b = random.Random(5), random.Random(99)
    interleaved = []
    for _ in range(10):
        interleaved.append(generate_patient(rng_a, today=TODAY))
        generate_patient(rng_b, today=TODAY)  # shares the per-locale Faker instances
    assert interleaved == _patients(10, seed=5)


@pytest.mark.parametrize("today", [TODAY, LEAP_DAY])
def test_it_honours_the_age_window_and_computes_age_from_the_birth_date(today: dt.date) -> None:
    rng = random.Random(3)
    for min_age, max_age in [(40, None), (None, 17), (18, 18), (0, 0), (65, 100), (90, 95)]:
        for _ in range(150):
            patient = generate_patient(rng, today=today, min_age=min_age, max_age=max_age)
            assert patient.age == age_at(patient.birth_date, today)
            assert (min_age or 0) <= patient.age <= (100 if max_age is None else max_age)
            assert patient.birth_date <= today


def test_it_rejects_an_empty_age_window() -> None:
    with pytest.raises(ValueError, match="No age satisfies"):
        generate_patient(random.Random(1), today=TODAY, min_age=50, max_age=40)


def test_it_honours_the_requested_sex() -> None:
    rng = random.Random(8)
    assert all(generate_patient(rng, today=TODAY, sex=Sex.FEMALE).sex is Sex.FEMALE for _ in range(200))
    assert all(generate_patient(rng, today=TODAY, sex=Sex.MALE).sex is Sex.MALE for _ in range(200))


def test_it_draws_both_sexes_and_a_radiology_age_mix_by_default() -> None:
    patients = _patients(1500, seed=11)
    females = sum(p.sex is Sex.FEMALE for p in patients) / len(patients)
    children = sum(p.age < 18 for p in patients) / len(patients)
    adults_20_90 = sum(20 <= p.age <= 90 for p in patients) / len(patients)
    assert {p.sex for p in patients} == {Sex.FEMALE, Sex.MALE}
    assert 0.45 < females < 0.65
    assert 0.02 < children < 0.15
    assert adults_20_90 > 0.8


def test_it_only_uses_never_issued_ssns_and_fictional_phone_numbers() -> None:
    for patient in _patients(500, seed=2):
        assert re.fullmatch(r"9\d\d-(0[1-9]|[1-9]\d)-\d{4}", patient.ssn), patient.ssn
        assert patient.ssn[-4:] != "0000"
        assert re.fullmatch(r"\([2-7]\d\d\) 555-01\d\d", patient.phone), patient.phone
        assert not patient.phone[1:4].endswith("11")


def test_it_formats_the_mrn_and_fills_every_field() -> None:
    patient = generate_patient(random.Random(4), today=TODAY, mrn_format="H-{n:08d}", issuer="OTHER_HOSP")
    assert re.fullmatch(r"H-\d{8}", patient.mrn)
    assert patient.issuer == "OTHER_HOSP"
    assert patient.name.family and patient.name.given
    address = patient.address
    assert address.street and address.city and re.fullmatch(r"[A-Z]{2}", address.state)
    assert re.fullmatch(r"\d{5}", address.postal_code) and address.country == "USA"


def test_it_produces_apostrophes_hyphens_and_non_ascii_names_at_a_realistic_rate() -> None:
    patients = _patients(1500, seed=21)
    names = [f"{p.name.family} {p.name.given} {p.name.middle}" for p in patients]
    apostrophe = sum("'" in n for n in names)
    hyphen = sum("-" in n for n in names)
    non_ascii = sum(bool(re.search(r"[^\x00-\x7f]", n)) for n in names)
    special = sum(bool(re.search(r"['\-]|[^\x00-\x7f]", n)) for n in names) / len(names)
    assert apostrophe >= 15 and hyphen >= 15 and non_ascii >= 50
    assert 0.10 <= special <= 0.20
    # natural case, not upper case
    assert sum(p.name.family[1:].islower() for p in patients) > len(patients) / 2


def test_it_rejects_a_sex_it_cannot_draw_names_for() -> None:
    with pytest.raises(ValueError, match="male or female"):
        generate_patient(random.Random(1), today=TODAY, sex=Sex.OTHER)
