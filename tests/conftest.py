"""Shared pytest fixtures and skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "real-ct"

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    """The shared real CT folder; tests that need it skip cleanly when it is absent."""
    if not (REAL_CT / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT not present at {REAL_CT}")
    return REAL_CT
