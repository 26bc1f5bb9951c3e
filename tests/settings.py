"""Settings for the test suite: the production module with a throwaway data dir and key."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("YEETER_DATA_DIR", tempfile.mkdtemp(prefix="yeeter-test-"))

from yeeter.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
