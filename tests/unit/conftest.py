"""Unit tests of pure code: quick, whatever the hashes cost on a real deployment."""

import pytest


@pytest.fixture(autouse=True)
def cheap_admin_hashes(monkeypatch):
    """Django's million PBKDF2 iterations take about a second here; a thousand prove the same."""
    from quizstack.deploy import secrets

    monkeypatch.setattr(secrets, "DJANGO_PBKDF2_ITERATIONS", 1000)
