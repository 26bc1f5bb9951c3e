"""DICOM UIDs (PS3.5 §9) minted from a seeded RNG, so a seeded run is reproducible.

UIDs use the ``2.25.<128-bit integer>`` form of PS3.5 §B.2 (a UUID as an OID): no registered
root is needed and 122 random bits make collisions between runs negligible. The same seed gives
the same UIDs; runs without an explicit seed draw a fresh one, so real traffic never repeats UIDs.
"""

from __future__ import annotations

import random
import uuid


def new_uid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` rendered as a ``2.25.`` UID (at most 44 characters)."""
    return "2.25." + str(uuid.UUID(int=rng.getrandbits(128), version=4).int)
