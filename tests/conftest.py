"""Fixtures for the whole suite; they live in :mod:`support` so that test modules can import its helpers by a
name that no other conftest shadows.

Property tests (hypothesis) run a bounded number of examples by default ("ci", also what CI runs). For a long
local hunt: ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py`` (see README.md).
"""

import os

from hypothesis import HealthCheck, settings
from support import auth_server, run, scripted_server, smtp_server

# "ci": the same examples on every run (derandomized, no example database), so that CI never flakes on luck.
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

__all__ = ["auth_server", "run", "scripted_server", "smtp_server"]
