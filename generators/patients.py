"""Synthetic patients drawn from a seeded RNG (Faker for names and addresses).

Every identifier is fictional by construction, not by luck: SSNs use the never-issued 9xx area
(SSA: area numbers 900-999 are not assigned), phone numbers use the 555-0100..555-0199 block
reserved for fiction (NANPA), MRNs come from the caller's format. Names mix Faker locales so that
apostrophes (O'Brien), hyphens (Smith-Jones, Hans-Herbert) and non-ASCII letters (Núñez, Łukasz)
occur in roughly one patient in seven, which is what shakes out escaping and character-set bugs
in HL7 and DICOM receivers.

The same ``random.Random`` state always gives the same patient: every draw (Faker included, via
``seed_instance``) is derived from ``rng``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from functools import cache

from faker import Faker

from generators.terms import Sex
from generators.types import Address, Patient, PersonName

# Name locales and their weights: a US hospital's population, mostly en_US with Hispanic,
# Irish, German, Polish and French names. Addresses are always en_US (the hospital's catchment).
NAME_LOCALES: tuple[tuple[str, int], ...] = (
    ("en_US", 75),
    ("es_MX", 7),
    ("es_ES", 3),
    ("en_IE", 5),
    ("de_DE", 3),
    ("pl_PL", 3),
    ("fr_FR", 3),
)
ADDRESS_LOCALE = "en_US"

# Faker's en_US surname list has no apostrophes; real US rosters do.
_APOSTROPHE_SURNAMES: tuple[str, ...] = (
    "O'Brien", "O'Connor", "O'Neil", "O'Malley", "O'Sullivan", "D'Angelo", "D'Souza", "O'Hara",
    "D'Amico", "O'Donnell",
)
_P_APOSTROPHE_SURNAME = 0.03  # of en_US patients
_P_DOUBLE_BARRELLED = 0.04  # of en_US patients: "Smith-Jones"
_P_MIDDLE_NAME = 0.7

# Age distribution of a general radiology department: children are a small minority, volume
# peaks between 50 and 80. Every age 0..100 keeps a positive weight so any [min_age, max_age]
# window the catalog asks for can be honoured.
MAX_AGE = 100


def _age_weight(age: int) -> float:
    if age < 18:
        return 0.5
    if age < 40:
        return 1.0
    if age < 50:
        return 1.6
    if age < 80:
        return 2.2
    if age < 90:
        return 1.0
    return 0.15


AGE_WEIGHTS: tuple[float, ...] = tuple(_age_weight(a) for a in range(MAX_AGE + 1))
_P_FEMALE = 0.55  # imaging volume skews female (mammography, pelvic US)

# Faker instances are shared per process; seeding and drawing must not interleave between
# threads (a runner may generate patients from a worker pool).
_FAKER_LOCK = threading.Lock()


@cache
def _faker(locale: str) -> Faker:
    """One Faker per locale per process: creating one costs tens of milliseconds."""
    return Faker(locale)


def age_at(birth_date: dt.date, today: dt.date) -> int:
    """Whole years between ``birth_date`` and ``today`` (the age on a birthday is the new age)."""
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap target year
        return day.replace(year=day.year - years, day=28)


def _birth_date(rng: random.Random, age: int, today: dt.date) -> dt.date:
    """A birth date uniformly within the year of life that gives ``age`` at ``today``."""
    latest = _years_before(today, age)
    earliest = _years_before(today, age + 1) + dt.timedelta(days=1)
    return earliest + dt.timedelta(days=rng.randint(0, (latest - earliest).days))


def _draw_age(rng: random.Random, min_age: int | None, max_age: int | None) -> int:
    lo = 0 if min_age is None else max(0, min_age)
    hi = MAX_AGE if max_age is None else min(MAX_AGE, max_age)
    if lo > hi:
        raise ValueError(f"No age satisfies min_age={min_age} and max_age={max_age}.")
    return rng.choices(range(lo, hi + 1), AGE_WEIGHTS[lo : hi + 1])[0]


def _ssn(rng: random.Random) -> str:
    """A 9xx-area SSN: the SSA never issues areas 900-999, so it cannot belong to anyone."""
    return f"9{rng.randint(0, 99):02d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _phone(rng: random.Random) -> str:
    """A NANP number in the 555-0100..0199 block reserved for fictional use."""
    # 2xx-7xx keeps clear of 8xx toll-free and 9xx special-use codes; N11 are service codes.
    area = rng.randint(2, 7) * 100 + rng.randint(1, 99)
    if area % 100 == 11:
        area += 1
    return f"({area:03d}) 555-01{rng.randint(0, 99):02d}"


def _name(rng: random.Random, sex: Sex) -> PersonName:
    locales, weights = zip(*NAME_LOCALES, strict=True)
    locale = rng.choices(locales, weights)[0]
    fake = _faker(locale)
    fake.seed_instance(rng.getrandbits(64))
    female = sex is Sex.FEMALE
    given = fake.first_name_female() if female else fake.first_name_male()
    family = fake.last_name_female() if female else fake.last_name_male()
    middle = ""
    if rng.random() < _P_MIDDLE_NAME:
        middle = fake.first_name_female() if female else fake.first_name_male()
        if middle == given:
            middle = ""
    if locale == "en_US":
        roll = rng.random()
        if roll < _P_APOSTROPHE_SURNAME:
            family = rng.choice(_APOSTROPHE_SURNAMES)
        elif roll < _P_APOSTROPHE_SURNAME + _P_DOUBLE_BARRELLED:
            other = fake.last_name()
            if other != family:
                family = f"{family}-{other}"
    return PersonName(family=family, given=given, middle=middle)


def _address(rng: random.Random) -> Address:
    fake = _faker(ADDRESS_LOCALE)
    fake.seed_instance(rng.getrandbits(64))
    return Address(
        street=fake.street_address(),
        city=fake.city(),
        state=fake.state_abbr(include_territories=False),
        postal_code=fake.zipcode(),
        country="USA",
    )


def generate_patient(
    rng: random.Random,
    *,
    today: dt.date,
    sex: Sex | None = None,
    min_age: int | None = None,
    max_age: int | None = None,
    mrn_format: str = "MRN{n:07d}",
    issuer: str = "YEETER_HOSP",
) -> Patient:
    """One synthetic patient, fully determined by the state of ``rng``.

    ``sex`` (M or F) and the ``min_age``/``max_age`` window (inclusive, whole years at ``today``)
    are honoured exactly; otherwise both follow a radiology department's mix. ``mrn_format`` is a
    ``str.format`` pattern whose ``n`` is a number drawn from ``rng`` (0..9,999,999), e.g.
    ``"MRN{n:07d}"``. Raises ``ValueError`` when no age fits the window or ``sex`` is not M/F.
    """
    if sex is None:
        sex = Sex.FEMALE if rng.random() < _P_FEMALE else Sex.MALE
    elif sex not in (Sex.MALE, Sex.FEMALE):
        raise ValueError(f"generate_patient draws male or female patients only, not {sex!r}.")
    age = _draw_age(rng, min_age, max_age)
    birth_date = _birth_date(rng, age, today)
    mrn = mrn_format.format(n=rng.randint(0, 9_999_999))
    with _FAKER_LOCK:
        name = _name(rng, sex)
        address = _address(rng)
    return Patient(
        mrn=mrn,
        issuer=issuer,
        name=name,
        birth_date=birth_date,
        sex=sex,
        age=age,
        ssn=_ssn(rng),
        address=address,
        phone=_phone(rng),
    )
